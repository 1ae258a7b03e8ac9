"""The store's engines and connections: opening SQLite or PostgreSQL, migrating, and the errors.

One code path for two engines through SQLAlchemy 2 Core: SQLite (a file, WAL mode; the
embedded default) and PostgreSQL (scale-out). The batched hot statements (the receiver's
arrivals, the worker's claims and outcomes) run through the drivers themselves (`hot/`:
sqlite3 on the event loop, asyncpg on a pool connection), with SQLAlchemy's path as their
reference and, on SQLite, their fallback in the store's own thread (one hop per transaction).
The schema is versioned with Alembic and upgraded on open.

The store's errors:

    Exception
    ├── StoreUnavailable            the store did not answer (down, locked past busy_timeout,
    │                               unreachable, no pooled connection in time): the operation
    │                               did not happen. Every driver error, pool timeout, OSError
    │                               or TimeoutError becomes one (`_unavailable`), its text
    │                               naming the type only (a URL may hold a password).
    ├── LockTaken                   SQLite's write lock held by another connection, as the
    │                               hot path's `sqlite3` finds it: waited out inside the store
    │                               (`_sqlite_write`), never raised to callers.
    ├── sqlalchemy.exc.DBAPIError
    │   └── IntegrityError          a key conflict: the answer of a portable write, handled
    │                               inside (re-read, or redone one by one). It escapes only
    │                               after retries: `link` (three tries; so `record_event` and
    │                               `arrive_many` with aliases too) and `finish`/`finish_many`
    │                               (two on SQLAlchemy's path, after the driver's own try).
    └── ValueError
        └── links.LinkError         order links that cannot be recorded (parsing, before any
                                    store call)
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import asyncpg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from bridge.store.hot.sqlite import HotSqlite

MIGRATIONS = Path(__file__).with_name("migrations")
SCHEMA_HEAD = "0007"  # the newest migration's revision
R = TypeVar("R")

BUSY_TIMEOUT_MS = 5000  # SQLite: how long a writer waits for the file lock
WAL_RETRY = 0.05  # SQLite: seconds between tries to switch a new file to WAL
HOT_RETRY_FIRST, HOT_RETRY_MAX = 0.0005, 0.02  # SQLite: the hot path's waits for a taken lock
PG_COMMAND_TIMEOUT = 10.0  # PostgreSQL: seconds before a statement counts as failed
CONNECT_TIMEOUT = 5.0


# A key conflict, as SQLAlchemy and each driver raise it: the answer of a portable write.
KEY_CONFLICTS = (IntegrityError, sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)


class StoreUnavailable(Exception):  # noqa: N818 - a state, like BrokerUnavailable
    """The store did not answer (down, locked, unreachable); the operation did not happen."""


class LockTaken(Exception):  # noqa: N818 - a state, like the store's other answers
    """Another connection holds SQLite's write lock: nothing was done, try again shortly.

    Raised by the hot path's `sqlite3` connection (`hot/sqlite.py`) and answered inside the
    store (`Engines._sqlite_write` waits and tries again): it never leaves the store.
    """


def async_url(url: str) -> str:
    """A user's database URL with the async driver SQLAlchemy needs.

    `postgresql://...` -> asyncpg; `sqlite:///path` or a bare file path -> aiosqlite.
    """
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if "://" in url:
        return url  # already a SQLAlchemy URL with a driver
    return f"sqlite+aiosqlite:///{url}"


def _sqlite_connect(dbapi_connection: Any, _: object) -> None:  # noqa: ANN401 - DBAPI object
    # SQLAlchemy's recipe for pysqlite/aiosqlite: let SQLAlchemy emit BEGIN itself, so
    # transactions (and savepoints) mean what they say.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    _wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _wal(cursor: Any) -> None:  # noqa: ANN401 - a DBAPI cursor
    """Put the file in WAL mode (once per file; then it stays).

    Switching a new file to WAL answers "database is locked" at once, without the busy handler,
    while another process has it open in a transaction: two processes started together on a
    fresh store (a receiver and a worker) met that. Tried again for up to the busy timeout; an
    open at startup only ever waits here.
    """
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:  # aiosqlite raises sqlite3's own errors
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(WAL_RETRY)
        else:
            return


def _sqlite_begin(connection: sa.Connection) -> None:
    # IMMEDIATE takes the write lock at BEGIN: a transaction that reads and then writes can
    # wait for the lock (busy_timeout) instead of failing with SQLITE_BUSY halfway.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(connection: sa.Connection, revision: str = "head") -> None:
    """Run the migrations up to `revision` on `connection` (`Store.open` does, to the head)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands them back naive)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _engines(full: str) -> tuple[AsyncEngine, sa.Engine | None]:
    """The async engine for `full` (an async URL), and on SQLite the blocking one beside it."""
    if not full.startswith("sqlite"):
        engine = create_async_engine(
            full,
            pool_size=10,
            max_overflow=20,
            connect_args={
                "timeout": CONNECT_TIMEOUT,
                "command_timeout": PG_COMMAND_TIMEOUT,
                # Prepared statements planned for their parameters each time: a generic plan
                # made while a table was small (a sequential scan) was kept as it grew, until
                # an ANALYZE (never, with autovacuum off): arrivals slowed with every event.
                "server_settings": {"plan_cache_mode": "force_custom_plan"},
            },
        )
        return engine, None
    # One connection per process: SQLite has one writer at a time anyway, and queueing
    # in the pool is cheaper than connections sleeping in SQLite's busy handler.
    engine = create_async_engine(
        full,
        pool_size=1,
        max_overflow=0,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
    )
    local = sa.create_engine(
        full.replace("sqlite+aiosqlite", "sqlite+pysqlite", 1),
        pool_size=1,
        max_overflow=0,
        # Created, used and closed in the store's thread; closed by `dispose` too.
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )
    for sync_engine in (engine.sync_engine, local):
        sa.event.listen(sync_engine, "connect", _sqlite_connect)
        sa.event.listen(sync_engine, "begin", _sqlite_begin)
    return engine, local


