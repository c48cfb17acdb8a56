"""Any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp, or OpenAI itself) through the openai
client: images as data: URLs, replies constrained to the request's JSON schema (strict), our retry
policy (consumers/curriculum/retrying.py) instead of the client's."""

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
        completion = call_with_retries(lambda: self._once(messages, request), self.policy, f"openai {self.model}")
        if not completion.choices:
            raise VLMError(f"openai {self.model}: the reply has no choices")
        message = completion.choices[0].message
        if message.content is None:  # a refusal, or a server that answered with something else
            raise VLMError(f"openai {self.model}: no reply text (refusal: {message.refusal}, "
                           f"finish reason {completion.choices[0].finish_reason})")
        usage = completion.usage
        return VLMReply(text=message.content, model=completion.model or self.model,
                        latency_s=time.monotonic() - started,
                        input_tokens=usage.prompt_tokens if usage else None,
                        output_tokens=usage.completion_tokens if usage else None)

    def _once(self, messages: list[dict], request: VLMRequest):
        import openai

        try:
            return self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=request.temperature,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": f"{request.stage}_reply", "schema": request.schema,
                                                 "strict": True}})
        except openai.APIStatusError as exc:
            message = f"HTTP {exc.status_code}: {shorten(_server_message(exc))}"
            if is_retryable_status(exc.status_code):
                raise Retryable(message, retry_after_seconds(exc.response.headers)) from None
            raise VLMError(f"openai {self.model}: {message}") from None
        except openai.APIConnectionError as exc:  # timeouts too
            raise Retryable(f"{type(exc).__name__}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise VLMError(f"openai {self.model}: the server's reply is not JSON ({exc})") from None


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
