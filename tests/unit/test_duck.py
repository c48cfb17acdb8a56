import pyarrow as pa
import pyarrow.parquet as pq

from infra.duck import connect, extension_path
from infra.settings import Settings


def test_httpfs_loads_offline_and_local_parquet_queries(tmp_path):
    assert extension_path("httpfs").name == "httpfs.duckdb_extension"
    assert extension_path("ducklake").name == "ducklake.duckdb_extension"
    con = connect(Settings.load(env={}))
    loaded = con.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'").fetchone()
    assert loaded == (True,)
    assert con.execute("SELECT current_setting('autoinstall_known_extensions')").fetchone() == (False,)
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "t.parquet")
    assert con.execute(f"SELECT sum(x) FROM '{tmp_path}/t.parquet'").fetchone() == (6,)
    secret = con.execute("SELECT type FROM duckdb_secrets() WHERE name = 'robolake_s3'").fetchone()
    assert secret == ("s3",)
