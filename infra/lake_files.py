"""The lake's data files at rest: which one a failed read tripped on.

DuckLake's error on a damaged Parquet file ("footer length ... not equal", a page that does not
decompress) names no file. `damaged_file` finds it: every data file the catalog lists is checked
against what the catalog recorded (its size), then read whole; the first that fails is
returned with the reason. Only on the error path: it reads every file.
"""

from __future__ import annotations

from infra.duck import sql_str
from schemas import lake

# Words of DuckDB errors that come from a data file's bytes rather than from the query.
_FILE_ERRORS = ("parquet", "footer", "magic", "corrupt", "decompress", "zstd", "snappy", "thrift",
                "out of bounds", "unexpected end", "no such file", "cannot open file")


def looks_like_file_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in _FILE_ERRORS)


def data_files(con, tables=lake.TABLES) -> list[tuple[str, str, int]]:
    """(table, file, size in bytes) of every data file of the lake's current snapshot."""
    out = []
    for table in tables:
        try:
            rows = con.execute(f"SELECT data_file, data_file_size_bytes "
                               f"FROM ducklake_list_files('lake', {sql_str(table)})").fetchall()
        except Exception:  # a lake older than the table
            continue
        out += [(table, *row) for row in rows]
    return out


def damaged_file(con, tables=lake.TABLES) -> tuple[str, str] | None:
    """(file, why) of the first data file that is not as the catalog recorded it or does not decode."""
    files = data_files(con, tables)
    for _, path, size in files:  # cheap first: the catalog's record of each file
        why = _mismatch(con, path, size)
        if why:
            return path, why
    for _, path, _ in files:
        try:
            con.execute(f"SELECT * FROM read_parquet({sql_str(path)})").to_arrow_table()
        except Exception as exc:
            return path, " ".join(str(exc).split())
    return None


def _mismatch(con, path: str, size: int | None) -> str | None:
    try:
        found = con.execute("SELECT size FROM read_blob(?)", [path]).fetchone()
    except Exception as exc:
        return f"cannot be read ({' '.join(str(exc).split())[:160]})"
    if found is None:
        return "is missing"
    if size is not None and found[0] != size:
        return f"has {found[0]} bytes, the catalog recorded {size}"
    return None
