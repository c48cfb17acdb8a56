import argparse

import pytest

from robolake.cli import build_parser, main


def _all_commands(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _all_commands(sub, (*prefix, name))


def test_every_command_has_help(capsys):
    commands = list(_all_commands(build_parser()))
    assert ("infra", "up") in commands and ("status",) in commands
    for command in commands:
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--help"])
        assert exit_.value.code == 0
        assert "usage: robolake " + " ".join(command) in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["infra", "sideways"], "invalid choice: 'sideways'"),
    (["status", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["status", "--partitions", "many"], "invalid int value: 'many'"),
    (["status", "--bus", "kafka:/oops"], "bus must be 'memory' or 'kafka://"),
    (["status", "--lake", "ftp://x"], "lake must be"),
])
def test_bad_arguments_print_one_line_and_exit_2(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def test_status_runs_on_the_embedded_default(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ROBOLAKE_STACK_DIR", str(tmp_path))
    assert main(["status", "--bus", "memory", "--lake", f"file://{tmp_path}/lake", "--threads", "3"]) == 0
    out = capsys.readouterr().out
    assert "bus   memory" in out and f"{tmp_path}/lake" in out and "threads 3" in out
    assert "kafka    stopped" in out


def test_demo_runs_end_to_end_on_the_embedded_default(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--bus", "memory", "--lake", f"file://{tmp_path}/lake"]) == 0
    out = capsys.readouterr().out
    assert out.count("starting episode") == 4 and out.count("succeeded after") == 4
    assert "library: 18 skills: reach_red v1" in out and "build_tower v1" in out
    assert "undecodable from robolake.episodes" in out  # the poison message, dead-lettered with its reason
    assert "│ tour          │        4 │          1.0 │" in out  # the lake answers, in the tour's own experiment
    assert "mean_reward" in out and "AS success_rate FROM steps" not in out  # a reward's mean is not a success rate


def test_sink_refuses_an_unwritable_lake_at_start(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = main(["sink", "--bus", "memory", "--lake", f"file://{tmp_path}/file/lake", "--until-idle", "1"])
    assert code == 1
    assert "cannot be opened for writing" in capsys.readouterr().err


def test_sql_shell_reads_statements_from_standard_input(tmp_path):
    import subprocess
    import sys

    assert main(["produce", "--synthetic", "1", "--steps", "3", "--bus", "memory", "--lake", f"file://{tmp_path}/lake"]) == 0
    shell = subprocess.run([sys.executable, "-m", "robolake.cli", "sql", "--bus", "memory",
                            "--lake", f"file://{tmp_path}/lake"],
                           input="SELECT 40 +\n 2 AS answer;\nDROP VIEW steps;\n", capture_output=True, text=True)
    assert shell.returncode == 0
    assert "42" in shell.stdout and "DROP statements are refused" in shell.stdout


def test_a_missing_extra_is_named(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "kafka", None)  # as if kafka-python were not installed
    assert main(["tail", "episodes", "--bus", "kafka://127.0.0.1:1"]) == 1
    assert "pip install 'robolake[kafka]'" in capsys.readouterr().err


def test_an_empty_dead_letter_topic_says_so(tmp_path, capsys):
    assert main(["dlq", "--bus", "memory", "--lake", f"file://{tmp_path}/lake"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no dead letters: robolake.dlq is empty" in captured.err
