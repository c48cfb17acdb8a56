"""Charts for the report as PNG bytes (matplotlib, headless): success per skill with Wilson
intervals, and the learner's curves."""

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


def success_chart(curves: dict[str, list[dict]]) -> bytes | None:
    """One panel per skill: success rate per round (time order) with its 95% interval."""
    skills = sorted(curves)[:MAX_PANELS]
    if not skills:
        return None
    plt, figure, axes = _figure(len(skills))
    for axis, skill in zip(axes, skills):
        points = curves[skill]
        x = list(range(1, len(points) + 1))
        rate = [p["rate"] for p in points]
        below = [max(0.0, p["rate"] - p["ci_low"]) for p in points]  # rounding can put the rate a hair outside
        above = [max(0.0, p["ci_high"] - p["rate"]) for p in points]
        axis.errorbar(x, rate, yerr=[below, above], marker="o", capsize=3)
        axis.set_title(skill, fontsize=10)
        axis.set_ylim(-0.05, 1.05)
        axis.set_xlabel("round (decision or policy version)", fontsize=8)
        axis.set_ylabel("success", fontsize=8)
        axis.set_xticks(x)
    return _png(plt, figure)


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
        if len(curves[name]) > 1:
            axis.legend(fontsize=7)
    return _png(plt, figure)
