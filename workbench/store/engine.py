"""Where a store lives: a SQLite file (the default) or a PostgreSQL database, opened through SQLAlchemy.

`default_store_path()`: $WORKBENCH_STORE, else out/workbench.db. `open_engine(location, read_only)` takes
a file path, a `sqlite:///path` URL or a `postgresql://...` URL and returns an engine plus the location as
it may be shown (password masked). SQLite connections are
pooled, in WAL mode with a 60 s busy timeout; a read-only store opens the file with
`mode=ro`, so a file the user cannot write can still be read. PostgreSQL connections give up after
`CONNECT_TIMEOUT_S`. Every database error leaves as a `StoreError` of one line that names the host or
file and never the password.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

CONNECT_TIMEOUT_S = 5
BUSY_TIMEOUT_S = 60
STORE_ENV = "WORKBENCH_STORE"


class StoreError(ValueError):
    """The store cannot be opened, read or written; the message is one line, credentials masked.

    A ValueError because it describes a bad `--store` / $WORKBENCH_STORE value: the CLI prints such
    errors in one line and exits 2."""


def default_store_path() -> str:
    """$WORKBENCH_STORE (a SQLite path or a postgresql:// URL), else out/workbench.db in the repo root."""
    return os.environ.get(STORE_ENV) or str(Path(__file__).resolve().parents[2] / "out" / "workbench.db")


def is_url(location: str | Path) -> bool:
    return "://" in str(location)


def parse(location: str | Path) -> sa.engine.URL:
    """A file path or a URL -> SQLAlchemy URL (PostgreSQL through psycopg 3)."""
    if not is_url(location):
        return sa.engine.URL.create("sqlite", database=str(Path(location).expanduser().resolve()))
    try:
        url = sa.engine.make_url(str(location))
    except sa.exc.ArgumentError:
        raise StoreError(
            f"store: expected a file path, sqlite:///path or postgresql://user@host/db, got "
            f"{_mask_text(str(location))!r}"
        ) from None
    if url.get_backend_name() == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite" and url.database:
        return url.set(drivername="sqlite")
    raise StoreError(
        f"store: expected a file path, sqlite:///path or postgresql://user@host/db, got "
        f"{url.render_as_string(hide_password=True)!r}"
    )


def _mask_text(text: str) -> str:
    """user:secret@host -> user:***@host in a string that did not parse as a URL."""
    head, sep, tail = text.partition("://")
    if sep and "@" in tail:
        auth, _, rest = tail.rpartition("@")
        user = auth.split(":", 1)[0]
        return f"{head}://{user}:***@{rest}" if ":" in auth else text
    return text


def shown(url: sa.engine.URL) -> str:
    """The location as it may be printed: a file path, or the URL with its password masked."""
    if url.get_backend_name() == "sqlite":
        return url.database
    return url.set(drivername="postgresql").render_as_string(hide_password=True)


def _sqlite_engine(path: str, read_only: bool) -> sa.Engine:
    if read_only:

        def connect():
            return sqlite3.connect(
                f"file:{quote(path)}?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
    else:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"store {path}: cannot create its folder: {e.strerror}") from None

        def connect():
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            return db

    engine = sa.create_engine(
        "sqlite://",
        creator=connect,
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=8,
        json_serializer=_strict_json,
    )

    @sa.event.listens_for(engine, "begin")
    def begin(conn):
        # pysqlite leaves transactions to us (isolation_level=None). Writers take the write lock up front
        # (IMMEDIATE), so a read-then-write transaction never fails on lock upgrade; readers stay deferred.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


def _strict_json(value) -> str:
    import json

    return json.dumps(value, allow_nan=False, default=str)


def open_engine(location: str | Path, read_only: bool = False) -> tuple[sa.Engine, str]:
    """(engine, location as shown). Nothing connects yet. One engine (one connection pool) per location and
    mode in a process, however many ResultStores open it."""
    return _engine(parse(location), read_only)


@functools.lru_cache(maxsize=32)
def _engine(url: sa.engine.URL, read_only: bool) -> tuple[sa.Engine, str]:
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url.database, read_only), shown(url)
    options = "-c default_transaction_read_only=on" if read_only else None
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "workbench"}
    if options:
        connect_args["options"] = options
    try:
        engine = sa.create_engine(
            url,
            connect_args=connect_args,
            pool_pre_ping=True,
            pool_size=2,
            max_overflow=4,
            json_serializer=_strict_json,
        )
    except ImportError:
        raise StoreError(
            f"store {shown(url)}: PostgreSQL needs psycopg 3 (pip install -e '.[team]')"
        ) from None
    return engine, shown(url)


def describe(error: BaseException, url_shown: str, password: str | None = None) -> str:
    """One line for a database error: the store, the host and the driver's first line, password masked."""
    original = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    text = lines[0] if lines else type(original).__name__
    if password:
        text = text.replace(password, "***")
    return f"store {url_shown}: {text}"


@contextlib.contextmanager
def translated(url_shown: str, password: str | None = None) -> Iterator[None]:
    """Turn SQLAlchemy / driver errors into one-line StoreErrors."""
    try:
        yield
    except sa.exc.SQLAlchemyError as e:
        raise StoreError(describe(e, url_shown, password)) from None
    except sqlite3.Error as e:
        raise StoreError(describe(e, url_shown, password)) from None
