"""A recorded model behind a provider's real protocol: a local Gemini or OpenAI-compatible server
(tests/vlm_servers.py) that answers each question with the reply a recorded experiment got for
the same question (its `vlm.call` events), in the order they were asked. A question the recording
never asked gets HTTP 400 saying so: the client raises, the run retries and stops, and nothing is
made up.

    with serve("gemini", "file:///tmp/unattended/lake", "unattended") as env:
        subprocess.run([... "robolake", "run", "--vlm", "gemini" ...], env={**os.environ, **env})
"""

from __future__ import annotations

import json
from collections import defaultdict
from contextlib import contextmanager

ASKED = "\n\n[user]\n"  # VLMRequest.prompt: the question is the last user turn


def recorded_replies(lake: str, experiment: str) -> dict[str, list[str]]:
    """Question text -> the replies recorded for it, in the order they were asked."""
    from consumers.curriculum.recorder import RecordedReplies
    from infra.lake_sql import open_lake
    from infra.settings import Settings

    con = open_lake(Settings.load(env={}, lake=lake))
    try:
        recorded = RecordedReplies.from_lake(con, experiment)
    finally:
        con.close()
    replies: dict[str, list[str]] = defaultdict(list)
    for _, row in sorted(recorded.calls.items(), key=lambda item: item[0][1]):
        if row["reply"] is not None and not row.get("error"):
            replies[row["prompt"].rsplit(ASKED, 1)[-1]].append(row["reply"])
    return replies


def question(provider: str, body: dict) -> str:
    """The text of the last user turn of a request body."""
    if provider == "gemini":
        parts = body["contents"][-1]["parts"]
        return "".join(p.get("text", "") for p in parts)
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content
                                                            if p.get("type") == "text")


@contextmanager
def serve(provider: str, lake: str, experiment: str):
    """The server running; yields the environment a `robolake run --vlm <provider>` needs."""
    from tests.vlm_servers import GeminiServer, OpenAIServer

    replies = recorded_replies(lake, experiment)
    asked: dict[str, int] = defaultdict(int)
    server_class = GeminiServer if provider == "gemini" else OpenAIServer

    def answer(body: dict):
        text = question(provider, body)
        n = asked[text]
        asked[text] += 1
        known = replies.get(text, [])
        if n < len(known):
            return server.reply(known[n])
        return server.error(400, f"no recorded reply for this question (asked {n + 1} times, recorded "
                                 f"{len(known)}): {json.dumps(text[:200])}")

    with server_class(answer) as server:
        key = "GOOGLE_API_KEY" if provider == "gemini" else "OPENAI_API_KEY"
        url = server.url if provider == "gemini" else f"{server.url}/v1"
        yield {"ROBOLAKE_VLM_BASE_URL": url, key: "recorded-replies", "ROBOLAKE_VLM_TIMEOUT": "30"}
