"""Exports: episodes of the lake written as other tools' datasets (LeRobot)."""
