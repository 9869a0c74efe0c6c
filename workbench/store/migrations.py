"""Schema versions: what a database holds now, and the numbered steps that bring it to `SCHEMA_VERSION`.

Version 0 is an empty database; version 1 the SQLite layout before versioning (tables `runs` and `rows`,
no `schema_version`). `MIGRATIONS[n]` takes a database from version n to n + 1 inside the caller's
transaction, which holds the write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so two
processes that open an old store at once migrate it once.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlalchemy as sa

from . import schema

MIGRATION_LOCK = 0x776F726B  # PostgreSQL advisory lock id of schema changes


def current(conn: sa.Connection) -> tuple[int, str | None]:
    """(schema version, workbench version that wrote it) of the database behind `conn`."""
    tables = set(sa.inspect(conn).get_table_names())
    if "schema_version" in tables:
        row = conn.execute(sa.select(schema.schema_version)).first()
        if row is not None:
            return row.version, row.written_by
    return (1, None) if "runs" in tables else (0, None)


def lock(conn: sa.Connection) -> None:
    """Serialise schema changes between processes (SQLite's IMMEDIATE transaction already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK})


def _create(conn: sa.Connection) -> None:
    """0 -> current: the tables as schema.py defines them."""
    schema.metadata.create_all(conn)


def _v1_to_v2(conn: sa.Connection) -> None:
    """Runs get an insertion-order key (`seq`, the old rowid order), rows a `nonfinite` column; the
    `Infinity` / `NaN` tokens of old rows become the "inf" / "nan" strings; the tuning table appears."""
    conn.exec_driver_sql("DROP INDEX IF EXISTS rows_by_run")
    conn.exec_driver_sql("ALTER TABLE rows RENAME TO rows_v1")
    conn.exec_driver_sql("ALTER TABLE runs RENAME TO runs_v1")
    schema.metadata.create_all(conn)
    conn.exec_driver_sql(
        "INSERT INTO runs (run_id, kind, device, backend, torch, triton, commit_sha, dirty, timestamp, "
        "host, status, baseline) SELECT run_id, kind, device, backend, torch, triton, commit_sha, dirty, "
        "timestamp, host, status, COALESCE(baseline, 0) FROM runs_v1 ORDER BY rowid"
    )
    conn.exec_driver_sql(
        "INSERT INTO rows (id, run_id, data) SELECT id, run_id, data FROM rows_v1 ORDER BY id"
    )
    # Python's json wrote inf as Infinity and nothing else writes those tokens outside strings; parse and
    # re-encode only the rows that may hold one.
    suspects = conn.exec_driver_sql(
        "SELECT id, data FROM rows_v1 WHERE data LIKE '%Infinity%' OR data LIKE '%NaN%'"
    ).fetchall()
    for row_id, text in suspects:
        data, nonfinite = schema.encode(json.loads(text))
        if nonfinite:
            conn.execute(
                schema.rows.update().where(schema.rows.c.id == row_id), {"data": data, "nonfinite": nonfinite}
            )
    conn.exec_driver_sql("DROP TABLE rows_v1")
    conn.exec_driver_sql("DROP TABLE runs_v1")


MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {1: _v1_to_v2}


def upgrade(conn: sa.Connection, version: int, written_by: str) -> None:
    """Bring the database from `version` to schema.SCHEMA_VERSION and record it."""
    if version == 0:
        _create(conn)
    else:
        for step in range(version, schema.SCHEMA_VERSION):
            MIGRATIONS[step](conn)
    conn.execute(schema.schema_version.delete())
    conn.execute(schema.schema_version.insert(), {"version": schema.SCHEMA_VERSION, "written_by": written_by})
