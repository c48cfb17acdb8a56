"""Judging one learning curve: improving, converged (from which step), or stalled — by a test
that accounts for noise (`judge`); and a skill's verdict by its evaluated success (`judge_success`),
the only verdict on whether a run learns.

A curve is a series of (learner step, value) points: a skill's evaluation success rate at each
evaluated checkpoint (higher is better), or a loss (lower is better; judged negated, so every rule
below reads "higher is better").

1. The window is the most recent half of the points (at least MIN_POINTS); `before` is the rest.
2. The slope is the least-squares slope over the window, per 1000 learner steps, with a 95%
   percentile interval from a seeded pairs bootstrap (BOOTSTRAP resamples of the window's points).
3. improving: the whole interval is above zero and the fitted gain across the window exceeds
   `tolerance` (a real but negligible rise is a plateau, judged by 4.).
4. converged: not improving, not getting worse (the mirror image of 3.), the
   window's spread is small (its standard deviation is at most `tolerance`, or for success rates
   at most 1.5x the binomial noise of an evaluation of that size, whichever is larger) and the
   plateau is worth having: above what came before it by more than `tolerance`, or, for success
   rates, at least GOOD. `converged_at` is the first step of the plateau: the earliest point from
   which every point, or its 3-point average, lies within the window's mean +- max(2 standard
   deviations, tolerance / 2).
5. stalled: anything else (getting worse, flat and no better than before, or too noisy to tell).

`tolerance` is TOLERANCE for success rates (10 points); for a loss, 10% of the whole curve's range or
twice the window's residual standard deviation (around its fitted line), whichever is larger.

A skill's verdict (`judge_success`) is by the successes of its evaluations, each quoted with its
Wilson 95% interval (the skill summaries' interval):
- not learning: every evaluation had 0 successes, or none after the first rose above the first's
  rate beyond its interval (no later evaluation's lower bound above it), unless that first rate was
  already GOOD;
- improving: the curve above says so, or (below MIN_POINTS evaluations) the last evaluation's
  lower bound is above the first's rate;
- converged: the curve above says so, or (below MIN_POINTS) success was GOOD from the first
  evaluation on;
- stalled: it rose at some point, but is neither rising now nor at a plateau worth having.
A loss is never a learning verdict: a falling loss with no success is a policy fitting its data
without doing the task (analysis.py quotes it as a note).

Points that are not finite (a NaN or inf loss from a diverging step) are left out, with a warning:
one of them would otherwise poison every mean and slope. Fewer than MIN_POINTS finite points are
not judged, as for any short curve.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from schemas.stats import wilson

log = logging.getLogger(__name__)

MIN_POINTS = 4
BOOTSTRAP = 1000
TOLERANCE = 0.1
GOOD = 0.8
PER = 1000  # slopes are reported per this many learner steps
NOT_LEARNING = "not learning"


@dataclass(frozen=True)
class Judgement:
    verdict: str                      # improving | converged | stalled (| not learning: judge_success)
    slope: float | None               # per PER steps, in the curve's own units (not negated); None:
    slope_low: float | None           # too few points for one
    slope_high: float | None
    converged_at: int | None
    rationale: str


def judge(steps, values, kind: str = "success", episodes=None, seed: int = 0) -> Judgement | None:
    """The verdict on one curve (None below MIN_POINTS points). kind: 'success' (a rate in [0, 1];
    `episodes` per point, for its noise) or 'loss' (lower is better)."""
    order = np.argsort(np.asarray(steps), kind="stable")
    x = np.asarray(steps, dtype=float)[order]
    y = np.asarray(values, dtype=float)[order]
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.all():
        log.warning("%s curve: %d of %d points are not finite (NaN or inf) and are left out", kind,
                    int((~finite).sum()), len(x))
        x, y = x[finite], y[finite]
        episodes = None if episodes is None else np.asarray(episodes, dtype=float)[order][finite]
    if len(x) < MIN_POINTS or np.ptp(x) == 0:
        return None
    sign = 1.0 if kind == "success" else -1.0
    better = sign * y  # higher is better from here on
    size = max(MIN_POINTS, math.ceil(len(x) / 2))
    wx, wy, before = x[-size:], better[-size:], better[:-size]
    slope, low, high = _slope_interval(wx, wy, seed)
    if kind == "success":
        n = float(np.mean(episodes)) if episodes is not None else math.inf
        p = float(np.clip(np.mean(wy), 0, 1))
        tolerance, noise = TOLERANCE, 1.5 * math.sqrt(p * (1 - p) / n)
    else:  # a loss has no natural scale: a tenth of its range, but never within its own noise
        residuals = wy - np.polyval(np.polyfit(wx, wy, 1), wx)
        tolerance, noise = max(TOLERANCE * float(np.ptp(y)), 2 * float(np.std(residuals)), 1e-12), 0.0
    mean, spread = float(np.mean(wy)), float(np.std(wy))
    gain = mean - float(np.mean(before)) if len(before) else 0.0
    what = "success" if kind == "success" else "loss"
    shown = sign * mean
    interval = f"slope {sign * slope:+.3g} per {PER} steps, 95% CI [{_lo(sign, low, high):+.3g}, {_hi(sign, low, high):+.3g}]"
    converged_at = None
    change = slope / PER * float(np.ptp(wx))  # the fitted gain across the window
    if low > 0 and change > tolerance:
        verdict, reason = "improving", f"{what} still {'rising' if sign > 0 else 'falling'}"
    elif high < 0 and -change > tolerance:
        verdict, reason = "stalled", f"{what} getting worse"
    elif spread > max(tolerance, noise):
        verdict, reason = "stalled", f"no trend, but too noisy to call a plateau (sd {spread:.3g})"
    elif gain > tolerance or (kind == "success" and mean >= GOOD):
        verdict = "converged"
        converged_at = _plateau_start(x, better, mean, max(2 * spread, tolerance / 2))
        reason = f"{what} flat at {shown:.3g} since step {converged_at}"
    else:
        verdict, reason = "stalled", f"{what} flat at {shown:.3g}, no better than before ({sign * gain:+.3g})"
    return Judgement(verdict, sign * slope, _lo(sign, low, high), _hi(sign, low, high), converged_at,
                     f"{reason}; {interval} over the last {size} of {len(x)} points")


def quote(wins: int, n: int) -> str:
    """Evaluated success with its Wilson 95% interval: '3/12 [0.09, 0.53]'."""
    low, high = wilson(wins, n)
    return f"{wins}/{n} [{low:.2f}, {high:.2f}]"


def judge_success(steps, successes, episodes, seed: int = 0) -> Judgement:
    """A skill's verdict from its evaluations (at least one): successes of episodes at each step."""
    order = np.argsort(np.asarray(steps), kind="stable")
    x = [int(steps[i]) for i in order]
    wins = [int(successes[i]) for i in order]
    n = [int(episodes[i]) for i in order]
    fit = judge(x, [w / e for w, e in zip(wins, n)], "success", n, seed)  # the slope test; None below MIN_POINTS
    first = wins[0] / n[0]
    # Rising beyond noise: an evaluation whose whole interval is above where the skill started.
    rose_at = next((s for s, w, e in zip(x[1:], wins[1:], n[1:]) if wilson(w, e)[0] > first), None)
    since = f"first evaluation {quote(wins[0], n[0])} at step {x[0]}"
    converged_at = None
    if not any(wins):
        verdict, why = NOT_LEARNING, f"0 successes in every evaluation ({len(x)} of them, {sum(n)} episodes)"
    elif fit is not None and fit.verdict in ("improving", "converged"):
        verdict, why, converged_at = fit.verdict, fit.rationale, fit.converged_at
    elif fit is None and wilson(wins[-1], n[-1])[0] > first:
        verdict, why = "improving", f"up from the {since}"
    elif rose_at is None and first < GOOD:
        verdict, why = NOT_LEARNING, f"never above the {since} beyond its interval"
    elif rose_at is None and fit is None:  # good from the start: learned before its first evaluation
        verdict, why, converged_at = "converged", f"at least {GOOD} since the {since}", x[0]
    else:
        verdict = "stalled"
        why = fit.rationale if fit is not None else f"rose above the {since} at step {rose_at}, then fell back"
    rationale = f"{verdict}: evaluated success {quote(wins[-1], n[-1])} at step {x[-1]}; {why}"
    if fit is None:
        return Judgement(verdict, None, None, None, converged_at, rationale)
    return Judgement(verdict, fit.slope, fit.slope_low, fit.slope_high, converged_at, rationale)


