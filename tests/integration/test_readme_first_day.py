"""A newcomer's first day, as README.md prints it: in a fresh checkout of this working tree, a fresh
`.venv` made the way `make demo` makes it, then the README's commands after `make demo`, parsed from
README.md (so an edited README is what is tested): the Kafka + MinIO block on the default ports with
its own stack (`infra up` ... `infra down`), each service in its own process as in its own terminal
and the run to exit 0; then the config-file run and the Python block on the embedded lake."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from infra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCALED_OUT = "The same on Kafka + MinIO, scaled out"


def _blocks_after(text: str, marker: str, count: int) -> list[tuple[str, str]]:
    """The first `count` fenced blocks after `marker`, as (language, body)."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", text[text.index(marker):], re.M | re.S)
    return blocks[:count]


def _lines(body: str) -> list[str]:
    """A shell block's commands, each without its `# comment`."""
    return [line for line in (re.sub(r"(^|\s)#.*", "", raw).strip() for raw in body.splitlines()) if line]


def _is_service(line: str) -> bool:
    """Runs until stopped (its own terminal in the README): started in the background here."""
    return bool(re.match(r"robolake (sink|produce|learn|dashboard)\b", line)) or "--follow" in line


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _signal(proc: subprocess.Popen, sig: int) -> None:
    """To the line's whole process group (bash and the command it started)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _timed(phases: dict, name: str, argv, **kwargs) -> subprocess.CompletedProcess:
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    phases[name] = time.monotonic() - start
    assert done.returncode == 0, f"{name}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.timeout(3600)
def test_readme_commands_after_make_demo_work_as_printed(tmp_path):
    text = (ROOT / "README.md").read_text()
    (lang, scaled), (lang2, config_block), (lang3, python_block) = _blocks_after(text, SCALED_OUT, 3)
    assert (lang, lang2, lang3) == ("bash", "bash", "python"), "README's blocks after make demo moved"
    scaled, config_lines = _lines(scaled), _lines(config_block)

    # The block's own stack on the default ports (make test's is on others): they must be free.
    defaults = Settings()
    help_text = subprocess.run([sys.executable, "-m", "robolake.cli", "dashboard", "--help"],
                               capture_output=True, text=True, check=True).stdout
    dashboard_port = int(re.search(r"--port N.*?\(default (\d+)\)", help_text, re.S).group(1))
    ports = [defaults.kafka_port, defaults.kafka_controller_port, defaults.s3_host_port[1],
             defaults.minio_console_port, dashboard_port]
    taken = [p for p in ports if _port_taken(p)]
    if taken:
        pytest.fail(f"the README's block needs ports {ports} free on 127.0.0.1; taken: {taken}", pytrace=False)

    # A newcomer's checkout: the working tree's files (uncommitted edits too), no .venv, no lake.
    checkout = tmp_path / "robolake"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():  # not a file listed but deleted in the working tree
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    # The newcomer's shell: none of make test's ROBOLAKE_* settings (its stack's ports and lake), a
    # stack state of its own; HOME stays, so infra finds the cached Kafka jars and MinIO binary.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOLAKE_") and k != "VIRTUAL_ENV"}
    env["ROBOLAKE_STACK_DIR"] = str(tmp_path / "stack")

    phases: dict[str, float] = {}
    prefix: list[str] = []  # the `source` and `export` lines, which every later line's terminal has had

    def shell(line: str) -> list[str]:
        return ["bash", "-c", " && ".join([*prefix, line])]

    try:
        # `make demo` less its run: the Makefile's own rule for the venv.
        _timed(phases, "venv + install", ["make", ".venv/.demo-installed"], cwd=checkout, env=env, timeout=1800)
        _scaled_out(scaled, shell, prefix, phases, checkout, env, tmp_path, dashboard_port)

        # A fresh terminal (activated, no exports): the embedded lake, no services.
        prefix[:] = [line for line in prefix if line.startswith("source ")]
        for line in config_lines:
            _timed(phases, line, shell(line), cwd=checkout, env=env, timeout=1800)
        done = _timed(phases, "python block", [str(checkout / ".venv/bin/python"), "-c", python_block],
                      cwd=checkout, env=env, timeout=1800)
        assert re.search(r"\{'\w+': \(\d+, \d+\)", done.stdout), done.stdout[-2000:]  # success per skill
        assert "'task'" in done.stdout and "'n'" in done.stdout, done.stdout[-2000:]  # the lake's rows
    finally:
        shutil.rmtree(checkout / ".venv", ignore_errors=True)  # gigabytes; pytest keeps tmp_path a while
        print("\nREADME first day, seconds:", {name: round(s, 1) for name, s in phases.items()})


def _scaled_out(scaled, shell, prefix, phases, checkout, env, tmp_path, dashboard_port):
    """The Kafka + MinIO block: the lines before the first service in order, then the rest at once."""
    processes: list[tuple[str, subprocess.Popen, Path]] = []
    stack_started = False
    try:
        setup = scaled[: next(i for i, line in enumerate(scaled) if _is_service(line))]
        rest = scaled[len(setup):]
        for line in setup:
            if line.startswith(("source ", "export ")):
                prefix.append(line)
            else:
                stack_started |= "infra up" in line
                _timed(phases, line, shell(line), cwd=checkout, env=env, timeout=600)
        # Each line in its own terminal, in the README's order: the services, and the run we wait for.
        started: list[float] = []
        for i, line in enumerate(rest):
            log = tmp_path / f"line-{i}.log"
            with open(log, "w") as out:
                proc = subprocess.Popen(shell(line), cwd=checkout, env=env, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            processes.append((line, proc, log))
            started.append(time.monotonic())
        for (line, proc, log), start in zip(processes, started):
            if not _is_service(line):
                proc.wait(1800)
                phases[line] = time.monotonic() - start
                assert proc.returncode == 0, f"{line!r} exited {proc.returncode}:\n{log.read_text()[-3000:]}"

        # The run is done; the services are still up: the dashboard answers, tail showed the conversation.
        page = None
        for _ in range(60):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/", timeout=10)
                break
            except OSError:
                time.sleep(1)
        assert page is not None and page.status == 200, "the dashboard did not answer"
        for line, proc, log in processes:
            assert proc.poll() in (None, 0), f"{line!r} exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            if line.startswith("robolake tail"):
                assert log.read_text().strip(), f"{line!r} printed nothing"
    finally:
        start = time.monotonic()
        for _, proc, _ in processes:
            _signal(proc, signal.SIGTERM)  # each terminal closed
        for _, proc, _ in processes:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait()
        if stack_started:
            down = subprocess.run(shell("robolake infra down"), cwd=checkout, env=env, capture_output=True,
                                  text=True, timeout=300)
            assert down.returncode == 0, down.stderr
        phases["stop services + infra down"] = time.monotonic() - start

