"""The errors of `robolake run`: a stage's failure (retried), and those the command line reports as one
line (robolake/failures.py)."""


class AlreadyRunning(RuntimeError):
    """Another `robolake run` of the experiment holds its lock."""


class ExperimentChanged(ValueError):
    """The experiment was started with other settings that make it what it is (RunConfig.identity)."""


class StageFailed(RuntimeError):
    """A stage could not finish (the model unreachable, a NaN loss, ...): recorded, then retried."""


class SinkBehind(RuntimeError):
    """On Kafka, the lake sink did not write the log into the lake in time."""
