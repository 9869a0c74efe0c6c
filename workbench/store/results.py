"""ResultStore: the durable, append-only store of measurement rows with their run metadata.

A run (kind "bench", "check", "model", "comm", "baseline", ...) carries its metadata (device, backend,
torch/triton versions, commit + dirty flag, timestamp, host) and rows (any JSON-able dict). Each row is
committed in its own transaction as it is produced, so a killed run loses at most the row in flight, and
any number of processes on any number of machines may write at once (SQLite: WAL and a busy timeout on
one machine; PostgreSQL: a shared server). Queries return pandas DataFrames. The tuning cache of
autotuned kernels lives here too (`get_tuning` / `put_tuning`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from . import migrations, schema
from .engine import StoreError, describe, is_url, open_engine, parse, translated

KEY = ["op", "impl", "case", "dtype"]  # what identifies a measurement across runs
_RUN_FIELDS = ["device", "backend", "torch", "triton", "commit", "dirty", "timestamp", "host"]


def _workbench_version() -> str:
    import workbench

    return workbench.__version__


class ResultStore:
    """A store at `location`: a SQLite file path (created on first use) or a postgresql:// URL.

    read_only: open for reading only (SQLite `mode=ro`, PostgreSQL read-only transactions); None: read-only
    when `location` is an existing file this user cannot write. Opening checks the schema: an older one is
    migrated in place (not when read-only), a newer one is refused.
    """

    def __init__(self, location: str | Path, read_only: bool | None = None):
        self._location = str(location)
        if read_only is None:
            path = None if is_url(location) else Path(location)
            read_only = path is not None and path.exists() and not os.access(path, os.W_OK)
        self.read_only = read_only
        self._password = parse(location).password
        self._engine, self.location = open_engine(location, read_only)
        self._open()

    @property
    def source(self) -> str:
        """The location as given, to open the same store again elsewhere (a URL keeps its password: never
        print it; `location` is the form to show)."""
        return self._location

    def __repr__(self) -> str:
        return f"ResultStore({self.location!r}{', read_only=True' if self.read_only else ''})"

    # ---- connections ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        with translated(self.location, self._password), self._engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        """One transaction that holds the write lock from its start (SQLite) and commits on exit."""
        if self.read_only:
            raise StoreError(f"store {self.location}: opened read-only")
        with (
            translated(self.location, self._password),
            self._engine.connect().execution_options(write=True) as conn,
            conn.begin(),
        ):
            yield conn

    def _open(self) -> None:
        url = parse(self._location)
        host = (url.host or "localhost") if url.get_backend_name() == "postgresql" else None
        try:
            with self._engine.connect() as conn:
                version, written_by = migrations.current(conn)
                conn.rollback()
        except sa.exc.OperationalError as e:
            reason = str(e.orig).strip().splitlines()[0] if e.orig else type(e).__name__
            if self._password:
                reason = reason.replace(self._password, "***")
            where = f"cannot connect to {host}:{url.port or 5432}" if host else "cannot open"
            raise StoreError(f"store {self.location}: {where}: {reason}") from None
        except sa.exc.SQLAlchemyError as e:
            raise StoreError(describe(e, self.location, self._password)) from None
        ours = _workbench_version()
        if version > schema.SCHEMA_VERSION:
            raise StoreError(
                f"store {self.location}: schema version {version} (written by workbench "
                f"{written_by}) is newer than this workbench {ours} reads (schema version "
                f"{schema.SCHEMA_VERSION}): upgrade workbench"
            )
        if version < schema.SCHEMA_VERSION:
            if self.read_only:
                raise StoreError(
                    f"store {self.location}: schema version {version} needs migrating to "
                    f"{schema.SCHEMA_VERSION}; open it once with write access"
                )
            with self._writing() as conn:
                migrations.lock(conn)
                version, _ = migrations.current(conn)  # another process may have migrated meanwhile
                if version < schema.SCHEMA_VERSION:
                    migrations.upgrade(conn, version, ours)

    # ---- writing ---------------------------------------------------------------------------------

    def start_run(self, kind: str, meta: dict) -> str:
        run_id = f"{meta.get('timestamp', '')}-{uuid.uuid4().hex[:8]}"
        values = {f: meta.get(f) for f in _RUN_FIELDS}
        values["commit_sha"] = values.pop("commit")
        values["dirty"] = int(bool(values["dirty"]))
        with self._writing() as conn:
            conn.execute(
                schema.runs.insert(), {**values, "run_id": run_id, "kind": kind, "status": "running"}
            )
        return run_id

    def add_row(self, run_id: str, row: dict) -> None:
        self.add_rows(run_id, [row])

    def add_rows(self, run_id: str, rows: Iterable[dict]) -> None:
        """Several rows in one transaction."""
        encoded = [schema.encode(row) for row in rows]
        if not encoded:
            return
        with self._writing() as conn:
            conn.execute(
                schema.rows.insert(),
                [{"run_id": run_id, "data": data, "nonfinite": special} for data, special in encoded],
            )

    def finish_run(self, run_id: str, status: str = "done") -> None:
        with self._writing() as conn:
            conn.execute(schema.runs.update().where(schema.runs.c.run_id == run_id), {"status": status})

    def append(self, df: pd.DataFrame | Iterable[dict], kind: str, meta: dict | None = None) -> str:
        """Store a whole table as one finished run."""
        if meta is None:
            from workbench.store.meta import run_metadata

            meta = run_metadata()
        records = df.to_dict("records") if isinstance(df, pd.DataFrame) else list(df)
        run_id = self.start_run(kind, meta)
        self.add_rows(run_id, records)
        self.finish_run(run_id)
        return run_id

    def set_baseline(self, run_id: str) -> None:
        """Mark a run as the baseline for its (kind, device); other runs of that pair lose the mark."""
        runs = schema.runs
        with self._writing() as conn:
            found = conn.execute(sa.select(runs.c.kind, runs.c.device).where(runs.c.run_id == run_id)).first()
            if found is None:
                raise StoreError(f"set_baseline: no run {run_id!r} in store {self.location}")
            conn.execute(
                runs.update().where(runs.c.kind == found.kind, runs.c.device == found.device), {"baseline": 0}
            )
            conn.execute(runs.update().where(runs.c.run_id == run_id), {"baseline": 1})

    # ---- reading ---------------------------------------------------------------------------------

    def runs(self, kind: str | None = None, device: str | None = None) -> pd.DataFrame:
        """Runs in insertion order (`seq`), optionally of one kind and device."""
        query = sa.select(schema.runs)
        if kind:
            query = query.where(schema.runs.c.kind == kind)
        if device:
            query = query.where(schema.runs.c.device == device)
        with self._reading() as conn:
            return pd.DataFrame(
                conn.execute(query.order_by(schema.runs.c.seq)).mappings().all(),
                columns=[c.name for c in schema.runs.columns],
            )

    def _rows_where(self, *conditions) -> pd.DataFrame:
        """Rows of the matching runs (oldest run first), each with its run's id, device, commit, timestamp."""
        runs, rows = schema.runs, schema.rows
        query = (
            sa.select(
                rows.c.data,
                rows.c.nonfinite,
                runs.c.run_id,
                runs.c.device,
                runs.c.commit_sha,
                runs.c.timestamp,
            )
            .join_from(rows, runs, rows.c.run_id == runs.c.run_id)
            .where(*conditions)
            .order_by(runs.c.seq, rows.c.id)
        )
        with self._reading() as conn:
            found = conn.execute(query).all()
        records = [
            {
                **schema.decode(r.data, r.nonfinite),
                "run_id": r.run_id,
                "device": r.device,
                "commit": r.commit_sha,
                "timestamp": r.timestamp,
            }
            for r in found
        ]
        return pd.DataFrame(records)

    def rows(self, run_id: str) -> pd.DataFrame:
        return self._rows_where(schema.runs.c.run_id == run_id)

    def latest(self, kind: str, device: str | None = None) -> pd.DataFrame:
        """Rows of the most recent run of `kind` (on `device`), finished or not."""
        runs = self.runs(kind, device)
        return self.rows(runs["run_id"].iloc[-1]) if len(runs) else pd.DataFrame()

    def baseline(self, kind: str, device: str) -> pd.DataFrame:
        """Rows of the run marked baseline for (kind, device); else of the oldest finished run there."""
        runs = self.runs(kind, device)
        marked = runs[runs["baseline"] == 1]
        done = runs[runs["status"] == "done"]
        chosen = marked if len(marked) else done.head(1)
        return self.rows(chosen["run_id"].iloc[-1]) if len(chosen) else pd.DataFrame()

    def history(self, kind: str, device: str | None = None, **match) -> pd.DataFrame:
        """All rows of `kind` across runs (oldest first), filtered by column == value for each `match`."""
        conditions = [schema.runs.c.kind == kind] + ([schema.runs.c.device == device] if device else [])
        df = self._rows_where(*conditions)
        for col, value in match.items():
            df = df[df[col] == value] if col in df else df.iloc[0:0]
        return df

    # ---- tuning cache ----------------------------------------------------------------------------

    @staticmethod
    def _tuning_key(
        device: str, kernel: str, source_hash: str, key: str, triton: str, workbench: str
    ) -> dict:
        return {
            "device": device,
            "kernel": kernel,
            "source_hash": source_hash,
            "key": key,
            "triton": triton,
            "workbench": workbench,
        }

    def get_tuning(
        self, device: str, kernel: str, source_hash: str, key: str, triton: str, workbench: str
    ) -> dict | None:
        """The stored config of a kernel for this exact identity, or None (another triton, workbench or
        kernel source never matches)."""
        ident = self._tuning_key(device, kernel, source_hash, key, triton, workbench)
        t = schema.tuning
        with self._reading() as conn:
            found = conn.execute(
                sa.select(t.c.config).where(*(t.c[k] == v for k, v in ident.items()))
            ).first()
        return None if found is None else found.config

    def put_tuning(
        self, device: str, kernel: str, source_hash: str, key: str, triton: str, workbench: str, config: dict
    ) -> None:
        """Insert or replace the config of one kernel identity."""
        values = {
            **self._tuning_key(device, kernel, source_hash, key, triton, workbench),
            "config": config,
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        with self._writing() as conn:
            if conn.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            stmt = insert(schema.tuning).values(**values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[c.name for c in schema.tuning.primary_key.columns],
                    set_={"config": stmt.excluded.config, "updated": stmt.excluded.updated},
                )
            )

    def clear_tuning(self, device: str | None = None) -> int:
        """Delete the tuning entries (of one device name, or all); returns how many went."""
        stmt = schema.tuning.delete()
        if device is not None:
            stmt = stmt.where(schema.tuning.c.device == device)
        with self._writing() as conn:
            return conn.execute(stmt).rowcount

    def tuning_rows(self) -> pd.DataFrame:
        with self._reading() as conn:
            return pd.DataFrame(
                conn.execute(sa.select(schema.tuning)).mappings().all(),
                columns=[c.name for c in schema.tuning.columns],
            )


def compare(
    run: pd.DataFrame, baseline: pd.DataFrame, threshold: float = 0.05, key: list[str] = KEY
) -> pd.DataFrame:
    """Join a run with its baseline; `regressed` when slower by more than `threshold` (relative) AND by
    more than the measured spread of both (p80 - p20), so noise alone does not flag."""
    cols = key + ["ms", "ms_p20", "ms_p80"]
    merged = run[cols].merge(baseline[cols], on=key, suffixes=("", "_base"))
    merged["change"] = merged["ms"] / merged["ms_base"] - 1.0
    merged["noise_ms"] = (merged["ms_p80"] - merged["ms_p20"]) + (
        merged["ms_p80_base"] - merged["ms_p20_base"]
    )
    merged["regressed"] = (merged["change"] > threshold) & (
        (merged["ms"] - merged["ms_base"]) > merged["noise_ms"]
    )
    return merged