class Engines:
    """The store's connections: reads, writes and one-hop transactions, failures translated.

    The base of `deliveries.Store`: each part of the store reaches the database through these.
    """

    def __init__(
        self, engine: AsyncEngine, local: sa.Engine | None = None, sqlite_path: str | None = None
    ) -> None:
        self._engine = engine
        # SQLite: the file, for the hot statements' own `sqlite3` connection (`hot/sqlite.py`).
        self._sqlite_path = sqlite_path
        self._closers: list[Callable[[], None]] = []  # what the parts opened beside the engines
        self._hot_sqlite: HotSqlite | None = None
        # SQLite: the same file through the blocking driver, used from one thread of our own.
        self._local = local
        self._thread = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="store") if local else None
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[Self]:
        """Connect, upgrade the schema to the newest version, and close on exit."""
        full = async_url(url)
        if full.startswith("sqlite+aiosqlite:///"):
            with _unavailable():  # the file is created on first start; its folder too
                Path(full.removeprefix("sqlite+aiosqlite:///")).parent.mkdir(
                    parents=True, exist_ok=True
                )
        engine, local = _engines(full)
        path = full.removeprefix("sqlite+aiosqlite:///") if local is not None else None
        store = cls(engine, local, path if path and not path.startswith(":memory:") else None)
        try:
            with _unavailable():
                async with engine.begin() as connection:
                    await connection.run_sync(upgrade)
            yield store
        finally:
            for close in store._closers:
                close()
            await engine.dispose()
            if local is not None:
                local.dispose()
            if store._thread is not None:
                store._thread.shutdown()

    def _sqlite_hot(self) -> HotSqlite | None:
        """The hot statements' `sqlite3` connection (opened on first use), or None.

        None off SQLite, or when the file cannot be opened so (the SQLAlchemy path reports it).
        """
        if self._sqlite_path is None:
            return None
        if self._hot_sqlite is None:
            from bridge.store.hot.sqlite import HotSqlite  # noqa: PLC0415 - it imports the store

            try:
                self._hot_sqlite = HotSqlite(self._sqlite_path)
            except sqlite3.Error:
                return None
            self._closers.append(self._hot_sqlite.close)
        return self._hot_sqlite

    async def _sqlite_write(self, body: Callable[[sqlite3.Connection], R]) -> R | None:
        """`body` through the hot `sqlite3` connection, waiting on the loop for a taken lock.

        None (take the SQLAlchemy path) off SQLite, when the lock stayed taken past the busy
        timeout (that path waits its own, then says StoreUnavailable), or when the driver raised
        anything but a key conflict (that path says what it means). A key conflict is raised.
        """
        hot = self._sqlite_hot()
        if hot is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_TIMEOUT_MS / 1000
        delay = HOT_RETRY_FIRST
        while True:
            try:
                return hot.write(body)
            except LockTaken:
                if loop.time() > deadline:
                    return None
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error:
                return None
            await asyncio.sleep(delay)  # another connection's transaction: milliseconds
            delay = min(delay * 2, HOT_RETRY_MAX)

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        with _unavailable():
            async with self._engine.begin() as connection:
                yield connection

    async def _transaction(self, body: Callable[[sa.Connection], R]) -> R:
        """`body` in one write transaction; on SQLite in the store's thread, in one hop."""
        if self._local is None:
            async with self._write() as connection:
                return await connection.run_sync(body)
        with _unavailable():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, _in_transaction, self._local, body)

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with _unavailable():
            async with self._engine.connect() as connection:
                yield connection

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A read connection whose failures are `StoreUnavailable`."""
        async with self._read() as connection:
            yield connection


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """Database trouble (not a key conflict) becomes `StoreUnavailable`, without secrets."""
    try:
        yield
    except IntegrityError:
        raise
    except (DBAPIError, PoolTimeoutError, OSError, TimeoutError) as exc:
        detail = type(getattr(exc, "orig", None) or exc).__name__
        raise StoreUnavailable(f"store unavailable ({detail})") from exc


def _in_transaction(engine: sa.Engine, body: Callable[[sa.Connection], R]) -> R:
    with engine.begin() as connection:
        return body(connection)
