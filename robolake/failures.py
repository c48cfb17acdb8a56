"""Expected failures: an exit code and one line, not a traceback. The command line reports with it, and
so does each rollout worker process it launches (given `failure` as producers.workers' describe_failure)."""

from __future__ import annotations

import sys

from robolake.commands.common import EXIT_FAILURE, EXIT_USAGE, one_line

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as `cat` and friends end when their reader goes away

# Expected failures, by (module, class): checked only once their module is loaded (so nothing heavy
# is imported here). Anything else is a bug and keeps its traceback.
USAGE_ERRORS = [("infra.settings", "SettingsError"), ("robolake.experiment.errors", "ExperimentChanged"),
                ("robolake.commands.common", "UsageError"), ("infra.sql_guard", "ReadOnlyError"),
                ("producers.sim.skills", "UnknownSkill"), ("consumers.curriculum.vlm", "VLMConfigError"),
                ("consumers.export.lerobot", "ExportError")]
FAILURES = [("infra.optional", "MissingExtra"), ("robolake.commands.common", "CommandFailed"),
            ("infra.bus.interface", "BusError"), ("infra.lake_catalog", "LakeNotFound"),
            ("infra.lake_catalog", "Fenced"), ("infra.lake_catalog", "CatalogMismatch"),
            ("infra.catalog_move", "CatalogMoveError"), ("consumers.lake_sink.sink", "LakeUnavailable"),
            ("consumers.lake_sink.replay", "ReplayError"), ("infra.process", "ServiceError"),
            ("learner.relabel", "RelabelError"), ("learner.train", "TrainingError"),
            ("learner.pac.learning", "DeviceUnavailable"), ("consumers.curriculum.vlm", "VLMError"),
            ("consumers.curriculum.recorder", "ReplayMismatch"),
            ("learner.checkpoints", "CheckpointError"), ("producers.decisions", "BadDecision"),
            ("robolake.experiment.errors", "SinkBehind"), ("robolake.experiment.errors", "AlreadyRunning"),
            ("producers.workers", "WorkersFailed"), ("duckdb", "Error"),
            ("infra.sql_guard", "QueryLimitError"), ("builtins", "OSError")]


def failure(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one-line message) for an expected failure; None for a bug (keeps its traceback)."""
    if isinstance(exc, KeyboardInterrupt) or isinstance(exc.__cause__, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"  # (DuckDB raises "Query interrupted" from Ctrl-C)
    if isinstance(exc, BrokenPipeError):
        return EXIT_BROKEN_PIPE, ""
    if _is_any(exc, USAGE_ERRORS):
        return EXIT_USAGE, f"error: {one_line(exc)}"
    if _is_any(exc, FAILURES):
        if isinstance(exc, OSError) and exc.filename and exc.strerror:
            return EXIT_FAILURE, f"{exc.filename}: {exc.strerror}"
        return EXIT_FAILURE, one_line(exc) or type(exc).__name__
    return None


def _is_any(exc: BaseException, names: list[tuple[str, str]]) -> bool:
    for module, name in names:
        loaded = sys.modules.get(module)
        cls = getattr(loaded, name, None) if loaded else None
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False
