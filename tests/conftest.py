"""Fixtures shared across the test folders (their building blocks live in tests/support)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pki import Pki, make_pki
from tests.support.postgres import PostgresServer, postgres_or_skip, running_postgres
from tests.support.postgres import missing as postgres_missing


@pytest.fixture(scope="module")
def pki() -> Pki:
    """The test PKI: root CA, signer, standard cert defs and the cert info (new keys)."""
    return make_pki()


@pytest.fixture(scope="session", autouse=True)
def per_user_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Per-user data folders (the client's station log, the server's default data folder) go to
    a temporary folder, also for the programs the tests start, never to the tester's home."""
    saved = {name: os.environ.get(name) for name in ("XDG_DATA_HOME", "LOCALAPPDATA")}
    base = tmp_path_factory.mktemp("user-data")
    os.environ["XDG_DATA_HOME"] = str(base)
    os.environ["LOCALAPPDATA"] = str(base)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | str]:
    """A PostgreSQL server for the whole session, or the reason there is none (tests skip)."""
    reason = postgres_missing()
    if reason is not None:
        yield reason
        return
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_spec(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer | str
) -> str:
    """A fresh, empty ledger of each engine, as a --ledger value."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'ledger.sqlite3'}"
    return postgres_or_skip(postgres_server).new_database()
