"""Learning curves as PNG: what a person (or the VLM) looks at beside the statistical verdict."""

from __future__ import annotations

from pathlib import Path

from consumers.analysis.analysis import ALL, Curve
from consumers.analysis.verdicts import MIN_POINTS, PER


def plot_curve(curve: Curve, path: Path) -> Path:
    """The curve's points, the judged window with its fitted slope, the plateau's start; the
    verdict in the title (a loss has none: it is a diagnostic). Written atomically (a reader never sees half a PNG)."""
    import math

    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import numpy as np
    from matplotlib.figure import Figure

    steps, values = np.asarray(curve.steps, float), np.asarray(curve.values, float)
    figure = Figure(figsize=(6, 3.6), dpi=100)
    axes = figure.subplots()
    axes.plot(steps, values, "o-", markersize=3, linewidth=1, label=curve.metric)
    j = curve.judgement
    if j is not None and j.slope is not None:  # too few evaluations have no fitted slope
        size = max(MIN_POINTS, math.ceil(len(steps) / 2))
        window = steps[-size:]
        axes.axvspan(window[0], window[-1], color="0.9", label="window judged")
        centre = values[-size:].mean() - j.slope / PER * (window.mean() - window)
        axes.plot(window, centre, "-", color="tab:red", label=f"slope {j.slope:+.3g}/{PER} steps")
    if j is not None and j.converged_at is not None:
        axes.axvline(j.converged_at, color="tab:green", linestyle="--", label=f"plateau from {j.converged_at}")
    axes.set_xlabel("learner step")
    axes.set_ylabel(curve.metric)
    if curve.kind == "success":
        axes.set_ylim(-0.05, 1.05)
    verdict = j.verdict if j is not None else "a diagnostic, not a verdict" if curve.kind == "loss" else "not judged"
    subject = "all skills" if curve.skill_id == ALL else curve.skill_id
    axes.set_title(f"{curve.experiment_id} / {curve.run_id} · {subject}: {verdict}", fontsize=10)
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    figure.savefig(partial, format="png")
    partial.replace(path)
    return path
