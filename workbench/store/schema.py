"""The store's tables (one definition for SQLite and PostgreSQL) and how a row's values are encoded.

- `runs`: one per run (kind "bench", "check", "baseline", "model", "comm", "sweep", ...), tagged with the
  device name, backend, torch/triton versions, commit + dirty flag, host, timestamp and status; `seq`
  orders runs by insertion on every engine; `baseline` marks the run chosen for its (kind, device).
- `rows`: the measurements of a run, one JSON object each (`data`).
- `tuning`: the chosen config of an autotuned kernel per (device, kernel, source hash, tuning key, triton
  version, workbench version).
- `schema_version`: one row, the schema version and the workbench version that wrote it.

Non-finite numbers: strict JSON has no inf or NaN, and SQLite's json_extract rejects the `Infinity`
token Python would write. A non-finite float is stored as the string "inf", "-inf" or "nan", and the
row's `nonfinite` column lists those fields, so reading back is exact (a genuine string "nan" stays a
string) and SQL sees them as text: `json_extract(data, '$.ms') = 'inf'` in SQLite, `data->>'ms'` in
PostgreSQL (whose float8 cast reads 'inf' and 'nan').
"""

from __future__ import annotations

import math

import sqlalchemy as sa

SCHEMA_VERSION = 2  # 1: the SQLite-only layout before versioning (runs, rows; inf written as Infinity)

metadata = sa.MetaData()

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("seq", _BIGINT, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(80), nullable=False, unique=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("device", sa.Text),
    sa.Column("backend", sa.String(20)),
    sa.Column("torch", sa.String(60)),
    sa.Column("triton", sa.String(60)),
    sa.Column("commit_sha", sa.String(64)),
    sa.Column("dirty", sa.Integer),
    sa.Column("timestamp", sa.String(40)),
    sa.Column("host", sa.Text),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("baseline", sa.Integer, nullable=False, server_default="0"),
    sa.Index("runs_by_kind_device", "kind", "device"),
)

rows = sa.Table(
    "rows",
    metadata,
    sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(80), sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("nonfinite", sa.JSON),  # names of the fields of `data` that hold "inf", "-inf" or "nan"
    sa.Index("rows_by_run", "run_id"),
)

tuning = sa.Table(
    "tuning",
    metadata,
    sa.Column("device", sa.Text, primary_key=True),
    sa.Column("kernel", sa.Text, primary_key=True),
    sa.Column("source_hash", sa.String(64), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("triton", sa.String(60), primary_key=True),
    sa.Column("workbench", sa.String(60), primary_key=True),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("updated", sa.String(40), nullable=False),
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("written_by", sa.String(60), nullable=False),  # the workbench version that wrote it
)

_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _scalar(value):
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else value


def encode(row: dict) -> tuple[dict, list[str] | None]:
    """(JSON-safe data, names of its non-finite fields or None)."""
    data, special = {}, []
    for key, value in row.items():
        value = _scalar(value)
        if isinstance(value, float) and not math.isfinite(value):
            data[key] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
            special.append(key)
        else:
            data[key] = value
    return data, special or None


def decode(data: dict, nonfinite: list[str] | None) -> dict:
    """The inverse of `encode`."""
    for key in nonfinite or ():
        data[key] = _NONFINITE[data[key]]
    return data
