"""Local servers that speak the VLM providers' REST protocols, for testing the real client libraries
over real HTTP: Gemini's `POST /v1beta/models/{model}:generateContent` and the OpenAI-compatible
`POST /v1/chat/completions` (what vLLM, Ollama and llama.cpp serve).

Each server answers from a queue of scripted responses (status, body, delay, headers), then from
`default` (a Response, or a function of the request's JSON giving one), and records every request
it got. A delay longer than the client's timeout is a reply that never comes.

    with GeminiServer() as server:
        server.queue(server.error(429), server.reply('{"task": "x"}'))
        vlm = GeminiVLM("gemini-test", api_key="k", base_url=server.url, ...)
"""

from __future__ import annotations

import json
import re
import struct
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass(frozen=True)
class Response:
    status: int
    body: dict | str | bytes            # a dict is sent as JSON; str/bytes as they are (malformed bodies)
    delay: float = 0.0                  # seconds to wait before answering
    headers: dict = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode()
        return self.body.encode() if isinstance(self.body, str) else self.body


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict                       # lower-case names
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class FakeVLMServer:
    """A ThreadingHTTPServer on 127.0.0.1:<free port> in a background thread."""

    path_pattern: re.Pattern = re.compile("")

    def __init__(self, default: Response | Callable[[dict], Response] | None = None):
        self.default = default
        self.requests: list[Received] = []
        self._responses: list[Response] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def queue(self, *responses: Response) -> None:
        with self._lock:
            self._responses.extend(responses)

    def __enter__(self) -> "FakeVLMServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()            # wakes handlers still sleeping out a delay
        self._http.shutdown()
        self._http.server_close()

    # What a response of this protocol looks like; subclasses fill these in.
    def reply(self, text: str, input_tokens: int = 11, output_tokens: int = 7, delay: float = 0.0) -> Response:
        raise NotImplementedError

    def error(self, status: int, message: str = "", delay: float = 0.0, retry_after: float | None = None) -> Response:
        raise NotImplementedError

    def _next(self, request: Received) -> Response:
        with self._lock:
            self.requests.append(request)
            if self._responses:
                return self._responses.pop(0)
        if callable(self.default):
            return self.default(request.json())
        return self.default or self.error(500, "fake server: no response scripted")

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if not server.path_pattern.fullmatch(self.path.split("?")[0]):
                    return self._send(server.error(404, f"no route for POST {self.path}"))
                received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                response = server._next(received)
                if response.delay and server._stopping.wait(response.delay):
                    return
                self._send(response)

            def _send(self, response: Response):
                payload = response.encoded()
                try:
                    self.send_response(response.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout test)
                    pass

            def log_message(self, *args):  # keep test output quiet
                pass

        return Handler


_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


class GeminiServer(FakeVLMServer):
    """The Gemini API's generateContent, as google-genai calls it (camelCase JSON)."""

    path_pattern = re.compile(r"/v1beta/models/[^/:]+:generateContent")

    def reply(self, text: str, input_tokens: int = 11, output_tokens: int = 7, delay: float = 0.0,
              model: str = "gemini-test-001") -> Response:
        return Response(200, {
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": input_tokens, "candidatesTokenCount": output_tokens,
                              "totalTokenCount": input_tokens + output_tokens},
            "modelVersion": model,
        }, delay)

    def error(self, status: int, message: str = "", delay: float = 0.0, retry_after: float | None = None) -> Response:
        body = {"error": {"code": status, "message": message or f"HTTP {status}",
                          "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}}
        return Response(status, body, delay, {"retry-after": str(retry_after)} if retry_after is not None else {})

    @staticmethod
    def model_of(request: Received) -> str:
        return request.path.split("/models/")[1].split(":")[0]


class OpenAIServer(FakeVLMServer):
    """An OpenAI-compatible chat/completions endpoint."""

    path_pattern = re.compile(r"/v1/chat/completions")

    def reply(self, text: str, input_tokens: int = 11, output_tokens: int = 7, delay: float = 0.0,
              model: str = "local-vlm") -> Response:
        return Response(200, {
            "id": "chatcmpl-test", "object": "chat.completion", "created": 1764000000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                      "total_tokens": input_tokens + output_tokens},
        }, delay)

    def error(self, status: int, message: str = "", delay: float = 0.0, retry_after: float | None = None) -> Response:
        kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_exceeded"}
        body = {"error": {"message": message or f"HTTP {status}", "type": kind.get(status, "server_error"),
                          "param": None, "code": None}}
        return Response(status, body, delay, {"retry-after": str(retry_after)} if retry_after is not None else {})


def tiny_png(rgb: tuple[int, int, int] = (200, 30, 30), size: int = 2) -> bytes:
    """A real PNG (size x size, one colour) without an imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
