"""The experimenter's model behind one interface: a vision-language model (or the scripted stand-in)
that answers one request with one JSON reply.

A request is what any backend needs to ask its model: a system instruction, a conversation of
messages (few-shot exemplars first, images inline, then the question), the JSON schema the reply
must satisfy, and the structured facts the prompt was rendered from (`context`: the scripted
backend reads these instead of the words). Backends only transport: they neither validate nor
repair a reply (the curriculum does, consumers/curriculum/replies.py) and they never emit events
(the recorder wraps any backend and puts every call on the log as `vlm.call`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Image:
    name: str        # a reference a reader can follow: "episode/<id>/initial", "prompts/exemplars/x.png"
    png: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest()


@dataclass(frozen=True)
class Message:
    role: str                          # "user" | "model"
    text: str
    images: tuple[Image, ...] = ()


@dataclass(frozen=True)
class VLMRequest:
    stage: str                         # propose | decompose | retrieve | analyze
    system: str
    messages: tuple[Message, ...]      # exemplars, then the question (last, role "user")
    schema: dict                       # JSON schema of the reply
    context: dict = field(default_factory=dict)
    temperature: float = 0.0

    @property
    def prompt(self) -> str:
        """The whole text sent, as one readable string (for the vlm.call event)."""
        turns = [f"[system]\n{self.system}"] + [f"[{m.role}]\n{m.text}" for m in self.messages]
        return "\n\n".join(turns)

    @property
    def images(self) -> tuple[Image, ...]:
        return tuple(image for m in self.messages for image in m.images)

    @property
    def hash(self) -> str:
        """Identifies the request: the same question asked again has the same hash."""
        digest = hashlib.sha256()
        digest.update(json.dumps([self.stage, self.prompt, self.schema, self.temperature], sort_keys=True).encode())
        for image in self.images:
            digest.update(image.sha256.encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class VLMReply:
    text: str                          # the raw reply (JSON text when the model complied)
    model: str
    latency_s: float
    input_tokens: int | None = None
    output_tokens: int | None = None


class VLMError(RuntimeError):
    """The call failed after the backend's own retries (timeout, HTTP error, no reply)."""


class VLMConfigError(ValueError):
    """The backend cannot be set up as configured (unknown backend, no model): a usage error."""


class MissingAPIKey(VLMConfigError):
    """The provider's key is not in the environment; the message names the variable to set."""


class VLM(Protocol):
    backend: str                       # scripted | gemini | openai
    model: str

    def complete(self, request: VLMRequest) -> VLMReply:
        """One reply, or VLMError."""
