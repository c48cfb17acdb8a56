"""Opens the experimenter's model by name: scripted (offline, the default), gemini or openai.

The keys come from the providers' own environment variables, never from settings or flags (so they
stay out of shell history and the log): GOOGLE_API_KEY (or GEMINI_API_KEY) for Gemini, OPENAI_API_KEY
for OpenAI's API; a local OpenAI-compatible server (`base_url` set) usually needs none.
"""

from __future__ import annotations

import os
from typing import Mapping

from consumers.curriculum.vlm import VLM, MissingAPIKey, VLMConfigError

BACKENDS = ("scripted", "gemini", "openai")


def open_vlm(backend: str, model: str = "", base_url: str = "", timeout: float = 60.0,
             env: Mapping[str, str] = os.environ, **retry) -> VLM:
    """`retry`: the network backends' retries/backoff/max_backoff/total_timeout (tests make them tiny)."""
    if backend == "scripted":
        from consumers.curriculum.scripted import ScriptedVLM

        return ScriptedVLM()
    if backend == "gemini":
        from consumers.curriculum.gemini import GeminiVLM

        api_key = env.get("GOOGLE_API_KEY") or env.get("GEMINI_API_KEY")
        if not api_key:
            raise MissingAPIKey("set GOOGLE_API_KEY to use --vlm gemini")
        return GeminiVLM(model, api_key=api_key, base_url=base_url, timeout=timeout, **retry)
    if backend == "openai":
        from consumers.curriculum.openai_compat import OpenAIVLM

        api_key = env.get("OPENAI_API_KEY", "")
        if not base_url and not api_key:
            raise MissingAPIKey("set OPENAI_API_KEY to use --vlm openai with OpenAI's API "
                                "(or set the vlm_base_url of a local OpenAI-compatible server)")
        return OpenAIVLM(model, base_url=base_url, api_key=api_key, timeout=timeout, **retry)
    raise VLMConfigError(f"unknown VLM backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def open_vlm_from_settings(settings, env: Mapping[str, str] = os.environ) -> VLM:
    """The backend the settings name (vlm, vlm_model, vlm_base_url, vlm_timeout)."""
    return open_vlm(settings.vlm, model=settings.vlm_model, base_url=settings.vlm_base_url,
                    timeout=settings.vlm_timeout, env=env)
