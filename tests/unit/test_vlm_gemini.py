"""The Gemini backend: the real google-genai client over real HTTP against a local server that speaks
the generateContent protocol, including its error codes and malformed bodies."""

from __future__ import annotations

import base64
import time

import pytest

from consumers.curriculum.backends import open_vlm
from consumers.curriculum.gemini import GeminiVLM
from consumers.curriculum.vlm import Image, Message, MissingAPIKey, VLMConfigError, VLMError, VLMRequest
from robolake.failures import failure
from tests.vlm_servers import GeminiServer, Response, tiny_png

SCHEMA = {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}
PNG = tiny_png()
FAST = {"retries": 2, "backoff": 0.01, "max_backoff": 0.02}


def _request() -> VLMRequest:
    return VLMRequest(stage="propose", system="You are the curriculum.", schema=SCHEMA, temperature=0.3, messages=(
        Message("user", "An example scene.", (Image("prompts/exemplars/a.png", tiny_png((0, 0, 255))),)),
        Message("model", '{"task": "stack the blocks"}'),
        Message("user", "What next?", (Image("episode/e1/initial", PNG),)),
    ))


@pytest.fixture
def server():
    with GeminiServer() as running:
        yield running


def _vlm(server, timeout=5.0, **retry) -> GeminiVLM:
    return GeminiVLM("gemini-test", api_key="test-key", base_url=server.url, timeout=timeout, **{**FAST, **retry})


def test_a_request_carries_images_inline_the_schema_and_the_system_text(server):
    server.queue(server.reply('{"task": "lift red"}', input_tokens=120, output_tokens=9))
    reply = _vlm(server).complete(_request())
    assert (reply.text, reply.model, reply.input_tokens, reply.output_tokens) == (
        '{"task": "lift red"}', "gemini-test-001", 120, 9)
    assert reply.latency_s > 0
    (sent,) = server.requests
    assert sent.path == "/v1beta/models/gemini-test:generateContent"
    assert sent.headers["x-goog-api-key"] == "test-key"
    body = sent.json()
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    question = body["contents"][2]["parts"]
    inline = question[0]["inlineData"]
    assert base64.b64decode(inline["data"]) == PNG
    assert inline.get("mimeType", inline.get("mime_type")) == "image/png"  # the API takes either spelling
    assert question[1] == {"text": "What next?"}
    assert body["systemInstruction"]["parts"] == [{"text": "You are the curriculum."}]
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA
    assert config["temperature"] == 0.3


def test_a_429_is_retried(server):
    server.queue(server.error(429, "quota"), server.reply('{"task": "t"}'))
    assert _vlm(server).complete(_request()).text == '{"task": "t"}'
    assert len(server.requests) == 2


def test_a_429_storm_gives_up_after_the_allowed_attempts(server):
    server.default = server.error(429, "Resource has been exhausted")
    with pytest.raises(VLMError, match=r"gave up after 3 attempts.*429.*Resource has been exhausted"):
        _vlm(server, retries=2).complete(_request())
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried(server, status):
    server.queue(server.error(status, "overloaded"), server.reply('{"task": "t"}'))
    assert _vlm(server).complete(_request()).text == '{"task": "t"}'
    assert len(server.requests) == 2


def test_an_html_error_page_is_reported_in_the_servers_words(server):
    server.default = Response(502, "<html><body>Bad Gateway</body></html>")
    with pytest.raises(VLMError, match="502.*Bad Gateway"):
        _vlm(server, retries=1).complete(_request())
    assert len(server.requests) == 2


def test_a_reply_that_never_comes_times_out_and_is_retried(server):
    server.queue(server.reply('{"task": "late"}', delay=3), server.reply('{"task": "t"}'))
    started = time.monotonic()
    assert _vlm(server, timeout=0.3).complete(_request()).text == '{"task": "t"}'
    assert time.monotonic() - started < 2, "the slow attempt was cut at the timeout, not waited out"
    assert len(server.requests) == 2


