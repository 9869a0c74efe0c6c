"""ResultStore: a durable, append-only SQLite store of measurement rows with their run metadata.

A run (kind "bench", "check", "model", "comm", ...) has metadata (device, backend, torch/triton
versions, commit + dirty flag, timestamp, host) and rows (any JSON-able dict). Each row is committed in
its own transaction as it is produced, so a killed run loses at most the row in flight; WAL mode and a
busy timeout let several processes write at once. Queries return pandas DataFrames.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, device TEXT, backend TEXT, torch TEXT, triton TEXT,
    commit_sha TEXT, dirty INTEGER, timestamp TEXT, host TEXT, status TEXT NOT NULL, baseline INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL REFERENCES runs(run_id), data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rows_by_run ON rows(run_id);
CREATE TABLE IF NOT EXISTS tuning (
    device TEXT NOT NULL, kernel TEXT NOT NULL, source_hash TEXT NOT NULL, key TEXT NOT NULL,
    triton TEXT NOT NULL, workbench TEXT NOT NULL, config TEXT NOT NULL, timestamp TEXT,
    PRIMARY KEY (device, kernel, source_hash, key, triton, workbench)
);
"""
KEY = ["op", "impl", "case", "dtype"]  # what identifies a measurement across runs


def _clean(value):
    """JSON-safe scalars (NaN -> None, numpy/torch scalars -> Python)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class ResultStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived autocommit connection: each statement is its own transaction unless BEGIN is used."""
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            yield db
        finally:
            db.close()

    # ---- writing ---------------------------------------------------------------------------------

    def start_run(self, kind: str, meta: dict) -> str:
        run_id = f"{meta.get('timestamp', '')}-{uuid.uuid4().hex[:8]}"
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (run_id, kind, device, backend, torch, triton, commit_sha, dirty, timestamp, host,"
                " status) VALUES (?,?,?,?,?,?,?,?,?,?, 'running')",
                (run_id, kind, meta.get("device"), meta.get("backend"), meta.get("torch"), meta.get("triton"),
                 meta.get("commit"), int(bool(meta.get("dirty"))), meta.get("timestamp"), meta.get("host")),
            )
        return run_id

    def add_row(self, run_id: str, row: dict) -> None:
        data = json.dumps({k: _clean(v) for k, v in row.items()}, default=str)
        with self._connect() as db:
            db.execute("INSERT INTO rows (run_id, data) VALUES (?, ?)", (run_id, data))

    def finish_run(self, run_id: str, status: str = "done") -> None:
        with self._connect() as db:
            db.execute("UPDATE runs SET status=? WHERE run_id=?", (status, run_id))

    def append(self, df: pd.DataFrame | Iterable[dict], kind: str, meta: dict | None = None) -> str:
        """Store a whole table as one finished run."""
        if meta is None:
            from .meta import run_metadata

            meta = run_metadata()
        records = df.to_dict("records") if isinstance(df, pd.DataFrame) else list(df)
        run_id = self.start_run(kind, meta)
        for row in records:
            self.add_row(run_id, row)
        self.finish_run(run_id)
        return run_id

    def set_baseline(self, run_id: str) -> None:
        """Mark a run as the baseline for its (kind, device); other runs of that pair lose the mark."""
        with self._connect() as db:
            kind, device = db.execute("SELECT kind, device FROM runs WHERE run_id=?", (run_id,)).fetchone()
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE runs SET baseline=0 WHERE kind=? AND device=?", (kind, device))
            db.execute("UPDATE runs SET baseline=1 WHERE run_id=?", (run_id,))
            db.execute("COMMIT")

    # ---- tuning cache: the config each autotuned kernel chose per key (workbench.ops._tuning) -----------

    def get_tuning(self, device: str, kernel: str, source_hash: str, key: str, triton_version: str,
                   workbench_version: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT config FROM tuning WHERE device=? AND kernel=? AND source_hash=?"
                             " AND key=? AND triton=? AND workbench=?",
                             (device, kernel, source_hash, key, triton_version, workbench_version)).fetchone()
        return json.loads(row[0]) if row else None

    def put_tuning(self, device: str, kernel: str, source_hash: str, key: str, triton_version: str,
                   workbench_version: str, config: dict) -> None:
        import datetime

        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO tuning VALUES (?,?,?,?,?,?,?,?)",
                       (device, kernel, source_hash, key, triton_version, workbench_version,
                        json.dumps(config, sort_keys=True), stamp))

    def clear_tuning(self) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM tuning")

    def tuning_rows(self) -> pd.DataFrame:
        with self._connect() as db:
            return pd.read_sql_query("SELECT * FROM tuning ORDER BY device, kernel, key", db)

    # ---- reading ---------------------------------------------------------------------------------

    def runs(self, kind: str | None = None, device: str | None = None) -> pd.DataFrame:
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if kind:
            query, args = query + " AND kind=?", args + [kind]
        if device:
            query, args = query + " AND device=?", args + [device]
        with self._connect() as db:
            return pd.read_sql_query(query + " ORDER BY timestamp, rowid", db, params=args)

    def rows(self, run_id: str) -> pd.DataFrame:
        with self._connect() as db:
            data = [json.loads(d) for (d,) in db.execute("SELECT data FROM rows WHERE run_id=? ORDER BY id",
                                                          (run_id,))]
            run = db.execute("SELECT run_id, device, commit_sha, timestamp FROM runs WHERE run_id=?",
                             (run_id,)).fetchone()
        df = pd.DataFrame(data)
        if run:
            df = df.assign(run_id=run[0], device=run[1], commit=run[2], timestamp=run[3])
        return df

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
        frames = [self.rows(r) for r in self.runs(kind, device)["run_id"]]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        for col, value in match.items():
            df = df[df[col] == value] if col in df else df.iloc[0:0]
        return df


def compare(run: pd.DataFrame, baseline: pd.DataFrame, threshold: float = 0.05,
            key: list[str] = KEY) -> pd.DataFrame:
    """Join a run with its baseline; `regressed` when slower by more than `threshold` (relative) AND by
    more than the measured spread of both (p80 - p20), so noise alone does not flag."""
    cols = key + ["ms", "ms_p20", "ms_p80"]
    merged = run[cols].merge(baseline[cols], on=key, suffixes=("", "_base"))
    merged["change"] = merged["ms"] / merged["ms_base"] - 1.0
    merged["noise_ms"] = (merged["ms_p80"] - merged["ms_p20"]) + (merged["ms_p80_base"] - merged["ms_p20_base"])
    merged["regressed"] = (merged["change"] > threshold) & ((merged["ms"] - merged["ms_base"]) > merged["noise_ms"])
    return merged
