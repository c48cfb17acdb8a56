"""`robolake run`: the experimenter's loop, its stages and its state (a projection of the log)."""
