"""The analyst: verdicts on learner runs (improving / converged / stalled / stop) from their curves,
as analysis.verdict events and PNG plots (analysis.py, verdicts.py, plots.py, vlm_reading.py)."""
