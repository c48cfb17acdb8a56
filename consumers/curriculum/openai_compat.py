"""Any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp, or OpenAI itself) through the openai
client: images as data: URLs, replies constrained to the request's JSON schema (strict), our retry
policy (consumers/curriculum/retrying.py) instead of the client's.

The body of a reply is read here, not by the client: "compatible" servers send bodies the client
would pass on half-parsed (a JSON array, bytes that are not UTF-8, content as a list of parts), and
every such body must end as a VLMError that says what was wrong, never as a crash further on."""

from __future__ import annotations

import base64
import json
import time

from consumers.curriculum.retrying import (Retryable, RetryPolicy, call_with_retries, is_retryable_status,
                                           retry_after_seconds, shorten)
from consumers.curriculum.vlm import Message, VLMError, VLMReply, VLMRequest

DEFAULT_MODEL = "gpt-4o-mini"     # OpenAI's own API; a local server needs the name of the model it serves
_ROLES = {"user": "user", "model": "assistant"}


class OpenAIVLM:
    backend = "openai"

    def __init__(self, model: str = "", base_url: str = "", api_key: str = "", timeout: float = 60.0,
                 retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0, total_timeout: float = 300.0):
        """`base_url`: the server's /v1 URL (empty: OpenAI's); `timeout`: seconds one attempt may take;
        `retries`: attempts after the first; `backoff`: the first wait between attempts."""
        import openai

        self.model = model or DEFAULT_MODEL
        self.policy = RetryPolicy(attempts=retries + 1, backoff_s=backoff, max_backoff_s=max_backoff,
                                  total_s=total_timeout)
        # Local servers take any key, but the client insists on one.
        self._client = openai.OpenAI(base_url=base_url or None, api_key=api_key or "unused",
                                     timeout=timeout, max_retries=0)  # we retry

    def complete(self, request: VLMRequest) -> VLMReply:
        started = time.monotonic()
        messages = [{"role": "system", "content": request.system}] + [_message(m) for m in request.messages]
        body = call_with_retries(lambda: self._once(messages, request), self.policy, f"openai {self.model}")
        try:
            text, model, input_tokens, output_tokens = _read(body)
        except _Malformed as exc:
            raise VLMError(f"openai {self.model}: {exc}") from None
        return VLMReply(text=text, model=model or self.model, latency_s=time.monotonic() - started,
                        input_tokens=input_tokens, output_tokens=output_tokens)

    def _once(self, messages: list[dict], request: VLMRequest):
        import openai

        try:
            return self._client.chat.completions.with_raw_response.create(
                model=self.model, messages=messages, temperature=request.temperature,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": f"{request.stage}_reply", "schema": request.schema,
                                                 "strict": True}}).http_response.content
        except openai.APIStatusError as exc:
            message = f"HTTP {exc.status_code}: {shorten(_server_message(exc))}"
            if is_retryable_status(exc.status_code):
                raise Retryable(message, retry_after_seconds(exc.response.headers)) from None
            raise VLMError(f"openai {self.model}: {message}") from None
        except openai.APIConnectionError as exc:  # timeouts too
            raise Retryable(f"{type(exc).__name__}: {exc}") from None


def _message(message: Message) -> dict:
    role = _ROLES[message.role]
    if not message.images:
        return {"role": role, "content": message.text}
    if role != "user":
        raise ValueError(f"only user messages may carry images in the OpenAI chat API, not {message.role!r} ones")
    images = [{"type": "image_url",
               "image_url": {"url": "data:image/png;base64," + base64.b64encode(image.png).decode()}}
              for image in message.images]
    return {"role": role, "content": [*images, {"type": "text", "text": message.text}]}


def _server_message(exc) -> str:
    """The server's own words: the JSON error's message, else the body as text (an HTML error page)."""
    body = exc.body
    if isinstance(body, dict):
        return str(body.get("message") or body)
    return exc.response.text or exc.message


class _Malformed(ValueError):
    """The body is not a chat completion with text; the message says what is wrong with it."""


def _read(body: bytes) -> tuple[str, str | None, int | None, int | None]:
    """(text, model, input tokens, output tokens) of a chat completion body."""
    try:
        completion = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _Malformed(f"the server's reply is not UTF-8 text (byte {body[exc.start]:#04x} at {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise _Malformed(f"the server's reply is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): "
                         f"{shorten(body.decode('utf-8'), 120)}") from None
    if not isinstance(completion, dict):
        raise _Malformed(f"the server's reply is a JSON {_kind(completion)}, not a chat completion object")
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _Malformed("the reply has no choices")
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _Malformed("the reply's first choice has no message")
    content = message.get("content")
    if content is None:  # a refusal, or a server that answered with something else
        raise _Malformed(f"no reply text (refusal: {message.get('refusal')}, finish reason "
                         f"{choice.get('finish_reason')})")
    if isinstance(content, list):  # content parts, as some servers send them: the text parts are the reply
        texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise _Malformed(f"the reply's content parts hold no text ({shorten(json.dumps(content), 120)})")
        content = "".join(texts)
    if not isinstance(content, str):
        raise _Malformed(f"the reply's content is a JSON {_kind(content)}, not text")
    usage = completion.get("usage") if isinstance(completion.get("usage"), dict) else {}
    model = completion.get("model")
    return (content, model if isinstance(model, str) and model else None,
            _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _kind(value) -> str:
    return {list: "array", dict: "object", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
