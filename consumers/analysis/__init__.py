"""The analyst: verdicts on learner runs from their curves, as analysis.verdict events and PNG plots."""
