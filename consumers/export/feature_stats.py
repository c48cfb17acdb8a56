"""Per-feature statistics as LeRobot keeps them (its policies normalise with them): per episode, and
over the dataset as LeRobot aggregates episodes' statistics.

Each statistic is an array: per float for a vector (n,), (1,) for a scalar, per colour channel
(3, 1, 1) for images (pixels scaled to [0, 1]). `count` is the number of frames. Quantiles are exact
per episode; over the dataset they are the frame-weighted mean of the episodes' (LeRobot's rule),
mean and std are exact.
"""

from __future__ import annotations

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


def of_values(values: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of one episode's values: (frames,) for a scalar, (frames, n) for a vector."""
    x = values.astype(np.float64).reshape(len(values), -1)
    stats = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": np.array([len(x)])}
    stats.update({name: np.quantile(x, q, axis=0) for name, q in QUANTILES.items()})
    return stats


def of_images(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of one episode's images (frames, height, width, 3) uint8, per channel."""
    x = pixels.reshape(-1, pixels.shape[-1]).astype(np.float64) / 255.0
    stats = of_values(x)
    stats["count"] = np.array([len(pixels)])
    return {k: v if k == "count" else v.reshape(-1, 1, 1) for k, v in stats.items()}


def aggregate(episodes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One feature's statistics over all episodes from each episode's."""
    counts = np.array([s["count"][0] for s in episodes], np.float64)
    weights = (counts / counts.sum()).reshape(-1, *[1] * episodes[0]["mean"].ndim)
    means = np.stack([s["mean"] for s in episodes])
    mean = (weights * means).sum(0)
    variance = (weights * (np.stack([s["std"] for s in episodes]) ** 2 + (means - mean) ** 2)).sum(0)
    out = {"min": np.min([s["min"] for s in episodes], 0), "max": np.max([s["max"] for s in episodes], 0),
           "mean": mean, "std": np.sqrt(variance), "count": np.array([int(counts.sum())])}
    out.update({name: (weights * np.stack([s[name] for s in episodes])).sum(0) for name in QUANTILES})
    return out
