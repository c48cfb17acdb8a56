"""One experiment's report, gathered from the lake once and rendered as HTML and Markdown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from robolake.report import queries
from robolake.report.learning import OVERALL


@dataclass
class Report:
    experiment: str
    lake: str
    made_at: str
    volumes: dict
    header: dict                          # the run's config, commit and version (learning.header)
    skills: dict                          # learning.per_skill: learned and expert rows apart
    introduced: dict[str, int]            # skill -> the iteration that brought it in
    learning: dict[str, dict[str, list[tuple[int, float]]]]
    conversation: list[dict]
    videos: list[dict]                    # queries.video_episodes rows, each with its video.episode_video
    provenance: dict[str, list[dict]]
    charts: dict[str, bytes]  # name -> PNG


def gather(con, experiment: str, lake: str, videos_per_skill: int = 2, asked: tuple[str, ...] = ()) -> Report:
    """Everything the report shows, read in one go (ExperimentNotFound if the lake has nothing of it,
    video.NoFrames if an `asked` episode has no frames)."""
    from robolake.report import charts, learning, video

    queries.require_experiment(con, experiment, lake)
    shown = queries.video_episodes(con, experiment, videos_per_skill, asked)
    for episode in sorted(set(asked) - {e["episode_id"] for e in shown}):
        video.episode_frames(con, episode)  # raises NoFrames saying why it is not there
    header, skills, introduced = learning.read(con, experiment)
    curves = queries.learning_curves(con, experiment)
    drawn = {"learned": charts.learned_chart(skills["learned"]), "expert": charts.expert_chart(skills["expert"]),
             "learning": charts.learning_chart(curves)}
    return Report(experiment=experiment, lake=lake,
                  made_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  volumes=queries.volumes(con, experiment), header=header, skills=skills,
                  introduced=introduced, learning=curves,
                  conversation=queries.timeline(con, experiment)["events"],
                  videos=[{**e, **video.episode_video(con, e["episode_id"])} for e in shown],
                  provenance=queries.provenance(con, experiment),
                  charts={name: png for name, png in drawn.items() if png is not None})


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def interval(low: float, high: float) -> str:
    return f"[{100 * low:.0f}, {100 * high:.0f}]%"


LEARNED = ["skill", "introduced in iteration", "iteration", "policy (checkpoint)", "successes", "rate",
           "95% interval", "latest verdict"]
EXPERT = ["skill", "introduced in iteration", "expert (version)", "successes", "rate", "95% interval"]


def learned_rows(report: Report, verdict=lambda row: f"{row['verdict']} ({row['verdict_id']})") -> list[list]:
    """The Learned policy table's cells (text; `verdict(row)` renders a verdict)."""
    return [[r["skill_id"], _or_dash(report.introduced.get(r["skill_id"])), _or_dash(r["iteration"]), r["policy"],
             f"{r['successes']}/{r['attempts']}", percent(r["rate"]), interval(r["ci_low"], r["ci_high"]),
             verdict(r) if r["verdict"] else "–"] for r in report.skills["learned"]]


def expert_rows(report: Report) -> list[list]:
    return [[r["skill_id"], _or_dash(report.introduced.get(r["skill_id"])), r["policy"],
             f"{r['successes']}/{r['attempts']}", percent(r["rate"]), interval(r["ci_low"], r["ci_high"])]
            for r in report.skills["expert"]]


def overall_line(report: Report) -> str | None:
    """The verdict on the run as a whole (skill `*`), apart from the per-skill tables."""
    v = report.skills["overall"]
    return v and f"Verdict on the run as a whole (all skills): {v['verdict']} ({v['verdict_id']}): {v['rationale']}"


def mixed_line(report: Report) -> str | None:
    n = report.skills["mixed"]
    return n and (f"{n} skill attempt{'s' if n > 1 else ''} in a checkpoint's own collections (not its evaluation; "
                  "older runs' collections also let the expert act on some skills): in neither table.")


def config_rows(report: Report) -> list[list[str]]:
    h = report.header
    return [["commit", str(h["commit"])], ["robolake version", str(h["version"])],
            *[[key, ", ".join(map(str, value)) if isinstance(value, list) else str(value)]
              for key, value in h["config"].items()]]


def code_line(report: Report) -> str:
    """The code that ran the experiment: its commit (git describe) where `robolake run` recorded it, else
    the version it recorded, else this package's."""
    from schemas.version import VERSION

    commit, version = report.header["commit"], report.header["version"]
    if commit != "unknown":
        return f"commit {commit} (robolake {version})"
    return f"robolake {VERSION if version == 'unknown' else version} (no commit recorded)"


def subject(skill_id: str) -> str:
    """What a verdict is about: a skill, or (`*`) the run as a whole."""
    return "all skills (the run as a whole)" if skill_id == OVERALL else skill_id


def _or_dash(value) -> str:
    return "–" if value is None else str(value)
