"""Every command with its bad inputs (issue 14): the right exit code (2 usage, 1 failure, 130
interrupted), one line on stderr naming the problem, no traceback, and the lake as it was."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robolake.cli import main
from tests.signals import sigint_default

ROBOLAKE = [sys.executable, "-m", "robolake.cli"]


def _refused_port() -> int:
    with socket.socket() as s:  # bound, never listening: a connection is refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REFUSED = f"kafka://127.0.0.1:{_refused_port()}"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-errors")
    url = f"file://{root}/lake"
    assert main(["produce", "--synthetic", "2", "--steps", "3", "--lake", url]) == 0
    (root / "a-file").write_text("not a directory")
    return root, url


def _snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file() and p.suffix not in (".lock", ".sqlite-shm", ".sqlite-wal")}


# (argv, exit code, part of the message); {lake}: the test lake's URL, {tmp}: its directory,
# {file}: a regular file, {refused}: a Kafka address where nothing listens.
CASES = [
    # sql (items 1, 6, 9, 10)
    (["sql", "SELECT 1; SELECT 2", "--explain"], 2, "--explain takes one statement"),
    (["sql", "SELECT 1", "--format", "csv", "-o", "{tmp}/no-such-dir/x.csv"], 1, "does not exist"),
    (["sql", "SELECT 1", "--format", "csv", "-o", "{tmp}"], 1, "is a directory"),
    (["sql", "SELECT 1", "-o", "{tmp}/x.txt"], 2, "--format table is a preview"),
    (["sql", "SELECT 1", "--format", "parquet"], 2, "--format parquet needs --output"),
    (["sql", "--explain"], 2, "need a query"),
    (["sql", "DROP VIEW steps"], 2, "DROP statements are refused"),
    (["sql", "PIVOT episodes ON task USING count(*)"], 2, "name the values"),
    (["sql", "SELECT * FROM nope"], 2, "table nope is refused (only the lake's views can be read"),
    (["sql", "SELECT 1", "--lake", "file://{tmp}/missing"], 1, "no lake at"),
    # compact, replay, migrate (items 3, 4, 6, 11)
    (["compact", "--lake", "file://{tmp}/missing"], 1, "no lake at"),
    (["compact", "--keep-seconds", "-1"], 2, "--keep-seconds: expected a number >= 0"),
    (["compact", "--keep-seconds", "nan"], 2, "expected a finite number"),
    (["replay", "--to-lake", "file://{tmp}/new", "--lake", "file://{tmp}/missing"], 1, "no lake at"),
    (["replay", "--to-lake", "{lake}"], 2, "different lake"),
    (["replay", "--to-lake", "file://{tmp}/new", "--where", "task_success"], 2, "--where filters episodes"),
    (["replay", "--to-lake", "file://{file}/new"], 1, "is not a directory"),
    (["replay", "--to-lake", "file://{tmp}/new", "--bus", "{refused}"], 1, "connection refused"),
    (["replay", "--to-topic", "episodes", "--where", "nope = 1"], 1, "Referenced column \"nope\" not found"),
    (["migrate", "--from-v1", "{tmp}/missing"], 1, "no v1 lake files"),
    (["migrate", "--from-v1", "{tmp}/missing", "--lake", "file://{file}"], 1, "cannot be opened for writing"),
    # export
    (["export", "--format", "lerobot", "{tmp}/new", "--where", "task_success AND FALSE"], 2,
     "no complete episode matches 'task_success AND FALSE': nothing to export"),
    (["export", "--format", "lerobot", "{tmp}/new", "--where", "nope = 1"], 1, "Referenced column \"nope\" not found"),
    (["export", "--format", "lerobot", "{tmp}/new", "--where", "TRUE; DROP VIEW steps"], 2, "DROP statements are refused"),
    (["export", "--format", "lerobot", "{tmp}/new", "--where", "episode_id IN (SELECT content FROM read_text('x'))"], 2,
     "read_text() is refused"),
    (["export", "--format", "lerobot", "{tmp}/new", "--where", "task_success AND"], 2, "cannot parse the query"),
    (["export", "--format", "lerobot", "{tmp}"], 2, "already exists and is not an empty directory"),
    (["export", "--format", "lerobot", "{tmp}/lake/out"], 2, "is inside the lake"),
    (["export", "--format", "lerobot", "{tmp}/missing/out"], 1, "does not exist"),
    (["export", "--format", "lerobot", "{tmp}/new", "--lake", "file://{tmp}/missing"], 1, "no lake at"),
    (["export", "--format", "csv", "{tmp}/new"], 2, "invalid choice: 'csv'"),
    (["export", "{tmp}/new"], 2, "the following arguments are required: --format"),
    # produce, skills (items 2, 3, 4, 7, 9)
    (["produce", "--synthetic", "1", "--seed", "-5"], 2, "--seed: expected an integer from 0 to 2^32-1"),
    (["produce", "--synthetic", "1", "--seed", "99999999999999999999"], 2, "--seed: expected an integer from 0"),
    (["produce", "--synthetic", "1", "--experiment", ""], 2, "--experiment: expected ASCII letters, digits"),
    (["produce", "--synthetic", "1", "--experiment", "a b"], 2, "--experiment: expected ASCII letters, digits"),
    (["curriculum", "--once", "--experiment", "expérience"], 2, "--experiment: expected ASCII letters, digits"),
    (["train", "--run-id", "../../escape"], 2, "--run-id: expected ASCII letters, digits"),
    (["eval", "--run-id", "r", "--skills", "reach_red", "--seed", "-5"], 2, "--seed: expected an integer"),
    (["sql", "SELECT 1", "--format", "csv", "-o", "{tmp}/lake/catalog.sqlite"], 2, "is inside the lake"),
    (["replay", "--to-lake", "file://{tmp}/lake/data"], 2, "neither inside the other"),
    (["replay", "--to-topic", "episodes", "--bus", "{refused}"], 1, "connection refused"),
    (["produce", "--episodes", "1", "--task", "lift_red", "--noise", "nan"], 2, "--noise: expected a finite number"),
    (["produce", "--episodes", "1", "--task", "lift_red", "--noise", "-1"], 2, "--noise: expected a number >= 0"),
    (["produce", "--episodes", "1", "--task", "lift_purple"], 2, "unknown skill 'lift_purple'"),
    (["produce", "--episodes", "1"], 2, "say what to run"),
    (["produce", "--from-decisions"], 2, "in-process bus starts empty"),
    (["produce", "--synthetic", "1", "--until-idle", "0"], 2, "expected a number of seconds > 0"),
    (["produce", "--synthetic", "1", "--lake", "file:///proc/robolake-lake"], 1, "cannot be opened for writing"),
    (["produce", "--episodes", "3", "--task", "lift_red", "--lake", "file://{file}"], 1, "is not a directory"),
    (["produce", "--synthetic", "1", "--bus", "{refused}"], 1, "connection refused"),
    (["skills", "--announce", "--bus", "{refused}"], 1, "connection refused"),
    # sink (items 3, 4, 10, 11)
    (["sink", "--until-idle", "0"], 2, "--until-idle: expected a number of seconds > 0"),
    (["sink", "--until-idle", "nan"], 2, "expected a finite number"),
    (["sink", "--until-idle", "-5"], 2, "expected a number of seconds > 0"),
    (["sink", "--flush-seconds", "-1", "--until-idle", "1"], 2, "--flush-seconds"),
    (["sink", "--topics", "nope", "--until-idle", "1"], 2, "unknown topic 'nope'"),
    (["sink", "--until-idle", "1", "--lake", "file://{file}/lake"], 1, "cannot be opened for writing"),
    (["sink", "--until-idle", "1", "--bus", "{refused}"], 1, "connection refused"),
    # tail, dlq (items 3, 7, 11)
    (["tail", "nope"], 2, "unknown topic 'nope'"),
    (["tail", "episodes", "--follow"], 2, "would wait forever"),
    (["tail", "episodes", "--bus", "{refused}"], 1, "connection refused"),
    (["dlq", "--bus", "{refused}"], 1, "connection refused"),
    (["dlq", "--limit", "0"], 2, "expected a positive integer"),
    # demo, settings (items 4, 10)
    (["demo", "--episodes", "-1"], 2, "expected a positive integer"),
    (["demo", "--lake", "file://{file}"], 1, "is not a directory"),
    (["status", "--partitions", "0"], 2, "partitions must be >= 1"),
    (["status", "--threads", "0"], 2, "--threads: expected a positive integer"),
    (["status", "--kafka-connect-timeout", "0"], 2, "kafka_connect_timeout must be"),
    (["status", "--kafka-connect-timeout", "nan"], 2, "kafka_connect_timeout must be"),
]


@pytest.mark.parametrize("argv, code, message", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_a_bad_input_is_one_line_and_the_right_exit_code(argv, code, message, lake, capsys):
    root, url = lake
    argv = [a.format(lake=url, tmp=root, file=root / "a-file", refused=REFUSED) for a in argv]
    if "--lake" not in argv:
        argv += ["--lake", url]
    before = _snapshot(root / "lake")
    try:
        got = main(argv)
    except SystemExit as exit_:  # argparse
        got = exit_.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note: ")]
    assert got == code, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"robolake {argv[0]}") or lines[0].startswith("robolake: error"), lines[0]
    assert message in lines[0], lines[0]
    assert _snapshot(root / "lake") == before, "the lake changed"
    for new in ("new", "missing"):
        assert not (root / new).exists(), f"{new} was created"


def test_a_valid_flag_wins_over_an_invalid_variable(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ROBOLAKE_PARTITIONS", "many")
    monkeypatch.setenv("ROBOLAKE_STACK_DIR", str(tmp_path))
    assert main(["status", "--partitions", "2", "--lake", f"file://{tmp_path}/lake"]) == 0
    assert main(["status", "--lake", f"file://{tmp_path}/lake"]) == 2
    assert "ROBOLAKE_PARTITIONS='many' is not a valid int" in capsys.readouterr().err


def test_produce_counts_the_episodes_it_made_without_a_terminal(tmp_path, capsys):
    assert main(["produce", "--synthetic", "3", "--steps", "2", "--lake", f"file://{tmp_path}/lake"]) == 0
    out = capsys.readouterr().out
    assert "produced 3 episodes on memory" in out


def test_short_topic_names_work_for_sink(tmp_path, capsys):
    url = f"file://{tmp_path}/lake"
    assert main(["produce", "--synthetic", "1", "--steps", "2", "--lake", url]) == 0
    assert main(["sink", "--topics", "episodes", "skills", "--until-idle", "0.2", "--lake", url]) == 0


def test_sql_writes_every_row_as_valid_csv_and_json(lake, tmp_path):
    _, url = lake
    for fmt in ("csv", "json"):
        out = tmp_path / f"episodes.{fmt}"
        assert main(["sql", "SELECT * FROM episodes", "--format", fmt, "-o", str(out), "--lake", url]) == 0
        assert len(out.read_text().strip().splitlines()) == 2 + (fmt == "csv")
    odd = tmp_path / "odd.json"
    assert main(["sql", "SELECT 'nan'::DOUBLE AS x, INTERVAL 1 DAY AS i, [1.0, 'inf'::DOUBLE] AS l, "
                 "'\\x01'::BLOB AS b, {'k': 'nan'::FLOAT} AS s", "--format", "json", "-o", str(odd), "--lake", url]) == 0
    row = json.loads(odd.read_text())  # strict: NaN and Infinity are not JSON
    assert row == {"x": None, "i": "0 months 1 days 0 ns", "l": [1.0, None], "b": "AQ==", "s": {"k": None}}
    nested = tmp_path / "nested.csv"
    assert main(["sql", "SELECT [1, 2] AS l, {'a': 'x'} AS s", "--format", "csv", "-o", str(nested), "--lake", url]) == 0
    assert nested.read_text().splitlines()[1] == '"[1, 2]","{""a"": ""x""}"'


def test_lake_paths_with_glob_characters_and_quotes_are_data(tmp_path, capsys):
    counts = {"lake1": 1, "lake[1]": 2, "la'ke*": 3}
    for name, episodes in counts.items():
        assert main(["produce", "--synthetic", str(episodes), "--steps", "2", "--lake", f"file://{tmp_path}/{name}"]) == 0
    capsys.readouterr()
    for name, episodes in counts.items():
        assert main(["sql", "SELECT count(*) AS n FROM episodes", "--format", "csv",
                     "--lake", f"file://{tmp_path}/{name}"]) == 0
        assert capsys.readouterr().out.split() == ['"n"', str(episodes)], name


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*ROBOLAKE, *argv], capture_output=True, text=True, timeout=60, **kwargs)


def test_a_reader_that_stops_reading_ends_the_command_quietly(lake):
    _, url = lake
    process = subprocess.Popen([*ROBOLAKE, "sql", "SELECT unnest(range(300000)) AS range", "--format", "csv", "--lake", url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline() == b'"range"\n'
    process.stdout.close()  # like `| head -1`
    assert process.wait(timeout=30) == 141
    assert process.stderr.read() == b""


def _interrupt_after(argv: list[str], seconds: float) -> tuple[subprocess.CompletedProcess, float]:
    """Start the command, then press Ctrl-C (SIGINT to its process group, as a terminal does)."""
    process = subprocess.Popen([*ROBOLAKE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=sigint_default)
    time.sleep(seconds)
    pressed = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(argv, process.returncode, out, err), time.monotonic() - pressed


def test_ctrl_c_during_a_long_query_is_one_line_and_130(lake):
    _, url = lake
    numbers = "(SELECT unnest(range(200000)) AS n)"  # table functions are refused
    done, _ = _interrupt_after(["sql", f"SELECT sum(a.n * b.n) FROM {numbers} a, {numbers} b", "--lake", url], 2.0)
    assert done.returncode == 130
    assert done.stderr == "robolake sql: interrupted\n"


def test_ctrl_c_during_produce_stops_the_workers_and_keeps_what_finished(tmp_path):
    url = f"file://{tmp_path}/lake"
    done, took = _interrupt_after(["produce", "--episodes", "5000", "--workers", "2", "--task", "place_red_on_blue",
                                   "--lake", url], 3.5)
    assert done.returncode == 130, done.stderr
    assert took < 5, f"took {took:.1f}s to stop"
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1] == "robolake produce: interrupted"
    produced = int(done.stdout.split("produced ")[1].split()[0])
    assert 0 < produced < 5000, done.stdout
    counted = _run(["sql", "SELECT count(*) FROM episodes", "--format", "csv", "--lake", url])
    assert counted.stdout.split()[-1] == str(produced)
    partial = _run(["sql", "SELECT count(*) FROM partial_episodes", "--format", "csv", "--lake", url])
    assert int(partial.stdout.split()[-1]) <= 2  # at most the one each worker was running


def test_an_unreachable_kafka_is_one_line_quickly_without_client_logs(tmp_path):
    with socket.socket() as silent:  # accepts connections but never answers: the wait is the setting
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        done = _run(["tail", "episodes", "--bus", f"kafka://127.0.0.1:{port}", "--kafka-connect-timeout", "1",
                     "--lake", f"file://{tmp_path}/lake"])
    assert done.returncode == 1
    assert done.stderr.startswith(f"robolake tail: cannot reach Kafka at 127.0.0.1:{port}")
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert time.monotonic() - started < 10
    refused = _run(["produce", "--synthetic", "1", "--bus", REFUSED, "--lake", f"file://{tmp_path}/lake"])
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert not (tmp_path / "lake").exists()


def test_help_is_consistent_and_has_examples(capsys):
    for command in ("sql", "replay", "produce", "export"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "examples:\n\n  robolake " + command in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["sink", "--help"])
    text = capsys.readouterr().out
    assert "--flush-seconds SECONDS" in text and "(default 5)" in text and "--until-idle SECONDS" in text
    assert main(["-v", "status", "--lake", "file:///tmp/robolake-help-check"]) == 0  # -v before the command too


def test_every_expected_failure_names_a_class_that_exists():
    """robolake/failures.py names them as strings (nothing heavy imported): a module that moved would
    turn its one-line failures back into tracebacks without this."""
    import importlib

    from robolake.failures import FAILURES, USAGE_ERRORS

    for module, name in USAGE_ERRORS + FAILURES:
        found = getattr(importlib.import_module(module), name, None)
        assert isinstance(found, type) and issubclass(found, BaseException), f"{module}.{name} is no exception class"


def test_infra_up_without_the_infra_extra_names_it_and_starts_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "kafka", None)  # as after `make demo`: no Kafka client installed
    monkeypatch.setenv("ROBOLAKE_STACK_DIR", str(tmp_path / "stack"))
    assert main(["infra", "up"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'robolake[infra]'" in lines[0], lines
    assert not (tmp_path / "stack").exists() or not any((tmp_path / "stack").rglob("*.pid"))
