"""robolake from Python: `robolake.run(...)`, the experimenter's loop as `robolake run` runs it, and
`robolake.open_lake(...)`, read-only SQL over a lake as `robolake sql` runs it.

    import robolake
    result = robolake.run(experiment="exp-1", skills=["reach_red", "lift_red"], iterations=2)
    print(result.success, result.report)
    with robolake.open_lake("file://lake") as lake:
        print(lake.sql("SELECT task, count(*) AS n FROM episodes GROUP BY ALL").to_pylist())

Errors are the command line's, raised rather than printed: UsageError for a bad key or value,
CommandFailed and the library's own errors for a failure. Importing this module (and so `robolake`)
loads nothing heavy: each function imports what it needs.
"""

from __future__ import annotations

import os


def run(config: str | os.PathLike | None = None, **keys):
    """Run (or resume) an experiment to its report, as `robolake run` does, printing its progress.

    `config`: a run config file (TOML, as `robolake run --config` reads); `keys`: the same keys as
    that file, `robolake run`'s flags with underscores (experiment="exp-1", train_steps=200,
    skills=["reach_red"], lake="file://lake", ...), which win over the file's. Settings not given
    come from ROBOLAKE_* variables, as on the command line.

    Returns a robolake.commands.run.RunResult: the iterations done, why the run stopped early (or
    None), the learned policy's latest evaluated success per skill as (successes, episodes), the
    report's path, and the config as resolved and recorded with the experiment. A run that stops on
    a failure writes its report and raises CommandFailed.
    """
    from robolake.commands import run as command
    from robolake.commands import run_config
    from robolake.commands.common import load_settings

    parser = command.parser()
    flags = run_config.as_flags(run_config.read(config), parser, str(config)) if config is not None else []
    args = parser.parse_args([*flags, *run_config.as_flags(keys, parser, "robolake.run()")])
    return command.execute(args, load_settings(args))


def open_lake(lake: str | os.PathLike | None = None, **settings) -> "Lake":
    """A lake to query read-only: `lake` is file://DIR, s3://BUCKET/PREFIX or a directory (default: the
    lake setting, ROBOLAKE_LAKE or file://lake); `settings` are other settings (infra/settings.py:
    s3_endpoint, sql_timeout_s, sql_memory_limit, ...), over the ROBOLAKE_* variables.
    LakeNotFound if there is no lake there."""
    from infra.settings import Settings

    if lake is not None and "://" not in str(lake):
        lake = f"file://{os.fspath(lake)}"
    return Lake(Settings.load(lake=None if lake is None else str(lake), **settings))


class Lake:
    """A read-only connection to a lake's views (episodes, steps, frames, events, rewards, ...): the
    same guard as `robolake sql` (only SELECT over the views, time and memory bounds). Close it when
    done, or use it in a `with` block."""

    def __init__(self, settings):
        from infra.lake_sql import open_lake as connect

        self.settings = settings
        self._con = connect(settings)

    @property
    def views(self) -> list[str]:
        """What a query may read."""
        from infra.lake_sql import VIEWS

        return list(VIEWS)

    def sql(self, query: str):
        """The result of one read-only query, as a pyarrow.Table (`.to_pylist()`, `.to_pandas()`).
        ReadOnlyError for anything but a read of the views; QueryLimitError past sql_timeout_s or
        sql_memory_limit."""
        from infra.lake_sql import limits
        from infra.lake_sql import query as read

        with limits(self._con, self.settings):
            return read(self._con, query).to_arrow_table()

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "Lake":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lake({self.settings.lake_root!r})"
