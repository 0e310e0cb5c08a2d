"""Migration 0003 on both engines: the unused index of issuances by public key is dropped
from new and from migrated ledgers, and the lifecycle's checks (resume, a new key on a resumed
part, a key issued to another device) work the same without it."""

from __future__ import annotations

from provserver.ledger import Ledger, ledger_spec_engine, open_ledger
from provserver.ledger.sql import SqlLedger, migration_scripts
from tests.provserver.test_ledger import issue, one, sn
from tests.provserver.test_ledger_device_type import _start


def _issuance_indexes(ledger: Ledger, engine: str) -> set[str]:
    assert isinstance(ledger, SqlLedger)
    with ledger._read() as cur:
        if engine == "sqlite":
            cur.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'issuances'"
            )
        else:
            cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'issuances'")
        return {str(row[0]) for row in cur.fetchall()}


def test_new_ledger_has_no_public_key_index(ledger_spec: str) -> None:
    engine = ledger_spec_engine(ledger_spec)
    assert [n for n, _, _ in migration_scripts(engine)][:3] == [1, 2, 3]
    with open_ledger(ledger_spec, None) as ledger:
        indexes = _issuance_indexes(ledger, engine)
    assert "issuances_key" not in indexes
    assert {"issuances_device", "issuances_run"} <= indexes


def test_schema_2_ledger_migrates_and_its_checks_still_hold(ledger_spec: str) -> None:
    engine = ledger_spec_engine(ledger_spec)
    with open_ledger(ledger_spec, None) as ledger:  # make it a schema-2 ledger with the index
        run = _start(ledger)
        first = one(ledger, issue(1, 1), run)
        assert isinstance(ledger, SqlLedger)
        with ledger._write() as cur:
            cur.execute("CREATE INDEX issuances_key ON issuances (public_key, id)")
            cur.execute("DELETE FROM ledger_migrations WHERE version >= 3")
        assert "issuances_key" in _issuance_indexes(ledger, engine)
    with open_ledger(ledger_spec, None) as migrated:
        assert migrated.schema_version >= 3
        assert "issuances_key" not in _issuance_indexes(migrated, engine)
        run = _start(migrated)
        again = one(migrated, issue(1, 1), run)  # resume: the same certificate, no new issuance
        assert again.action == "reissued" and again.issuance is not None
        assert first.issuance is not None and again.issuance.id == first.issuance.id
        reused = one(migrated, issue(2, 1), run)  # device 1's key, sent for device 2
        assert reused.action == "refused" and reused.code is not None
        assert reused.code.name == "PUBLIC_KEY_REUSED"
        new_key = one(migrated, issue(1, 3), run)  # a new key on the resumed part
        assert new_key.action == "issued" and new_key.superseded == first.issuance.id
        device = migrated.device_history(sn(1))
        assert [i.state.value for i in device.issuances] == ["superseded", "signed"]
