"""A recorded model behind a provider's real protocol: a local Gemini or OpenAI-compatible server
(tests/vlm_servers.py) that plays back the replies a recorded experiment got (its `vlm.call`
events), per stage in the order they were given: the k-th propose question gets the k-th recorded
propose reply, and so on. It does not read the question's numbers: the replies follow the recorded
run, not the replayed one, so a replay checks that the loop runs through the provider's client and
protocol, not what a model would choose. The learner is not bit-for-bit reproducible (a rerun's
evaluation may differ by an episode), so a later question is rarely word for word the recorded
one; the server counts how many were (`exact`). When a stage's recording runs out, the server
answers HTTP 400 saying so: that call fails (a round fails only when all of its calls do), and
nothing is made up.

    with serve("gemini", "file:///tmp/unattended/lake", "unattended") as (env, tape):
        subprocess.run([... "robolake", "run", "--vlm", "gemini" ...], env={**os.environ, **env})
"""

from __future__ import annotations

import threading
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

ASKED = "\n\n[user]\n"  # VLMRequest.prompt: the question is the last user turn


@dataclass
class Tape:
    """Per stage, the recorded (question, reply) pairs in the order they were asked, and how far
    the playback is."""

    recorded: dict[str, list[tuple[str, str]]]
    played: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    exact: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, stage: str, text: str) -> str | None:
        with self.lock:  # the server answers each request in a thread of its own
            k = self.played[stage]
            if k >= len(self.recorded.get(stage, [])):
                return None
            self.played[stage] += 1
            asked, reply = self.recorded[stage][k]
            self.exact += asked == text
            return reply

    def counts(self) -> dict:
        return {"played": sum(self.played.values()), "exact": self.exact,
                "recorded": sum(len(v) for v in self.recorded.values())}


def recorded_tape(lake: str, experiment: str) -> Tape:
    """The experiment's answered calls (a failed or rejected call's retry is the one kept)."""
    from consumers.curriculum.recorder import RecordedReplies
    from infra.lake_sql import open_lake
    from infra.settings import Settings

    con = open_lake(Settings.load(env={}, lake=lake))
    try:
        calls = RecordedReplies.from_lake(con, experiment).calls  # in the order they were asked
    finally:
        con.close()
    recorded: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in calls.values():
        if row["reply"] is not None and not row.get("error"):
            recorded[row["stage"]].append((row["prompt"].rsplit(ASKED, 1)[-1], row["reply"]))
    return Tape(dict(recorded))


def question(provider: str, body: dict) -> str:
    """The text of the last user turn of a request body."""
    if provider == "gemini":
        return "".join(p.get("text", "") for p in body["contents"][-1]["parts"])
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content
                                                            if p.get("type") == "text")


def stage_of(text: str) -> str | None:
    """Which stage's template a question was rendered from (its text before the first field)."""
    from consumers.curriculum.prompts import prompts

    for stage in prompts.STAGES:
        if text.startswith(prompts.template(stage).template.split("$", 1)[0]):
            return stage
    return None


@contextmanager
def serve(provider: str, lake: str, experiment: str):
    """The server running; yields the environment a `robolake run --vlm <provider>` needs, and the tape."""
    from tests.vlm_servers import GeminiServer, OpenAIServer

    tape = recorded_tape(lake, experiment)

    def answer(body: dict):
        text = question(provider, body)
        stage = stage_of(text)
        reply = tape.next(stage, text) if stage else None
        if reply is None:
            return server.error(400, f"the recording has no more replies for this question (stage {stage})")
        return server.reply(reply)

    with (GeminiServer if provider == "gemini" else OpenAIServer)(answer) as server:
        key = "GOOGLE_API_KEY" if provider == "gemini" else "OPENAI_API_KEY"
        url = server.url if provider == "gemini" else f"{server.url}/v1"
        yield {"ROBOLAKE_VLM_BASE_URL": url, key: "recorded-replies", "ROBOLAKE_VLM_TIMEOUT": "30"}, tape
