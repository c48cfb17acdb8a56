"""Expected learning progress: how much practising a skill now is likely to teach the learner.

    score = |slope| + UNCERTAINTY * c * (1 - c)

`slope` is the least-squares change in success rate per iteration over the skill's last
`ITERATIONS` iterations (one point per policy version, oldest first; 0 with a single point), and
`c` is the centre of the latest iteration's Wilson 95% interval. The slope rewards a skill the
learner is moving on (up, or down: forgetting is worth practising too); c(1 - c) is the variance
of one attempt, 0 at success 0 and 1 and largest at 0.5, and taking it at the Wilson centre keeps
a skill with few episodes (a wide interval) uncertain instead of hopeless or mastered. So a skill
at 0.4 and rising scores above one flat at 0 or at 0.95; a never-tried skill scores EXPLORE.

Pure and deterministic: the same history gives the same score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from schemas.stats import wilson

ITERATIONS = 3       # how far back the slope looks
UNCERTAINTY = 0.5    # weight of the variance term: at most 0.125, at success 0.5
# A never-tried skill is worth as much as a flat one at about 0.28 or 0.72: below the flat middle
# of the frontier (0.125), above what the floor and the ceiling score.
EXPLORE = 0.1


@dataclass(frozen=True)
class Progress:
    score: float
    iterations: int                   # points the score read (0: never tried)
    rate: float | None = None         # the latest iteration's success rate and Wilson interval
    low: float | None = None
    high: float | None = None
    slope: float = 0.0                # success per iteration

    @property
    def reason(self) -> str:
        """The score with the numbers behind it, in words."""
        if not self.iterations:
            return f"learning progress {self.score:.2f}: never tried (the exploration value)"
        trend = (f"{self.slope:+.2f} per iteration over {self.iterations} iterations" if self.iterations > 1
                 else "one iteration, no slope yet")
        return (f"learning progress {self.score:.2f}: success {self.rate:.2f} [{self.low:.2f}, {self.high:.2f}], "
                f"{trend}")

    def as_dict(self) -> dict:
        return {"score": self.score, "iterations": self.iterations, "success_rate": self.rate, "ci_low": self.low,
                "ci_high": self.high, "slope": self.slope, "reason": self.reason}


def learning_progress(history: Sequence[tuple[int, int]]) -> Progress:
    """The score of one skill from its (successes, episodes) per iteration, oldest first; iterations
    without episodes are skipped."""
    points = [(wins, n) for wins, n in history if n > 0][-ITERATIONS:]
    if not points:
        return Progress(EXPLORE, 0)
    wins, n = points[-1]
    low, high = wilson(wins, n)
    centre = (low + high) / 2
    slope = _slope([w / e for w, e in points])
    return Progress(round(abs(slope) + UNCERTAINTY * centre * (1 - centre), 6), len(points), wins / n, low, high,
                    round(slope, 6) + 0.0)  # + 0.0: no "-0.00"


def _slope(rates: list[float]) -> float:
    """Least-squares slope of the rates against 0, 1, 2, ... (0 for fewer than two)."""
    if len(rates) < 2:
        return 0.0
    xs = range(len(rates))
    mean_x, mean_y = sum(xs) / len(rates), sum(rates) / len(rates)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, rates)) / sum((x - mean_x) ** 2 for x in xs)


def histories(summaries: Iterable[dict]) -> dict[str, list[tuple[int, int]]]:
    """Per skill, (successes, episodes) of each policy version in time order (summary `time`; as
    given where a row has none), for the policy that ran the skill most: a skill's expert and its
    learner are different learners, and mixing them would make a slope of the switch."""
    rows = list(summaries)
    if all(r.get("time") is not None for r in rows):
        rows.sort(key=lambda r: r["time"])
    by_policy: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        by_policy.setdefault(row["skill_id"], {}).setdefault(row["policy_id"], []).append(row)
    return {skill: [(r["successes"], r["episodes"]) for r in max(policies.values(),
                                                                   key=lambda g: sum(r["episodes"] for r in g))]
            for skill, policies in by_policy.items()}


def scores(summaries: Iterable[dict], skills: Iterable[str]) -> dict[str, Progress]:
    """The learning progress of each of `skills` from the summaries (never tried: EXPLORE)."""
    found = histories(summaries)
    return {skill: learning_progress(found.get(skill, [])) for skill in skills}
