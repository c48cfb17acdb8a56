"""The live dashboard: a read-only HTTP server on localhost with one page that polls JSON endpoints.

    GET /                                   the page (page.py: inline CSS and JS, nothing fetched elsewhere)
    GET /api/experiments                    experiments in the lake, most recently active first
    GET /api/timeline?experiment=X&cursor=C events after the cursor, readable lines, and the next cursor
    GET /api/skills?experiment=X            per skill, the learned policy's evaluated success and the
                                            expert's collection success, apart (Wilson 95% intervals)
    GET /api/curves?experiment=X            the learner's metrics per step
    GET /api/videos?experiment=X            the episodes shown as videos (per task, the latest with frames)
    GET /api/video?episode=E                one episode's frames as an MP4 (encoded once, then kept)

The server holds one read-only connection to the lake (opening one costs ~0.4 s) and answers each
request on a cursor of its own; DuckLake reads its catalog at every query, so each answer sees what
sinks committed since the last one. Anything but GET is refused with 405.

A browser page from anywhere can reach a loopback server by renaming its own host to 127.0.0.1
(DNS rebinding): only requests that name this server (localhost, 127.0.0.1, [::1] or the address
it listens on, with its port) in their Host header are answered, others get 403. Idle connections
are closed after `idle_timeout_s`, and at most `max_connections` are served at once (the rest get
503 at once), so half-open connections cannot pile up threads.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from http import HTTPStatus
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from robolake.report import queries
from robolake.report.page import PAGE
from schemas.codec import EXPERIMENT_ID_PATTERN

log = logging.getLogger(__name__)
TIMELINE_LIMIT = 500  # newest events sent at once; the page keeps as many
VIDEOS_KEPT = 64      # encoded MP4s kept in memory: a complete episode's frames never change


class BadRequest(ValueError):
    pass


def serve(settings, host: str = "127.0.0.1", port: int = 8765, idle_timeout_s: float = 10.0,
          max_connections: int = 64) -> ThreadingHTTPServer:
    """A server bound to (host, port) (port 0: any free one); call serve_forever() on it."""

    class Handler(_Handler):
        lake = SharedLake(settings)
        timeout = idle_timeout_s  # the socket's: a silent client is dropped, its thread freed

    return _Server((host, port), Handler, max_connections)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    _BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    def __init__(self, address, handler, max_connections: int):
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        port = self.server_address[1]
        bound = address[0] if address[0] not in ("", "0.0.0.0", "::") else "localhost"
        names = {"localhost", "127.0.0.1", "[::1]", f"[{bound}]" if ":" in bound else bound}
        self.hosts = {f"{n}:{port}".lower() for n in names} | ({n.lower() for n in names} if port == 80 else set())

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # a client gone before its reply: nothing to print
            log.debug("client %s left before its reply", client_address)
            return
        super().handle_error(request, client_address)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):  # full: refuse now rather than queue a thread
            try:
                request.sendall(self._BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class SharedLake:
    """One read-only connection, opened at the first request that finds a lake (a dashboard may
    start before the run that makes it); `cursor()` gives each request its own."""

    def __init__(self, settings):
        self.settings, self._con, self._lock = settings, None, threading.Lock()
        self._videos: OrderedDict[str, bytes] = OrderedDict()  # episode -> MP4, least recently used first

    def cursor(self):
        from infra.lake_sql import open_lake

        with self._lock:
            if self._con is None:
                self._con = open_lake(self.settings, read_only=True)  # LakeNotFound: none yet
            return self._con.cursor()

    def video(self, episode: str, encode) -> bytes:
        """The episode's MP4: kept from an earlier request, or `encode()`d now and kept."""
        with self._lock:
            if episode in self._videos:
                self._videos.move_to_end(episode)
                return self._videos[episode]
        mp4 = encode()
        with self._lock:
            self._videos[episode] = mp4
            while len(self._videos) > VIDEOS_KEPT:
                self._videos.popitem(last=False)
        return mp4


class _Handler(BaseHTTPRequestHandler):
    lake: SharedLake
    server_version = "robolake-dashboard"

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").strip().lower()
        if host not in self.server.hosts:
            return self._json(HTTPStatus.FORBIDDEN, {"error": f"this dashboard answers only to "
                                                     f"{', '.join(sorted(self.server.hosts))}, not Host {host[:80]!r}"})
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/":
                return self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
            if url.path == "/api/video":
                return self._video(params)
            handler = _API.get(url.path)
            if handler is None:
                return self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {url.path}"})
            self._json(HTTPStatus.OK, self._with_lake(handler, params))
        except BadRequest as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except Exception as exc:  # a bug, but the client still gets an answer (and the log the trace)
            log.exception("dashboard: %s failed", url.path)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {str(exc)[:200]}"})

    def _refuse(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = _refuse

    def _with_lake(self, handler, params: dict) -> dict:
        from infra.lake_catalog import LakeNotFound
        from infra.lake_sql import QueryLimitError, limits

        try:
            con = self.lake.cursor()
        except LakeNotFound as exc:
            return {"lake": False, "message": str(exc)}
        try:
            with limits(con, self.lake.settings):
                return {"lake": True, **handler(con, params)}
        except QueryLimitError as exc:
            raise BadRequest(str(exc)) from None
        finally:
            con.close()

    def _video(self, params: dict) -> None:
        from robolake.report.video import NoFrames, episode_video

        episode = params.get("episode", "")
        if not re.fullmatch(EXPERIMENT_ID_PATTERN, episode):
            raise BadRequest(f"episode: expected an episode id, got {episode[:40]!r}")
        try:
            answer = self._with_lake(lambda con, _: {"mp4": self.lake.video(
                episode, lambda: episode_video(con, episode)["mp4"])}, params)
        except NoFrames as exc:
            return self._json(HTTPStatus.NOT_FOUND, {"error": str(exc)})
        if not answer["lake"]:
            return self._json(HTTPStatus.NOT_FOUND, {"error": answer["message"]})
        self._send(HTTPStatus.OK, answer["mp4"], "video/mp4")

    def _json(self, status: HTTPStatus, body: dict) -> None:
        self._send(status, json.dumps(body, default=str).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # requests go to the debug log, not stderr
        log.debug("%s " + format, self.address_string(), *args)


def _experiment(params: dict) -> str:
    experiment = params.get("experiment", "")
    if not re.fullmatch(EXPERIMENT_ID_PATTERN, experiment):
        raise BadRequest(f"experiment: expected an experiment id, got {experiment[:40]!r}")
    return experiment


def _timeline(con, params: dict) -> dict:
    try:
        answer = queries.timeline(con, _experiment(params), params.get("cursor"), limit=TIMELINE_LIMIT)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    for event in answer["events"]:
        del event["payload"]  # the page shows the line; the report has the rest
    return answer


def _skills(con, params: dict) -> dict:
    from robolake.report import learning

    _, skills, introduced = learning.read(con, _experiment(params))
    return {**skills, "introduced": introduced}




_API = {
    "/api/experiments": lambda con, params: {"experiments": queries.experiments(con)},
    "/api/timeline": _timeline,
    "/api/skills": _skills,
    "/api/curves": lambda con, params: {"learning": queries.learning_curves(con, _experiment(params))},
    "/api/videos": lambda con, params: {"episodes": queries.video_episodes(con, _experiment(params))},
}
