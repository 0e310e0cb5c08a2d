"""The ledger engines (SQLite and PostgreSQL): migrations, lifecycle rules, queries, concurrency.

Every test runs on both engines (``ledger_spec``: a fresh SQLite file or a fresh database of the
session's PostgreSQL server; skipped with the reason where PostgreSQL cannot be run).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest

from atcaprov.return_codes import ReturnCode
from provserver.ledger import (
    EventKind,
    IssuanceState,
    IssueOp,
    IssueResult,
    Ledger,
    LedgerSchemaError,
    LedgerUnavailableError,
    RecordFilter,
    RefusalOp,
    ReportOp,
    ReportResult,
    ledger_spec_engine,
    open_ledger,
)
from provserver.ledger.lifecycle import Brief, Snapshot, decide
from provserver.ledger.sql import migration_scripts, split_statements

ISSUER = "AA" * 20
OTHER_ISSUER = "BB" * 20
SIGNER_CERT = b"\x30\x03SGN"
ROOT_CERT = b"\x30\x03ROT"


def sn(n: int) -> str:
    return f"0123{n:08X}EE"[:18].ljust(18, "0")


def key(n: int) -> str:
    return f"{n:0128X}"


def issue(
    n: int,
    k: int,
    *,
    cert_sn: str | None = None,
    issuer: str = ISSUER,
    time: str = "2026-01-01T00:00:00.000000Z",
    station: str = "127.0.0.1:1 line-1",
) -> IssueOp:
    return IssueOp(
        time=time, station=station, device_sn=sn(n), public_key=key(k), issuer_key_id=issuer,
        signer_id="C48B", signer=f"Example Signer (01230000000000AAEE, sim:{issuer[:4]})",
        cert_sn=cert_sn or f"{n:04X}{k:04X}",
        device_cert=b"\x30\x06" + n.to_bytes(3, "big") + k.to_bytes(3, "big"),
        signer_cert=SIGNER_CERT, root_cert=ROOT_CERT,
    )  # fmt: skip


def report(
    n: int,
    k: int,
    outcome: Literal[EventKind.INSTALLED, EventKind.FAILED, EventKind.ABANDONED] = (
        EventKind.INSTALLED
    ),
) -> ReportOp:
    return ReportOp(
        time="2026-01-01T00:01:00.000000Z", station="127.0.0.1:1 line-1", device_sn=sn(n),
        public_key=key(k), outcome=outcome, stage="VALIDATE_CERTS", part_state="PROVISIONED",
        code="" if outcome is EventKind.INSTALLED else "VALIDATION_FAILED", message="",
    )  # fmt: skip


@pytest.fixture
def ledger(ledger_spec: str) -> Iterator[Ledger]:
    with open_ledger(ledger_spec, None) as opened:
        yield opened


@pytest.fixture
def run(ledger: Ledger) -> int:
    return ledger.start_run(
        server="test pid 1",
        data_dir="/data",
        stamp="20260101-000000",
        started_at="2026-01-01T00:00:00.000000Z",
    )


def one(ledger: Ledger, op: IssueOp | ReportOp, run_id: int, **kw: bool) -> IssueResult:
    (result,) = ledger.commit([op], run_id=run_id, **kw)
    assert isinstance(result, IssueResult)
    return result


# ------------------------------------------------------------------ opening and migrations
def test_migrations_apply_once_and_record_their_version(ledger_spec: str) -> None:
    scripts = migration_scripts(ledger_spec_engine(ledger_spec))
    assert [v for v, _, _ in scripts] == list(range(1, len(scripts) + 1))
    with open_ledger(ledger_spec, None) as first:
        ledger_id = first.ledger_id
        assert first.schema_version == len(scripts) and len(ledger_id) == 32
    with open_ledger(ledger_spec, None) as again:  # nothing applied twice
        assert again.ledger_id == ledger_id and again.schema_version == len(scripts)
    with open_ledger(ledger_spec, None, read_only=True) as reader:
        assert reader.ledger_id == ledger_id


def test_a_newer_schema_is_refused(ledger_spec: str) -> None:
    from provserver.ledger.sql import SqlLedger

    with open_ledger(ledger_spec, None) as ledger:
        assert isinstance(ledger, SqlLedger)
        with ledger._write() as cur:
            cur.execute(
                ledger.q("INSERT INTO ledger_migrations VALUES (?, ?, ?)"),
                (99, "future", "2030-01-01T00:00:00.000000Z"),
            )
    for read_only in (False, True):
        with pytest.raises(LedgerSchemaError, match="newer than this program"):
            open_ledger(ledger_spec, None, read_only=read_only).open()


def test_read_only_needs_an_existing_ledger(tmp_path: Path) -> None:
    with pytest.raises(LedgerUnavailableError, match="no such file"):
        open_ledger(None, tmp_path, read_only=True).open()


def test_engine_by_name_and_url(tmp_path: Path) -> None:
    assert ledger_spec_engine(None) == ledger_spec_engine("sqlite") == "sqlite"
    assert ledger_spec_engine("postgres://h/db") == "postgresql"
    assert open_ledger(None, tmp_path).description.endswith(str(tmp_path / "ledger.sqlite3"))
    assert open_ledger("sqlite:///x/y.db", None).description == "SQLite ledger /x/y.db"
    with pytest.raises(LedgerUnavailableError, match="unknown ledger engine 'mysql'"):
        open_ledger("mysql://h/db", None)


def test_split_statements() -> None:
    assert split_statements("-- c\nCREATE TABLE a (x INT); -- t\nCREATE INDEX i ON a (x);\n") == [
        "CREATE TABLE a (x INT)",
        "CREATE INDEX i ON a (x)",
    ]


# ------------------------------------------------------------------ lifecycle rules (pure)
def test_decide_rules() -> None:
    signed = Brief(1, key(1), ISSUER, IssuanceState.SIGNED)
    installed = Brief(1, key(1), ISSUER, IssuanceState.INSTALLED)
    d = decide(sn(1), key(1), ISSUER, Snapshot(sn(2), None, None), allow_reprovision=False)
    assert d.code is ReturnCode.PUBLIC_KEY_REUSED
    d = decide(sn(1), key(1), ISSUER, Snapshot(sn(1), signed, signed), allow_reprovision=False)
    assert (d.action, d.reissue_id, d.supersede_id) == ("reissue", 1, None)
    d = decide(sn(1), key(2), ISSUER, Snapshot(None, signed, None), allow_reprovision=False)
    assert (d.action, d.supersede_id) == ("issue", 1)
    d = decide(sn(1), key(2), ISSUER, Snapshot(None, installed, None), allow_reprovision=False)
    assert d.code is ReturnCode.DEVICE_ALREADY_PROVISIONED and "another public key" in d.message
    d = decide(sn(1), key(2), ISSUER, Snapshot(None, installed, None), allow_reprovision=True)
    assert (d.action, d.supersede_id) == ("issue", 1)
    d = decide(
        sn(1), key(1), OTHER_ISSUER, Snapshot(sn(1), installed, None), allow_reprovision=False
    )
    assert d.code is ReturnCode.DEVICE_ALREADY_PROVISIONED and "another signer" in d.message
    d = decide(
        sn(1), key(1), ISSUER, Snapshot(sn(1), installed, installed), allow_reprovision=False
    )
    assert (d.action, d.reissue_id) == ("reissue", 1)


# ------------------------------------------------------------------ lifecycle in the ledger
def test_resume_gives_the_same_certificate_and_one_issuance(ledger: Ledger, run: int) -> None:
    first = one(ledger, issue(1, 1), run)
    again = one(ledger, issue(1, 1, cert_sn="FFFF"), run)  # a new signature: thrown away
    assert first.action == "issued" and again.action == "reissued"
    assert first.issuance is not None and again.issuance is not None
    assert again.issuance.id == first.issuance.id
    assert (again.issuance.device_cert, again.issuance.signer_cert, again.issuance.root_cert) == (
        first.issuance.device_cert,
        SIGNER_CERT,
        ROOT_CERT,
    )
    history = ledger.device_history(sn(1))
    assert len(history.issuances) == 1
    assert [e.kind for e in history.events] == [EventKind.SIGNED, EventKind.REISSUED]
    assert history.device is not None and history.device.state is IssuanceState.SIGNED


def test_new_key_on_a_resumed_part_supersedes(ledger: Ledger, run: int) -> None:
    first = one(ledger, issue(1, 1), run)
    second = one(ledger, issue(1, 2), run)
    assert second.action == "issued" and first.issuance is not None
    assert second.superseded == first.issuance.id
    history = ledger.device_history(sn(1))
    assert [i.state for i in history.issuances] == [IssuanceState.SUPERSEDED, IssuanceState.SIGNED]
    assert history.device is not None and history.device.current_issuance == history.issuances[1].id
    assert [e.kind for e in history.events] == [
        EventKind.SIGNED,
        EventKind.SUPERSEDED,
        EventKind.SIGNED,
    ]


def test_installed_device_refuses_another_key_unless_allowed(ledger: Ledger, run: int) -> None:
    one(ledger, issue(1, 1), run)
    (done,) = ledger.commit([report(1, 1)], run_id=run)
    assert isinstance(done, ReportResult) and done.state is IssuanceState.INSTALLED
    refused = one(ledger, issue(1, 2), run)
    assert refused.action == "refused"
    assert refused.code is ReturnCode.DEVICE_ALREADY_PROVISIONED
    same = one(ledger, issue(1, 1, cert_sn="FFFF"), run)  # the installed key: harmless again
    assert same.action == "reissued"
    allowed = one(ledger, issue(1, 2), run, allow_reprovision=True)
    assert allowed.action == "issued"
    history = ledger.device_history(sn(1))
    assert [i.state for i in history.issuances] == [IssuanceState.SUPERSEDED, IssuanceState.SIGNED]
    refusals = [e for e in history.events if e.kind is EventKind.REFUSED]
    assert [e.code for e in refusals] == ["DEVICE_ALREADY_PROVISIONED"]
    assert refusals[0].tsv_record().reason.startswith("ATCAPROV_E_DEVICE_ALREADY_PROVISIONED: ")


def test_a_key_belongs_to_one_device(ledger: Ledger, run: int) -> None:
    one(ledger, issue(1, 1), run)
    refused = one(ledger, issue(2, 1), run)
    assert refused.code is ReturnCode.PUBLIC_KEY_REUSED and sn(1) in refused.message
    assert ledger.device_history(sn(2)).issuances == []
    assert [e.kind for e in ledger.device_history(sn(2)).events] == [EventKind.REFUSED]


def test_a_certificate_serial_number_is_never_used_twice(ledger: Ledger, run: int) -> None:
    one(ledger, issue(1, 1, cert_sn="0A0B0C"), run)
    clash = one(ledger, issue(2, 2, cert_sn="0A0B0C"), run)
    assert clash.code is ReturnCode.CERT_SERIAL_IN_USE
    other_signer = one(ledger, issue(3, 3, cert_sn="0A0B0C", issuer=OTHER_ISSUER), run)
    assert other_signer.action == "issued"  # unique per issuer
    assert sum(1 for _ in ledger.iter_issuances()) == 2


def test_the_serial_number_constraint_is_the_backstop(
    ledger: Ledger, run: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the snapshot miss a serial number in use, the unique constraint refuses it: the
    batch is run again op by op under savepoints (SQLite's commits run without them), and
    nothing of the refused op is kept, nothing of the others is doubled."""
    one(ledger, issue(1, 1, cert_sn="0A0B0C"), run)
    snapshot = ledger._snapshot  # type: ignore[attr-defined]
    monkeypatch.setattr(
        ledger, "_snapshot", lambda cur, op: replace(snapshot(cur, op), serial_clash=None)
    )
    results = ledger.commit([issue(2, 2), issue(3, 3, cert_sn="0A0B0C"), issue(4, 4)], run_id=run)
    assert [r.action for r in results if isinstance(r, IssueResult)] == [
        "issued",
        "refused",
        "issued",
    ]
    assert results[1].code is ReturnCode.CERT_SERIAL_IN_USE  # type: ignore[union-attr]
    assert ledger.device_history(sn(3)).device is None
    assert [e.kind for e in ledger.device_history(sn(3)).events] == [EventKind.REFUSED]
    assert [i.device_sn for i in ledger.iter_issuances()] == [sn(1), sn(2), sn(4)]


