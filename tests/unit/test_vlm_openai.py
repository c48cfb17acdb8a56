"""The OpenAI-compatible backend (vLLM, Ollama, llama.cpp): the real openai client over real HTTP
against a local server that speaks chat/completions, including its error codes and malformed bodies."""

from __future__ import annotations

import base64
import re
import time

import pytest

from consumers.curriculum.backends import open_vlm, open_vlm_from_settings
from consumers.curriculum.openai_compat import OpenAIVLM
from consumers.curriculum.vlm import Image, Message, MissingAPIKey, VLMError, VLMRequest
from infra.settings import Settings
from robolake.failures import failure
from tests.vlm_servers import OpenAIServer, Response, tiny_png

SCHEMA = {"type": "object", "properties": {"steps": {"type": "array", "items": {"type": "string"}}},
          "required": ["steps"], "additionalProperties": False}
PNG = tiny_png()
FAST = {"retries": 2, "backoff": 0.01, "max_backoff": 0.02}


def _request() -> VLMRequest:
    return VLMRequest(stage="decompose", system="Split the task into steps.", schema=SCHEMA, messages=(
        Message("user", "Task: stack red on green."),
        Message("model", '{"steps": ["grasp red", "place red on green"]}'),
        Message("user", "Task: lift blue.", (Image("episode/e1/initial", PNG),)),
    ))


@pytest.fixture
def server():
    with OpenAIServer() as running:
        yield running


def _vlm(server, timeout=5.0, **retry) -> OpenAIVLM:
    return OpenAIVLM("qwen2.5-vl", base_url=server.url + "/v1", timeout=timeout, **{**FAST, **retry})


def test_a_request_carries_the_image_as_a_data_url_the_schema_and_the_system_text(server):
    server.queue(server.reply('{"steps": ["grasp blue", "lift blue"]}', input_tokens=80, output_tokens=12))
    reply = _vlm(server).complete(_request())
    assert (reply.text, reply.model, reply.input_tokens, reply.output_tokens) == (
        '{"steps": ["grasp blue", "lift blue"]}', "local-vlm", 80, 12)
    (sent,) = server.requests
    assert sent.path == "/v1/chat/completions"
    body = sent.json()
    assert body["model"] == "qwen2.5-vl" and body["temperature"] == 0.0
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["messages"][0]["content"] == "Split the task into steps."
    image, text = body["messages"][3]["content"]
    prefix = "data:image/png;base64,"
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(image["image_url"]["url"][len(prefix):]) == PNG
    assert text == {"type": "text", "text": "Task: lift blue."}
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "decompose_reply", "schema": SCHEMA, "strict": True}}


def test_a_local_server_needs_no_key(server):
    server.queue(server.reply('{"steps": []}'))
    vlm = open_vlm("openai", model="llava", base_url=server.url + "/v1", env={}, **FAST)
    assert (vlm.backend, vlm.model) == ("openai", "llava")
    vlm.complete(_request())
    assert server.requests[0].headers["authorization"].startswith("Bearer ")


def test_a_key_in_the_environment_is_sent(server):
    server.queue(server.reply('{"steps": []}'))
    open_vlm("openai", base_url=server.url + "/v1", env={"OPENAI_API_KEY": "sk-test"}, **FAST).complete(_request())
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"


def test_openais_own_api_needs_a_key():
    with pytest.raises(MissingAPIKey) as caught:
        open_vlm("openai", env={})
    code, message = failure(caught.value)
    assert code == 2 and "set OPENAI_API_KEY" in message and "\n" not in message


def test_a_429_is_retried(server):
    server.queue(server.error(429, "Rate limit reached"), server.reply('{"steps": []}'))
    assert _vlm(server).complete(_request()).text == '{"steps": []}'
    assert len(server.requests) == 2


def test_a_429_storm_gives_up_after_the_allowed_attempts(server):
    server.default = server.error(429, "Rate limit reached")
    with pytest.raises(VLMError, match=r"gave up after 4 attempts.*429.*Rate limit reached") as caught:
        _vlm(server, retries=3).complete(_request())
    assert len(server.requests) == 4
    assert failure(caught.value)[0] == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(server, status):
    server.queue(server.error(status, "model is loading"), server.reply('{"steps": []}'))
    assert _vlm(server).complete(_request()).text == '{"steps": []}'
    assert len(server.requests) == 2


def test_an_html_error_page_is_reported_in_the_servers_words(server):
    server.default = Response(503, "<html><h1>503 Service Unavailable</h1></html>")
    with pytest.raises(VLMError, match="HTTP 503.*Service Unavailable"):
        _vlm(server, retries=1).complete(_request())


def test_a_reply_that_never_comes_times_out_and_is_retried(server):
    server.queue(server.reply('{"steps": ["late"]}', delay=3), server.reply('{"steps": []}'))
    started = time.monotonic()
    assert _vlm(server, timeout=0.3).complete(_request()).text == '{"steps": []}'
    assert time.monotonic() - started < 2 and len(server.requests) == 2


