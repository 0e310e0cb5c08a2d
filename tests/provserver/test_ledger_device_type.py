"""The device type of an issuance (migration 0002), on both engines: recorded as the request
stated it, '' when it did not, and '' for the issuances of a ledger migrated from schema 1."""

from __future__ import annotations

from dataclasses import replace

from provserver.ledger import Ledger, ledger_spec_engine, open_ledger
from provserver.ledger.sql import SqlLedger, migration_scripts
from tests.provserver.test_ledger import issue, one, sn


def _start(ledger: Ledger) -> int:
    return ledger.start_run(
        server="test pid 1",
        data_dir="/data",
        stamp="20260101-000000",
        started_at="2026-01-01T00:00:00.000000Z",
    )


def test_device_type_recorded_per_issuance(ledger_spec: str) -> None:
    with open_ledger(ledger_spec, None) as ledger:
        run = _start(ledger)
        typed = one(ledger, replace(issue(1, 1), device_type="ATECC608B"), run)
        plain = one(ledger, issue(2, 2), run)
        assert typed.issuance is not None and typed.issuance.device_type == "ATECC608B"
        assert plain.issuance is not None and plain.issuance.device_type == ""
    with open_ledger(ledger_spec, None, read_only=True) as reader:
        [first] = reader.device_history(sn(1)).issuances
        [second] = reader.device_history(sn(2)).issuances
        assert (first.device_type, second.device_type) == ("ATECC608B", "")
        assert sorted(i.device_type for i in reader.iter_issuances()) == ["", "ATECC608B"]


def test_schema_1_ledger_migrates_with_empty_device_types(ledger_spec: str) -> None:
    engine = ledger_spec_engine(ledger_spec)
    assert [n for n, name, _ in migration_scripts(engine)][:2] == [1, 2]
    with open_ledger(ledger_spec, None) as ledger:  # make it a schema-1 ledger holding a row
        run = _start(ledger)
        one(ledger, issue(1, 1), run)
        assert isinstance(ledger, SqlLedger)
        with ledger._write() as cur:
            cur.execute("ALTER TABLE issuances DROP COLUMN device_type")
            cur.execute("DELETE FROM ledger_migrations WHERE version >= 2")
    with open_ledger(ledger_spec, None) as migrated:
        assert migrated.schema_version >= 2
        [old] = migrated.device_history(sn(1)).issuances
        assert old.device_type == ""
        new = one(migrated, replace(issue(2, 2), device_type="ATECC608A"), _start(migrated))
        assert new.issuance is not None and new.issuance.device_type == "ATECC608A"
