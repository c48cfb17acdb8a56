"""Skill summaries: success per (experiment, skill, policy version) as a projection of the lake's
episodes, emitted as `skill.summary` events (see summaries.py)."""

from consumers.summaries.summaries import current_summaries, emit_summaries

__all__ = ["current_summaries", "emit_summaries"]