def test_only_timeouts_end_in_a_vlm_error(server):
    server.default = server.reply('{"task": "late"}', delay=3)
    with pytest.raises(VLMError, match="gave up after 2 attempts.*[Tt]imeout"):
        _vlm(server, timeout=0.2, retries=1).complete(_request())


def test_a_malformed_body_fails_at_once(server):
    server.queue(Response(200, "{'candidates': truncated"))
    with pytest.raises(VLMError, match="not JSON"):
        _vlm(server).complete(_request())
    assert len(server.requests) == 1


def test_a_body_of_the_wrong_shape_is_a_vlm_error_saying_why(server):
    server.queue(Response(200, {"candidates": [{"content": {"role": "model", "parts": [{"text": 5}]}}]}))
    with pytest.raises(VLMError, match="not a generateContent response"):
        _vlm(server).complete(_request())
    assert len(server.requests) == 1


def test_a_reply_that_is_not_json_is_returned_as_it_came(server):
    """Backends only transport; the curriculum validates the reply and re-asks or rejects."""
    server.queue(server.reply("I think the robot should lift the red block."))
    assert _vlm(server).complete(_request()).text == "I think the robot should lift the red block."


def test_a_bad_request_fails_at_once_with_the_servers_message(server):
    server.queue(server.error(400, "Invalid JSON payload received. Unknown name \"foo\""))
    with pytest.raises(VLMError, match=r"HTTP 400 INVALID_ARGUMENT: Invalid JSON payload received"):
        _vlm(server).complete(_request())
    assert len(server.requests) == 1


def test_a_blocked_prompt_fails_without_retrying(server):
    server.queue(Response(200, {"promptFeedback": {"blockReason": "SAFETY"}}))
    with pytest.raises(VLMError, match="no reply text.*SAFETY"):
        _vlm(server).complete(_request())
    assert len(server.requests) == 1


def test_retry_after_is_honoured(server):
    server.queue(server.error(429, "slow down", retry_after=0.4), server.reply('{"task": "t"}'))
    started = time.monotonic()
    _vlm(server).complete(_request())
    assert time.monotonic() - started >= 0.4


def test_a_wait_past_the_total_time_limit_gives_up_at_once(server):
    server.queue(server.error(429, "slow down", retry_after=30))
    started = time.monotonic()
    with pytest.raises(VLMError, match="would pass the 2s limit"):
        _vlm(server, retries=5, total_timeout=2).complete(_request())
    assert time.monotonic() - started < 1 and len(server.requests) == 1


def test_a_server_that_is_not_there_is_retried_then_reported(server):
    url = server.url
    server.__exit__()
    vlm = GeminiVLM("gemini-test", api_key="k", base_url=url, timeout=1, retries=1, backoff=0.01)
    with pytest.raises(VLMError, match="gave up after 2 attempts.*ConnectError"):
        vlm.complete(_request())


def test_the_factory_reads_the_key_from_the_environment(server):
    server.queue(server.reply('{"task": "t"}'))
    vlm = open_vlm("gemini", model="gemini-test", base_url=server.url, env={"GOOGLE_API_KEY": "from-env"}, **FAST)
    assert (vlm.backend, vlm.model) == ("gemini", "gemini-test")
    vlm.complete(_request())
    assert server.requests[0].headers["x-goog-api-key"] == "from-env"


def test_a_missing_key_is_a_usage_error_naming_the_variable():
    with pytest.raises(MissingAPIKey) as caught:
        open_vlm("gemini", env={})
    assert failure(caught.value) == (2, "error: set GOOGLE_API_KEY to use --vlm gemini")


def test_an_unknown_backend_is_a_usage_error_listing_the_choices():
    with pytest.raises(VLMConfigError) as caught:
        open_vlm("claude", env={})
    assert failure(caught.value) == (2, "error: unknown VLM backend 'claude'; choose one of scripted, gemini, openai")
