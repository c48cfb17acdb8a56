"""Skill summaries: success per (experiment, skill, policy version), emitted as skill.summary events."""
