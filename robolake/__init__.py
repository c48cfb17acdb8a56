"""robolake: an automated RL experimenter for robot manipulation, built as an event-sourced data lake.

This package is the composition root (CLI, settings); the parts live in schemas/, infra/,
producers/, consumers/ and learner/.
"""

__version__ = "0.1.0"