def _lo(sign: float, low: float, high: float) -> float:
    return low if sign > 0 else -high


def _hi(sign: float, low: float, high: float) -> float:
    return high if sign > 0 else -low


def _slope_interval(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, float, float]:
    """Least-squares slope per PER steps and its 95% pairs-bootstrap interval."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(x), size=(BOOTSTRAP, len(x)))
    bx, by = x[picks], y[picks]
    dx = bx - bx.mean(axis=1, keepdims=True)
    var = (dx * dx).sum(axis=1)
    usable = var > 0  # a resample of one repeated step has no slope
    slopes = (dx * (by - by.mean(axis=1, keepdims=True))).sum(axis=1)[usable] / var[usable]
    slope = float(np.polyfit(x, y, 1)[0])
    low, high = np.percentile(slopes, [2.5, 97.5])
    return slope * PER, float(low) * PER, float(high) * PER


def _plateau_start(x: np.ndarray, y: np.ndarray, level: float, band: float) -> int:
    """The earliest step from which every point, or its 3-point average (one noisy point is not the
    plateau's end), lies within level +- band."""
    smooth = np.convolve(y, np.ones(3), "same") / np.convolve(np.ones(len(y)), np.ones(3), "same")
    near = np.minimum(np.abs(y - level), np.abs(smooth - level)) <= band
    start = len(x) - 1
    while start > 0 and near[start - 1]:
        start -= 1
    return int(x[start])
