from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import PostgresSchema, Server, postgres_url


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "database: exercises the database layer; run again on PostgreSQL by .ci/run")
    config.addinivalue_line("markers", "conformance: the schemathesis run over every operation (make test-conformance)")


def _database(base: str | None) -> Iterator[str | None]:
    if base is None:
        yield None
        return
    schema = PostgresSchema(base)
    try:
        yield schema.url
    finally:
        schema.drop()


@pytest.fixture(scope="module")
def database_url() -> Iterator[str | None]:
    """None (the embedded SQLite default) unless MODELPORT_TEST_DATABASE_URL names a PostgreSQL server; shared by
    the tests of one module, like the `server` fixture."""
    yield from _database(postgres_url())


@pytest.fixture
def fresh_database_url() -> Iterator[str | None]:
    """A database of the test's own (SQLite in its tmp home, or a new PostgreSQL schema)."""
    yield from _database(postgres_url())


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    """Extra MODELPORT_* settings for the module's server; a test module overrides this fixture to change them."""
    return {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database_url: str | None,
           server_env: dict[str, str]) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("server") / "home"
    srv = Server(home, database_url=database_url, env=server_env).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")