def test_only_timeouts_end_in_a_vlm_error(server):
    server.default = server.reply('{"steps": []}', delay=3)
    with pytest.raises(VLMError, match="gave up after 2 attempts.*timed out"):
        _vlm(server, timeout=0.2, retries=1).complete(_request())


def test_a_malformed_body_fails_at_once(server):
    server.queue(Response(200, "<html>proxy error</html>"))
    with pytest.raises(VLMError, match="not JSON"):
        _vlm(server).complete(_request())
    assert len(server.requests) == 1


def test_a_body_without_choices_fails_at_once(server):
    server.queue(Response(200, {"object": "chat.completion", "choices": []}))
    with pytest.raises(VLMError, match="no choices"):
        _vlm(server).complete(_request())
    assert len(server.requests) == 1


@pytest.mark.parametrize("body, reason", [
    (b'{"choices": [{"message": {"content": "\xff{}"}}]}', "not UTF-8 text (byte 0xff at 38)"),
    ("[1, 2, 3]", "a JSON array, not a chat completion object"),
    ("null", "a JSON null, not a chat completion object"),
    ({"choices": "none"}, "no choices"),
    ({"choices": [{"message": None}]}, "first choice has no message"),
    ({"choices": [{"message": {"content": 42}}]}, "content is a JSON number, not text"),
    ({"choices": [{"message": {"content": [{"type": "image_url", "image_url": {}}]}}]}, "content parts hold no text"),
])
def test_a_body_that_is_not_a_chat_completion_is_a_vlm_error_saying_why(server, body, reason):
    server.queue(Response(200, body))
    with pytest.raises(VLMError, match=re.escape(reason)):
        _vlm(server).complete(_request())
    assert len(server.requests) == 1, "asking again would get the same body"


def test_content_as_a_list_of_text_parts_is_joined_and_odd_fields_are_ignored(server):
    server.queue(Response(200, {"model": 5, "usage": {"prompt_tokens": "many", "completion_tokens": 3},
                                "choices": [{"message": {"content": [
                                    {"type": "text", "text": '{"steps": '}, {"type": "text", "text": '["lift"]}'}]}}]}))
    reply = _vlm(server).complete(_request())
    assert (reply.text, reply.model, reply.input_tokens, reply.output_tokens) == (
        '{"steps": ["lift"]}', "qwen2.5-vl", None, 3)


def test_a_refusal_is_an_error(server):
    server.queue(Response(200, {"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": None, "refusal": "I can't help with that."}}], "model": "m"}))
    with pytest.raises(VLMError, match="refusal: I can't help with that"):
        _vlm(server).complete(_request())


def test_a_reply_that_is_not_json_is_returned_as_it_came(server):
    server.queue(server.reply("Sure! Here are the steps: grasp, lift."))
    assert _vlm(server).complete(_request()).text == "Sure! Here are the steps: grasp, lift."


def test_a_bad_request_fails_at_once_with_the_servers_message(server):
    server.queue(server.error(400, "model 'qwen2.5-vl' does not support image input"))
    with pytest.raises(VLMError, match="HTTP 400: model 'qwen2.5-vl' does not support image input"):
        _vlm(server).complete(_request())
    assert len(server.requests) == 1


def test_an_unknown_model_fails_at_once(server):
    server.queue(server.error(404, "The model `nope` does not exist."))
    with pytest.raises(VLMError, match="HTTP 404: The model `nope` does not exist"):
        _vlm(server).complete(_request())
    assert len(server.requests) == 1


def test_images_on_a_model_turn_are_refused_before_anything_is_sent(server):
    request = VLMRequest(stage="propose", system="s", schema=SCHEMA,
                         messages=(Message("model", "x", (Image("a", PNG),)), Message("user", "q")))
    with pytest.raises(ValueError, match="only user messages may carry images"):
        _vlm(server).complete(request)
    assert server.requests == []


def test_settings_name_the_backend_the_model_the_server_and_the_timeout(server):
    settings = Settings.load(env={}, vlm="openai", vlm_model="llava:13b", vlm_base_url=server.url + "/v1",
                             vlm_timeout=0.3)
    vlm = open_vlm_from_settings(settings, env={})
    server.queue(server.reply('{"steps": []}', delay=2), server.reply('{"steps": ["x"]}'))
    assert vlm.complete(_request()).text == '{"steps": ["x"]}', "the slow first attempt was cut at 0.3s"
    assert [r.json()["model"] for r in server.requests] == ["llava:13b", "llava:13b"]


def test_the_scripted_backend_opens_offline():
    vlm = open_vlm("scripted", env={})
    assert vlm.backend == "scripted" and vlm.model
