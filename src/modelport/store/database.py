"""Engine and session factory, and schema migration on start (Alembic, the same scripts for SQLite and PostgreSQL)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def json_text(value: object) -> str:
    """JSON columns take numpy arrays as they are (orjson encodes numeric ones natively, in C)."""
    return orjson.dumps(value, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


def _plain(value: object) -> object:
    """What orjson cannot encode by itself: arrays of strings or objects, non-contiguous arrays, numpy scalars."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               json_serializer=json_text, json_deserializer=orjson.loads)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, json_serializer=json_text,
                         json_deserializer=orjson.loads)


class DatabaseInUse(Exception):
    """Another server already serves this SQLite database."""


def claim_sqlite(url: str) -> IO[bytes] | None:
    """Hold an exclusive lock beside a SQLite database for as long as the returned file stays open (the process's
    life: the kernel drops it even on kill -9). SQLite is the one-server default: a second server on the same file
    would run every deployment and schedule twice, so it must refuse to start. PostgreSQL (None here) is how several
    servers share one platform."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(f"{path}.lock", "ab")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DatabaseInUse(f"another modelport server already serves the SQLite database {path}; stop it first, or "
                            "run several servers on one PostgreSQL database (--database-url postgresql+psycopg://...)"
                            ) from None
    return lock


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision. Safe to run on every start, and concurrently on PostgreSQL."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Serialise concurrent starts of several API servers on one database.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7420113)")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Database:
    """The engine and a session factory; repositories receive sessions from `session()`."""

    def __init__(self, url: str) -> None:
        from modelport.store.home import private_sqlite_file

        self.url = url
        private_sqlite_file(url)
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        migrate(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back (nothing created) if it raises."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()
