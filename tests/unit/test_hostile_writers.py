"""Two writers where one is meant: a second trainer of a run, a curriculum beside a running
experiment, and a lake that cannot be written (a full disk) all end at once with one line."""

from __future__ import annotations

import errno

import pytest

from infra.settings import Settings
from robolake.cli import main


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOLAKE_BUS", "memory")
    monkeypatch.setenv("ROBOLAKE_LAKE", f"file://{tmp_path}/lake")
    return Settings.load()


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_second_trainer_of_a_run_refuses_before_any_work(settings, tmp_path, capsys):
    pytest.importorskip("torch", reason="the learner extra is not installed")
    from infra.lake_catalog import only_one

    with only_one(settings, "train-r1"):
        assert main(["train", "--dataset", "d", "--steps", "2", "--run-id", "r1"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "run r1 is being trained by another process" in line
    assert not (tmp_path / "lake" / "checkpoints").exists()


def test_curriculum_once_refuses_while_the_experiment_runs(settings, capsys):
    from infra.lake_catalog import only_one

    with only_one(settings, "run-exp"):
        assert main(["curriculum", "--once", "--experiment", "exp"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "`robolake run` of experiment 'exp' is running" in line


@pytest.fixture
def commits(monkeypatch):
    """Every lake commit tried, counted; `fail` (an exception) makes each one raise it."""
    from infra.lake_catalog import LakeTables

    tried = {"n": 0, "fail": None}
    real = LakeTables.commit

    def commit(self, tables, offsets):
        tried["n"] += 1
        if tried["fail"] is not None:
            raise tried["fail"]
        return real(self, tables, offsets)

    monkeypatch.setattr(LakeTables, "commit", commit)
    return tried


def test_a_full_disk_is_tried_a_bounded_number_of_times_then_one_line(settings, commits, monkeypatch, capsys):
    monkeypatch.setenv("ROBOLAKE_LAKE_COMMIT_ATTEMPTS", "2")
    commits["fail"] = OSError(errno.ENOSPC, "No space left on device")
    assert main(["produce", "--synthetic", "2", "--steps", "4"]) == 1
    assert commits["n"] == 2
    line = _one_line(capsys.readouterr().err)
    assert "failed 2 times" in line and "No space left on device" in line


@pytest.fixture
def s3_refusing(tmp_path, monkeypatch):
    """A local S3 endpoint that answers every request 403 AccessDenied, as S3 does to bad credentials."""
    import http.server
    import threading

    class Deny(http.server.BaseHTTPRequestHandler):
        def deny(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"<Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>"
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = deny

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Deny)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ROBOLAKE_BUS", "memory")
    monkeypatch.setenv("ROBOLAKE_LAKE", "s3://robolake/lake")
    monkeypatch.setenv("ROBOLAKE_S3_ENDPOINT", f"127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("ROBOLAKE_CATALOG", f"sqlite:{tmp_path}/catalog/catalog.sqlite")
    yield Settings.load()
    server.shutdown()
    server.server_close()


def test_an_s3_403_fails_at_once_naming_the_object_and_the_credentials(s3_refusing, commits, capsys):
    assert main(["produce", "--synthetic", "2", "--steps", "200"]) == 1
    # refused when the new lake's data path is first listed, before any commit: never retried
    assert commits["n"] == 0, "a 403 is permanent: never retried"
    line = _one_line(capsys.readouterr().err)
    assert "refused access to s3://robolake/lake/" in line and "s3_access_key" in line


def test_a_checkpoint_read_refused_by_s3_names_the_key(s3_refusing):
    from infra.object_store import AccessDenied
    from learner.checkpoints import CheckpointStore

    with pytest.raises(AccessDenied, match="s3://robolake/lake/checkpoints/r1/latest .*s3_secret_key"):
        CheckpointStore(s3_refusing, "r1").latest_step()
