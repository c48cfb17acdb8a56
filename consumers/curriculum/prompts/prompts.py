"""The curriculum's prompts, as files: `system.md`, one template per stage (`<stage>.md`, fields as
`$name`), the JSON schema of each stage's reply (`<stage>.schema.json`) and few-shot exemplars
(`exemplars/<stage>_<n>.toml`, rendered through the same template, images beside them).

Editing a prompt is editing a file here; the code only fills in the fields. A changed prompt is a
different request (its hash changes), so a replay of an experiment recorded with the old prompt
stops with a ReplayMismatch instead of silently asking the model.
"""

from __future__ import annotations

import json
import string
import tomllib
from functools import lru_cache
from pathlib import Path

from consumers.curriculum.vlm import Image, Message, VLMRequest

FOLDER = Path(__file__).parent
STAGES = ("propose", "decompose", "retrieve")


@lru_cache
def system() -> str:
    return (FOLDER / "system.md").read_text().strip()


@lru_cache
def template(stage: str) -> string.Template:
    return string.Template((FOLDER / f"{stage}.md").read_text().strip())


@lru_cache
def schema(stage: str) -> dict:
    return json.loads((FOLDER / f"{stage}.schema.json").read_text())


def image_file(name: str) -> Image:
    """A PNG of the exemplars folder, named as a reader can find it."""
    return Image(f"prompts/exemplars/{name}", (FOLDER / "exemplars" / name).read_bytes())


@lru_cache
def exemplars(stage: str) -> tuple[Message, ...]:
    """The worked examples of a stage: (user question, model reply) pairs, in file-name order."""
    messages: list[Message] = []
    for path in sorted((FOLDER / "exemplars").glob(f"{stage}_*.toml")):
        with open(path, "rb") as f:
            example = tomllib.load(f)
        images = (image_file(example["image"]),) if "image" in example else ()
        messages.append(Message("user", render(stage, example["question"]), images))
        messages.append(Message("model", example["reply"]["text"].strip()))
    return tuple(messages)


def render(stage: str, fields: dict) -> str:
    """The stage's template with its fields filled in; a missing field is a KeyError (a bug)."""
    return template(stage).substitute({k: str(v).strip("\n") for k, v in fields.items()})


def request(stage: str, fields: dict, context: dict, image: Image | None = None,
            temperature: float = 0.0) -> VLMRequest:
    """The whole question of a stage: system, exemplars, then this question (with the scene image)."""
    question = Message("user", render(stage, fields), (image,) if image is not None else ())
    return VLMRequest(stage=stage, system=system(), messages=(*exemplars(stage), question),
                      schema=schema(stage), context=context, temperature=temperature)