def test_reports(ledger: Ledger, run: int) -> None:
    one(ledger, issue(1, 1), run)
    one(ledger, issue(2, 2), run)
    results = ledger.commit(
        [report(1, 1, EventKind.FAILED), report(2, 2, EventKind.ABANDONED), report(3, 3)],
        run_id=run,
    )
    assert [r.state for r in results if isinstance(r, ReportResult)] == [
        IssuanceState.FAILED,
        IssuanceState.ABANDONED,
        None,
    ]
    # a failed part resumed with the same key gets its certificate again, signed once more
    again = one(ledger, issue(1, 1), run)
    assert again.action == "reissued" and again.issuance is not None
    assert again.issuance.state is IssuanceState.SIGNED
    unknown = ledger.device_history(sn(3))
    assert unknown.device is None and [e.kind for e in unknown.events] == [EventKind.INSTALLED]


def test_a_batch_sees_its_own_earlier_operations(ledger: Ledger, run: int) -> None:
    results = ledger.commit([issue(1, 1), issue(1, 1, cert_sn="FFFF"), issue(2, 1)], run_id=run)
    assert [r.action for r in results if isinstance(r, IssueResult)] == [
        "issued",
        "reissued",
        "refused",
    ]


def test_refusals_are_events(ledger: Ledger, run: int) -> None:
    op = RefusalOp(
        time="2026-01-01T00:00:00.000000Z",
        station="s",
        device_sn=sn(9),
        public_key="",
        signer="C48B/AA",
        code=ReturnCode.SIGNER_LOCKED,
        message="signer waits for its password",
    )
    (result,) = ledger.commit([op], run_id=run)
    assert isinstance(result, IssueResult) and result.action == "refused"
    assert result.event is not None
    row = result.event.tsv_record()
    assert (row.result, row.reason) == (
        "refused",
        "ATCAPROV_E_SIGNER_LOCKED: signer waits for its password",
    )


