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


# Files that take minutes go first: with one file per worker at a time (`-n 2 --dist loadfile`), the longest then runs
# beside the others instead of alone at the end (the conformance run is about 4 of the suite's 10 minutes).
LONGEST_FIRST = ("tests/test_openapi_conformance.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: 0 if item.nodeid.startswith(LONGEST_FIRST) else 1)  # stable: the rest keep order
