"""One experiment's report, gathered from the lake once and rendered as HTML and Markdown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from robolake.report import queries


@dataclass
class Report:
    experiment: str
    lake: str
    made_at: str
    volumes: dict
    skills: list[dict]
    success: dict[str, list[dict]]
    learning: dict[str, dict[str, list[tuple[int, float]]]]
    conversation: list[dict]
    frames: list[dict]
    provenance: dict[str, list[dict]]
    charts: dict[str, bytes]  # name -> PNG


def gather(con, experiment: str, lake: str, frame_episodes: int = 4) -> Report:
    """Everything the report shows, read in one go (ExperimentNotFound if the lake has nothing of it)."""
    from robolake.report import charts

    queries.require_experiment(con, experiment, lake)
    success = queries.success_curves(con, experiment)
    learning = queries.learning_curves(con, experiment)
    drawn = {"success": charts.success_chart(success), "learning": charts.learning_chart(learning)}
    return Report(experiment=experiment, lake=lake,
                  made_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  volumes=queries.volumes(con, experiment), skills=queries.skills_table(con, experiment),
                  success=success, learning=learning,
                  conversation=queries.timeline(con, experiment)["events"],
                  frames=queries.example_frames(con, experiment, episodes=frame_episodes),
                  provenance=queries.provenance(con, experiment),
                  charts={name: png for name, png in drawn.items() if png is not None})


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def interval(low: float, high: float) -> str:
    return f"[{100 * low:.0f}, {100 * high:.0f}]%"
