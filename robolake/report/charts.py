"""Charts for the report as PNG bytes (matplotlib, headless): the learned policy's evaluated success
per skill and iteration, the expert's collection success (both with Wilson intervals), and the
learner's curves."""

from __future__ import annotations

import io

MAX_PANELS = 12  # small multiples stay readable; the tables carry every skill and metric


def _figure(panels: int):
    import matplotlib

    matplotlib.use("Agg")  # no display, whatever the environment says
    import matplotlib.pyplot as plt

    columns = min(3, panels)
    rows = -(-panels // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.8 * rows), squeeze=False)
    for extra in axes.flat[panels:]:
        extra.set_visible(False)
    return plt, figure, list(axes.flat)


def _png(plt, figure) -> bytes:
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=80)
    plt.close(figure)
    return out.getvalue()


def learned_chart(rows: list[dict]) -> bytes | None:
    """One panel per skill: the learned policy's evaluated success per iteration, Wilson 95% bars,
    one line per learner run (rows without an iteration, outside `robolake run`, are in the table only)."""
    by_skill: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        if row["iteration"] is not None:
            by_skill.setdefault(row["skill_id"], {}).setdefault(row["policy_id"], []).append(row)
    skills = sorted(by_skill)[:MAX_PANELS]
    if not skills:
        return None
    last = max(r["iteration"] for runs in by_skill.values() for points in runs.values() for r in points)
    plt, figure, axes = _figure(len(skills))
    for axis, skill in zip(axes, skills):  # every panel spans the run's iterations: a late skill starts late
        for policy, points in sorted(by_skill[skill].items()):
            _errorbar(axis, [p["iteration"] for p in points], points, policy)
        axis.set_title(skill, fontsize=10)
        axis.set_ylim(-0.05, 1.05)
        axis.set_xlabel("iteration", fontsize=8)
        axis.set_ylabel("evaluated success (learned policy)", fontsize=8)
        axis.set_xlim(0.5, last + 0.5)
        axis.set_xticks(range(1, last + 1, max(1, last // 10)))
        axis.legend(fontsize=7, loc="best")
    return _png(plt, figure)


def expert_chart(rows: list[dict]) -> bytes | None:
    """The scripted expert's collection success per skill (Wilson 95% bars), one series per expert
    version (clean, noisy): what the learner was shown, not what it learned."""
    skills = sorted({r["skill_id"] for r in rows})
    if not skills:
        return None
    plt, figure, (axis,) = _figure(1)
    figure.set_size_inches(max(4.2, 0.6 * len(skills) + 2), 3.2)
    versions = sorted({r["policy"] for r in rows})
    for k, version in enumerate(versions):
        points = [r for r in rows if r["policy"] == version]
        shift = (k - (len(versions) - 1) / 2) * 0.15  # side by side, not on top of each other
        _errorbar(axis, [skills.index(p["skill_id"]) + shift for p in points], points, version, line="none")
    axis.set_xticks(range(len(skills)))
    axis.set_xticklabels(skills, rotation=30, ha="right", fontsize=8)
    axis.set_ylim(-0.05, 1.05)
    axis.set_xlabel("skill", fontsize=8)
    axis.set_ylabel("collection success (scripted expert)", fontsize=8)
    axis.legend(fontsize=7, loc="best")
    return _png(plt, figure)


def _errorbar(axis, x: list, points: list[dict], label: str, line: str = "-") -> None:
    rate = [p["rate"] for p in points]
    below = [max(0.0, p["rate"] - p["ci_low"]) for p in points]  # rounding can put the rate a hair outside
    above = [max(0.0, p["ci_high"] - p["rate"]) for p in points]
    axis.errorbar(x, rate, yerr=[below, above], marker="o", capsize=3, linestyle=line, label=label)


def learning_chart(curves: dict[str, dict[str, list[tuple[int, float]]]]) -> bytes | None:
    """One panel per metric, one line per learner run."""
    names = list(curves)[:MAX_PANELS]
    if not names:
        return None
    plt, figure, axes = _figure(len(names))
    for axis, name in zip(axes, names):
        for run, points in curves[name].items():
            axis.plot([s for s, _ in points], [v for _, v in points], marker="." if len(points) < 30 else None,
                      label=run)
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("learner step", fontsize=8)
        axis.set_ylabel(name.split("/")[0], fontsize=8)  # per-skill metrics: the skill is in the title
        if len(curves[name]) > 1:
            axis.legend(fontsize=7)
    return _png(plt, figure)
