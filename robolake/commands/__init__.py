"""The command line's command groups, one module each, and what they share (common.py)."""
