"""What user SQL over the lake may name, and how long and how much memory it may take.

An allowlist, checked on DuckDB's own parse tree (json_serialize_sql) of every statement, however
deeply nested (subqueries, CTEs, lateral joins, set operations, DESCRIBE/SUMMARIZE of a query):

- tables: only the lake's views, unqualified, and CTEs the query defines where it uses them;
  a file name, another catalog (the lake's own catalog database included) or schema is refused;
- table functions: none. They are how SQL reads files (read_blob, read_parquet, glob, sqlite_scan),
  runs SQL given as text (query, query_table, json_execute_serialized_sql) and maintains the lake
  (checkpoint, ducklake_*): DuckDB's sandbox stops none of those that touch the data files or the
  catalog, which it must leave reachable for the lake to be read;
- functions: DuckDB's built-in scalar, aggregate and window functions and its scalar macros, as a
  bare DuckDB lists them (no extension's), less those with side effects (random and uuids stay),
  those that read configuration or session state, parse or plan SQL text, or whose macro body
  reads a table; called by name (or as system.main's).

Limits: `query_limits` interrupts a statement that runs past the timeout; the memory cap is the
connection's memory_limit (infra.lake_sql.open_lake, with no temporary directory to spill to).
Either ends the query with one line naming the setting that bounds it.
"""

from __future__ import annotations

import functools
import json
import threading
from contextlib import contextmanager


class ReadOnlyError(ValueError):
    pass


class QueryLimitError(RuntimeError):
    """A query ran past the statement timeout or the memory cap."""


_PREFIX = "the lake is read-only here: "
# Kept out although built in: they read the configuration or session state, or parse, plan
# (binding opens files) or serialize SQL text; get_block_size's body reads a table function.
_DENIED = {"current_setting", "getvariable", "json_serialize_sql", "json_deserialize_sql", "json_serialize_plan",
           "get_block_size"}
_VOLATILE_ALLOWED = {"random", "uuid", "uuidv4", "uuidv7", "gen_random_uuid"}  # sampling and ids
_BINDER_FUNCTIONS = {"unnest", "unlist", "grouping", "grouping_id"}  # the binder's own, in no function list
_SHOWS_ALLOWED = {'"tables"'}  # SHOW TABLES: our views' names


@functools.cache
def allowed_functions() -> frozenset[str]:
    """The vetted function names (see the module docstring), from a bare DuckDB of this version."""
    import duckdb

    con = duckdb.connect(config={"autoload_known_extensions": "false", "autoinstall_known_extensions": "false"})
    try:
        rows = con.execute("""
            SELECT DISTINCT function_name FROM duckdb_functions()
            WHERE function_type IN ('scalar', 'aggregate', 'macro') AND schema_name = 'main'
              AND (NOT coalesce(has_side_effects, false) OR function_name IN ?)""", [sorted(_VOLATILE_ALLOWED)]).fetchall()
    finally:
        con.close()
    return frozenset(r[0] for r in rows) - _DENIED | _BINDER_FUNCTIONS


def check_select(con, sql: str, tables) -> None:
    """Refuse one SELECT that names anything but `tables`, CTEs and vetted functions (one line,
    naming what is refused)."""
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    if tree.get("error"):  # a statement DuckDB cannot serialize cannot be checked
        raise ReadOnlyError(f"cannot check the query: {tree.get('error_message', 'it cannot be serialized')}")
    _walk(tree, frozenset(), frozenset(t.lower() for t in tables), allowed_functions())


def _walk(node, ctes: frozenset, tables: frozenset, functions: frozenset) -> None:
    if isinstance(node, list):
        for value in node:
            _walk(value, ctes, tables, functions)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("cte_map"), dict):  # visible in this node, its CTEs (recursive ones) and below
        ctes = ctes | {entry["key"].lower() for entry in node["cte_map"].get("map", [])}
    kind = node.get("type") if "class" not in node else None  # table references have no class
    if kind == "TABLE_FUNCTION":
        name = _function_name(node.get("function") or {})
        raise ReadOnlyError(f"{_PREFIX}{name}() is refused (table functions read files, run SQL or maintain "
                            "the lake; query the lake's views)")
    if kind == "BASE_TABLE":
        name = ".".join(p for p in (node.get("catalog_name"), node.get("schema_name"), node["table_name"]) if p)
        if name.lower() not in tables | ctes:
            raise ReadOnlyError(f"{_PREFIX}table {name} is refused (only the lake's views can be read: "
                                f"{', '.join(sorted(tables))})")
    if kind == "SHOW_REF" and node.get("query") is None and node.get("table_name") not in _SHOWS_ALLOWED:
        shown = str(node.get("table_name", "")).strip('"')
        raise ReadOnlyError(f"{_PREFIX}SHOW {shown} is refused (SHOW TABLES, DESCRIBE and SUMMARIZE are fine)")
    if isinstance(node.get("function_name"), str):  # a scalar, aggregate or window function
        name = _function_name(node)
        if name not in functions:
            raise ReadOnlyError(f"{_PREFIX}{name}() is refused (not a vetted scalar, aggregate or window function)")
    for value in node.values():
        _walk(value, ctes, tables, functions)


def _function_name(node: dict) -> str:
    """The name as called; qualified where it names a place other than the built-ins' (system.main,
    where the parser's own calls such as list_value for [..] point), so never on the list."""
    catalog, schema, name = node.get("catalog") or "", node.get("schema") or "", node.get("function_name", "?")
    if catalog in ("", "system") and schema in ("", "main"):
        return name
    return ".".join(p for p in (catalog, schema, name) if p)


@contextmanager
def query_limits(con, timeout_s: float, memory_limit: str):
    """Interrupt what `con` runs inside past `timeout_s`; a timeout or running out of the memory
    cap becomes one QueryLimitError line naming its setting."""
    import duckdb

    fired = threading.Event()

    def interrupt() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(timeout_s, interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    except duckdb.InterruptException:
        if not fired.is_set():
            raise  # Ctrl-C: the CLI reports it as an interruption
        raise QueryLimitError(f"query exceeded the statement timeout of {timeout_s:g} s (setting sql_timeout_s, "
                              "ROBOLAKE_SQL_TIMEOUT_S or --timeout)") from None
    except duckdb.OutOfMemoryException:
        raise QueryLimitError(f"query exceeded the memory limit of {memory_limit} (setting sql_memory_limit, "
                              "ROBOLAKE_SQL_MEMORY_LIMIT or --memory-limit)") from None
    finally:
        timer.cancel()
