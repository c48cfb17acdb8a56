"""Streams one episode as events: `episode.started`, steps in bounded chunks, `episode.ended`.

`episode.ended` is the commit marker: it carries the number of chunks and a checksum over all
steps, so a consumer can prove an episode complete. An episode whose writer dies before `end`
never looks complete downstream.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timezone

from infra.bus.interface import MessageTooLarge, Producer
from schemas import topics
from schemas.codec import build, chunk_digest, episode_checksum
from schemas.events import EPISODE_ENDED, EPISODE_STARTED_V2, EPISODE_STEPS


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class EpisodeWriter:
    def __init__(self, producer: Producer, topic: str = topics.EPISODES, chunk_steps: int = 50):
        self.producer, self.topic, self.chunk_steps = producer, topic, chunk_steps
        self.episode_id: str | None = None

    def start(self, episode_id: str | None = None, **fields) -> str:
        """Begin an episode; `fields` are those of episode.started (time defaults to now)."""
        self.episode_id = episode_id or str(uuid.uuid4())
        self._buffer: list[dict] = []
        self._chunks = 0
        self._length = 0
        self._digests: list[str] = []
        self._task_return = 0.0
        self._skill_returns: dict[str, float] = defaultdict(float)
        self.experiment_id = fields["experiment_id"]
        row = {"episode_id": self.episode_id, "time": utc_now(), "decision_id": None, "initial_observation": None,
               **fields}
        self.producer.send(self.topic, self.episode_id, build(EPISODE_STARTED_V2, [row]))
        return self.episode_id

    def step(self, **fields) -> None:
        """Add one step; `fields` are those of episode.steps except episode_id and chunk."""
        if self.episode_id is None:
            raise RuntimeError("call start() before step()")
        fields.setdefault("frame", None)
        self._buffer.append(fields)
        self._length += 1
        self._task_return += fields["task_reward"]
        self._skill_returns[fields["skill_id"]] += fields["reward"]
        if len(self._buffer) >= self.chunk_steps:
            self._flush_steps()

    def end(self, termination: str, task_success: bool, skill_success: dict[str, bool]) -> dict:
        """Close the episode with its outcome; returns the episode.ended row."""
        self._flush_steps()
        row = {
            "episode_id": self.episode_id, "experiment_id": self.experiment_id, "length": self._length, "task_return": self._task_return,
            "task_success": task_success, "termination": termination, "num_chunks": self._chunks,
            "skills": [{"skill_id": s, "return": r, "success": bool(skill_success.get(s, False))}
                       for s, r in self._skill_returns.items()],
            "checksum": episode_checksum(self._digests), "time": utc_now(),
        }
        self.producer.send(self.topic, self.episode_id, build(EPISODE_ENDED, [row]))
        self.episode_id = None
        return row

    def _flush_steps(self) -> None:
        rows, self._buffer = self._buffer, []
        if rows:
            self._send_chunk(rows)

    def _send_chunk(self, rows: list[dict]) -> None:
        """Send rows as one chunk, halving it while it exceeds the bus's message bound."""
        batch = build(EPISODE_STEPS, [{**r, "episode_id": self.episode_id, "experiment_id": self.experiment_id,
                                      "chunk": self._chunks} for r in rows])
        try:
            self.producer.send(self.topic, self.episode_id, batch)
        except MessageTooLarge:
            if len(rows) == 1:
                raise
            half = len(rows) // 2
            self._send_chunk(rows[:half])
            self._send_chunk(rows[half:])
            return
        self._digests.append(chunk_digest(batch.table))
        self._chunks += 1