# ------------------------------------------------------------------ queries
def test_streaming_queries_with_filters(ledger: Ledger, run: int) -> None:
    ops = [
        issue(
            n,
            n,
            time=f"2026-01-0{1 + n % 3}T00:00:00.000000Z",
            station=f"10.0.0.{n}:5 line-{n % 2}",
            issuer=ISSUER if n < 6 else OTHER_ISSUER,
        )
        for n in range(1, 9)
    ]
    ledger.commit(ops, run_id=run)
    ledger.commit([report(2, 2), report(4, 4)], run_id=run)
    every = list(ledger.iter_issuances(page_size=3))  # several pages
    assert [i.device_sn for i in every] == [sn(n) for n in range(1, 9)]
    assert list(ledger.iter_issuances(after_id=every[4].id, page_size=2)) == every[5:]

    def by(**kw: Any) -> list[str]:
        return [i.device_sn for i in ledger.iter_issuances(RecordFilter(**kw))]

    assert by(state=IssuanceState.INSTALLED) == [sn(2), sn(4)]
    assert by(since="2026-01-02T00:00:00Z", until="2026-01-03") == [sn(n) for n in (1, 4, 7)]
    assert by(signer=OTHER_ISSUER.lower()) == [sn(6), sn(7), sn(8)]
    assert by(signer="c48b") == [sn(n) for n in range(1, 9)]
    assert by(signer="sim:bbbb") == [sn(6), sn(7), sn(8)]
    assert by(station="LINE-1") == [sn(n) for n in (1, 3, 5, 7)]
    assert by(station="%") == []  # LIKE wildcards are plain characters
    assert by(device_sn=sn(3).lower()) == [sn(3)]
    kinds = RecordFilter(kinds=(EventKind.INSTALLED,))
    assert [e.device_sn for e in ledger.iter_events(kinds, page_size=1)] == [sn(2), sn(4)]
    assert [e.kind for e in ledger.iter_events(run_id=run + 1)] == []
    (only,) = list(ledger.runs())
    assert (only.id, only.stopped_at) == (run, None)
    ledger.end_run(run, stopped_at="2026-01-09T00:00:00.000000Z", note="done")
    stopped = ledger.run(run)
    assert stopped is not None and (stopped.stopped_at, stopped.note) == (
        "2026-01-09T00:00:00.000000Z",
        "done",
    )


