"""Gemini through google-genai (the maintained SDK): images inline, replies constrained to the
request's JSON schema, our retry policy (consumers/curriculum/retrying.py) instead of the SDK's."""

from __future__ import annotations

import json
import time

from consumers.curriculum.retrying import (Retryable, RetryPolicy, call_with_retries, is_retryable_status,
                                           retry_after_seconds, shorten)
from consumers.curriculum.vlm import MissingAPIKey, VLMError, VLMReply, VLMRequest

DEFAULT_MODEL = "gemini-2.5-flash"
# The Gemini API version whose generateContent takes `responseJsonSchema` (the SDK's default is v1).
API_VERSION = "v1beta"


class GeminiVLM:
    backend = "gemini"

    def __init__(self, model: str = "", api_key: str = "", base_url: str = "", timeout: float = 60.0,
                 retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0, total_timeout: float = 300.0):
        """`timeout`: seconds one attempt may take; `retries`: attempts after the first; `backoff`:
        the first wait between attempts; `total_timeout`: no wait starts that would end later."""
        from google import genai
        from google.genai import types

        if not api_key:
            raise MissingAPIKey("set GOOGLE_API_KEY to use --vlm gemini")
        self.model = model or DEFAULT_MODEL
        self.policy = RetryPolicy(attempts=retries + 1, backoff_s=backoff, max_backoff_s=max_backoff,
                                  total_s=total_timeout)
        self._client = genai.Client(api_key=api_key, vertexai=False, http_options=types.HttpOptions(
            base_url=base_url or None, api_version=API_VERSION, timeout=max(1, int(timeout * 1000)),
            retry_options=types.HttpRetryOptions(attempts=1)))  # one attempt per call: we retry
        self._types = types

    def complete(self, request: VLMRequest) -> VLMReply:
        started = time.monotonic()
        contents, config = self._render(request)
        response = call_with_retries(lambda: self._once(contents, config), self.policy,
                                     f"gemini {self.model}")
        text = response.text
        if text is None:  # blocked, or stopped before writing anything: asking again gets the same
            reason = response.candidates[0].finish_reason if response.candidates else None
            raise VLMError(f"gemini {self.model}: no reply text (finish reason {reason}, "
                           f"prompt feedback {response.prompt_feedback})")
        usage = response.usage_metadata
        output_tokens = None
        if usage and (usage.candidates_token_count is not None or usage.thoughts_token_count is not None):
            output_tokens = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)  # both billed
        return VLMReply(text=text, model=response.model_version or self.model,
                        latency_s=time.monotonic() - started,
                        input_tokens=usage.prompt_token_count if usage else None, output_tokens=output_tokens)

    def _render(self, request: VLMRequest):
        types = self._types
        # Each image goes before its message's text, as Google's prompting guide recommends.
        contents = [types.Content(role=m.role, parts=[
            *(types.Part.from_bytes(data=image.png, mime_type="image/png") for image in m.images),
            types.Part.from_text(text=m.text)]) for m in request.messages]
        config = types.GenerateContentConfig(
            system_instruction=request.system, temperature=request.temperature,
            response_mime_type="application/json", response_json_schema=request.schema)
        return contents, config

    def _once(self, contents, config):
        from google.genai import errors

        try:
            return self._client.models.generate_content(model=self.model, contents=contents, config=config)
        except errors.APIError as exc:
            message = f"HTTP {exc.code} {exc.status or ''}: {shorten(exc.message or exc.details)}"
            if is_retryable_status(exc.code):
                raise Retryable(message, retry_after_seconds(getattr(exc.response, "headers", None))) from None
            raise VLMError(f"gemini {self.model}: {message}") from None
        except json.JSONDecodeError as exc:
            raise VLMError(f"gemini {self.model}: the server's reply is not JSON ({exc})") from None
        except ValueError as exc:  # pydantic's ValidationError, UnicodeDecodeError: a body of the wrong shape
            raise VLMError(f"gemini {self.model}: the server's reply is not a generateContent response "
                           f"({shorten(exc, 200)})") from None
        except _transport_errors() as exc:  # timeouts, refused or dropped connections
            raise Retryable(f"{type(exc).__name__}: {exc or 'no detail'}") from None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's connection-level errors (google-genai uses httpx2, or httpx when installed)."""
    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(__import__(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)