# ------------------------------------------------------------------ several writers
def test_concurrent_writers_keep_the_rules(ledger_spec: str) -> None:
    """Two ledger objects (two servers) race: a key ends with one device, every SN once."""
    a, b = open_ledger(ledger_spec, None), open_ledger(ledger_spec, None)
    with a, b:
        run_a = a.start_run(server="a", data_dir="/a", stamp="a", started_at="2026")
        run_b = b.start_run(server="b", data_dir="/b", stamp="b", started_at="2026")
        results: dict[str, list[IssueResult]] = {"a": [], "b": []}
        errors: list[BaseException] = []

        def writer(name: str, ledger: Ledger, run_id: int, base: int) -> None:
            try:
                for i in range(40):
                    # key 5000+i for device 1000+i (a) and device 2000+i (b): one wins;
                    # devices 3000..3004 get a new key from both writers, again and again
                    ops = [
                        issue(base + i, 5000 + i, cert_sn=f"{base + i:06X}"),
                        issue(3000 + i % 5, 7000 + base + i, cert_sn=f"{base + 500 + i:06X}"),
                    ]
                    for result in ledger.commit(ops, run_id=run_id):
                        assert isinstance(result, IssueResult)
                        results[name].append(result)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [
            threading.Thread(target=writer, args=("a", a, run_a, 1000)),
            threading.Thread(target=writer, args=("b", b, run_b, 2000)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors and not any(t.is_alive() for t in threads)
        for i in range(40):
            contested = [results[name][2 * i] for name in "ab"]
            assert sorted(r.action for r in contested) == ["issued", "refused"]
            assert [r.code for r in contested if r.action == "refused"] == [
                ReturnCode.PUBLIC_KEY_REUSED
            ]
        owners: dict[str, set[str]] = {}
        for issuance in a.iter_issuances():
            owners.setdefault(issuance.public_key, set()).add(issuance.device_sn)
        assert all(len(devices) == 1 for devices in owners.values())
        for n in range(5):  # one current issuance per device, the others superseded
            states = [i.state for i in a.device_history(sn(3000 + n)).issuances]
            assert len(states) == 16 and states.count(IssuanceState.SIGNED) == 1
            assert states[-1] is IssuanceState.SIGNED
            assert set(states) == {IssuanceState.SIGNED, IssuanceState.SUPERSEDED}


# ------------------------------------------------------------------ SQLite upkeep
def test_sqlite_upkeep_copies_the_wal_back_off_the_commit_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provserver.ledger import sqlite as engine

    monkeypatch.setattr(engine, "WAL_UPKEEP_CHANGES", 400)
    path = tmp_path / "ledger.sqlite3"
    wal = tmp_path / "ledger.sqlite3-wal"
    checkpoints: list[str] = []
    connect = engine.SqliteLedger._connect

    def traced(self: Any, target: str, *, uri: bool = False) -> Any:
        conn = connect(self, target, uri=uri)
        conn.set_trace_callback(
            lambda sql: checkpoints.append(sql) if "wal_checkpoint(" in sql else None
        )
        return conn

    monkeypatch.setattr(engine.SqliteLedger, "_connect", traced)
    with open_ledger(f"sqlite:{path}", None) as ledger:
        run_id = ledger.start_run(
            server="t", data_dir="/d", stamp="s", started_at="2026-01-01T00:00:00.000000Z"
        )
        ledger.upkeep()  # a few rows written: nothing to do yet
        assert checkpoints == []
        for batch in range(10):
            ledger.commit([issue(batch * 50 + n, batch * 50 + n) for n in range(50)], run_id=run_id)
        assert wal.stat().st_size >= 64 << 10  # the commits did not copy it back themselves
        before = path.stat().st_size
        ledger.upkeep()
        assert path.stat().st_size > before  # the pages are in the database file now
        assert len(checkpoints) == 1
        # the WAL file keeps its size once reused from its start: what counts is what was
        # written since, so a few more rows are not copied back at once
        ledger.commit([issue(9999, 9999)], run_id=run_id)  # writing goes on after it
        ledger.upkeep()
        assert len(checkpoints) == 1
        for n in range(100):
            ledger.commit([issue(10_000 + n, 10_000 + n)], run_id=run_id)
        ledger.upkeep()
        assert len(checkpoints) == 2
    with open_ledger(f"sqlite:{path}", None, read_only=True) as reader:
        assert len(list(reader.iter_issuances())) == 601
