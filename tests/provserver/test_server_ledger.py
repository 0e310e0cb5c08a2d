"""The whole server with its ledger (SQLite and PostgreSQL): lifecycle over the wire.

The server runs in-process (:func:`provserver.cli.run`, pem signer back-end, the ledger named by
``--ledger``); stations talk to it over 127.0.0.1. Shown for both engines: a resumed device gets
its certificate again byte for byte with one issuance; a new key supersedes; every refusal
(DEVICE_ALREADY_PROVISIONED, PUBLIC_KEY_REUSED, CERT_SERIAL_IN_USE) goes out and is recorded in
the ledger and the signing log; the outcome report of protocol version 2; a version-1 client
is served and its devices stay ``signed``; the signing log and certs folder match the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from atcaprov.protocol import (
    HEADER_SIZE,
    CertReply,
    CertRequest,
    DeviceReport,
    ErrorReply,
    RecordedState,
    ReportAck,
    ReportOutcome,
    ReportPartState,
    encode,
    parse_header,
)
from atcaprov.return_codes import ReturnCode
from atcaprov.stages import ProvStage
from provserver.cli import Settings, run
from provserver.console import Console
from provserver.ledger import EventKind, IssuanceState, Ledger, open_ledger
from provserver.profile import write_profile
from provserver.server import ProvisioningServer
from tests.support.cert_files import cert_files
from tests.support.postgres import PostgresServer, postgres_or_skip
from tests.support.server import make_chain, make_request, write_pem_signer
from tests.support.station import Station

CHAIN = make_chain()
WRITER = {"kind": "thread"}


@pytest.fixture(autouse=True, params=["thread", "process"])
def commit_writer(request: pytest.FixtureRequest) -> str:
    """Every test runs with the ledger commits in threads and in a writer process."""
    WRITER["kind"] = request.param
    return str(request.param)


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, ledger: str, *, name: str = "data", allow_reprovision: bool = False
) -> AsyncIterator[tuple[ProvisioningServer, io.StringIO, Path]]:
    data = tmp_path / name
    key = write_pem_signer(CHAIN, tmp_path / "keys")
    (data / "signers").mkdir(parents=True, exist_ok=True)
    write_profile(data / "signers" / f"{CHAIN.key_id.hex().upper()}.json", CHAIN.profile)
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=data,
        signers=["pem"],
        pem_key=key,
        rescan_interval=0.2,
        ledger=ledger,
        allow_reprovision=allow_reprovision,
        commit_writer=WRITER["kind"],
    )
    out = io.StringIO()
    stop = asyncio.Event()
    ready: asyncio.Future[ProvisioningServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run(settings, console=Console(out), stop=stop, on_ready=ready.set_result)
    )
    waiting: set[asyncio.Future[None] | asyncio.Future[ProvisioningServer]] = {task, ready}
    done, _ = await asyncio.wait(waiting, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        stop.set()
        if task in done:
            task.result()
        raise AssertionError(f"server not ready:\n{out.getvalue()}")
    try:
        yield ready.result(), out, data
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def report_for(
    request: CertRequest, outcome: ReportOutcome = ReportOutcome.INSTALLED, **changes: Any
) -> DeviceReport:
    report = DeviceReport(
        outcome=outcome, stage=int(ProvStage.VALIDATE_CERTS),
        part_state=ReportPartState.PROVISIONED, code=ReturnCode.SUCCESS,
        device_sn=request.device_serial_number, device_public_key=request.device_public_key,
        station_id="line-1",
    )  # fmt: skip
    return dataclasses.replace(report, **changes)


def rows(data: Path) -> list[dict[str, str]]:
    (tsv,) = sorted((data / "logs").glob("signing-*.tsv"))
    with tsv.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, dialect="excel-tab"))


def reader(spec: str, data: Path) -> Ledger:
    return open_ledger(spec, data, read_only=True)


def new_key_request(request: CertRequest) -> CertRequest:
    """The same part (serial number) with a new key, as after GenKey on a resumed part."""
    other = make_request(CHAIN, 1)
    return dataclasses.replace(request, device_public_key=other.device_public_key)


async def test_resume_is_idempotent_and_a_new_key_supersedes(
    tmp_path: Path, ledger_spec: str
) -> None:
    first = make_request(CHAIN, 7)
    async with serving(tmp_path, ledger_spec) as (server, out, data):
        station = await Station.connect(server.port)
        replies = [await station.request(first) for _ in range(3)]
        moved = new_key_request(first)
        after = await station.request(moved)
        await station.close()
    certs = [r for r in [*replies, after] if isinstance(r, CertReply)]
    assert len(certs) == 4
    assert certs[0] == certs[1] == certs[2]  # byte for byte, signer and root too
    assert certs[3].device_cert != certs[0].device_cert
    assert "certificate of issuance 1 sent again (same key, resumed)" in out.getvalue()
    with reader(ledger_spec, data) as ledger:
        history = ledger.device_history(first.device_serial_number.hex())
    assert [i.state for i in history.issuances] == [IssuanceState.SUPERSEDED, IssuanceState.SIGNED]
    assert [e.kind for e in history.events] == [
        EventKind.SIGNED,
        EventKind.REISSUED,
        EventKind.REISSUED,
        EventKind.SUPERSEDED,
        EventKind.SIGNED,
    ]
    assert [r["result"] for r in rows(data)] == ["signed", "reissued", "reissued", "signed"]
    # one certs/ file pair per issuance, equal to what the station got
    sn = first.device_serial_number.hex().upper()
    devices = sorted(p.read_bytes() for p in cert_files(data / "certs", sn, "device"))
    sent = sorted(
        x509.load_der_x509_certificate(r.device_cert).public_bytes(serialization.Encoding.PEM)
        for r in (certs[0], certs[3])
    )
    assert devices == sent and len(cert_files(data / "certs", sn, "signer")) == 2


async def test_every_refusal_goes_out_and_is_recorded(tmp_path: Path, ledger_spec: str) -> None:
    installed, other = make_request(CHAIN, 1), make_request(CHAIN, 2)
    async with serving(tmp_path, ledger_spec) as (server, out, data):
        station = await Station.connect(server.port)
        assert isinstance(await station.request(installed), CertReply)
        ack = await station.report(report_for(installed))
        assert ack == ReportAck(RecordedState.INSTALLED)
        already = await station.request(new_key_request(installed))
        reused = await station.request(
            dataclasses.replace(other, device_public_key=installed.device_public_key)
        )
        again = await station.request(installed)  # the installed key itself: same certificate
        await station.close()
    assert isinstance(already, ErrorReply)
    assert already.code is ReturnCode.DEVICE_ALREADY_PROVISIONED
    assert "--allow-reprovision" in already.message
    assert isinstance(reused, ErrorReply) and reused.code is ReturnCode.PUBLIC_KEY_REUSED
    assert isinstance(again, CertReply)
    screen = out.getvalue()
    assert "refused: ATCAPROV_E_DEVICE_ALREADY_PROVISIONED: " in screen
    assert "refused: ATCAPROV_E_PUBLIC_KEY_REUSED: " in screen
    assert f"Device {installed.device_serial_number.hex().upper()} installed" in screen
    expected = [
        ("signed", ""),
        ("refused", "ATCAPROV_E_DEVICE_ALREADY_PROVISIONED: device"),
        ("refused", "ATCAPROV_E_PUBLIC_KEY_REUSED: public key"),
        ("reissued", "certificate of issuance 1 (issued 20"),
    ]
    logged = rows(data)
    assert [r["result"] for r in logged] == [result for result, _ in expected]
    assert all(
        r["reason"].startswith(reason) for r, (_, reason) in zip(logged, expected, strict=True)
    )
    with reader(ledger_spec, data) as ledger:
        codes = [e.code for e in ledger.iter_events() if e.kind is EventKind.REFUSED]
        assert codes == ["DEVICE_ALREADY_PROVISIONED", "PUBLIC_KEY_REUSED"]
        assert sum(1 for _ in ledger.iter_issuances()) == 1


async def test_allow_reprovision(tmp_path: Path, ledger_spec: str) -> None:
    first = make_request(CHAIN, 3)
    async with serving(tmp_path, ledger_spec, allow_reprovision=True) as (server, _, data):
        station = await Station.connect(server.port)
        await station.request(first)
        await station.report(report_for(first))
        reply = await station.request(new_key_request(first))
        await station.close()
    assert isinstance(reply, CertReply)
    with reader(ledger_spec, data) as ledger:
        states = [
            i.state for i in ledger.device_history(first.device_serial_number.hex()).issuances
        ]
    assert states == [IssuanceState.SUPERSEDED, IssuanceState.SIGNED]


async def test_a_certificate_serial_number_is_never_reused(
    tmp_path: Path, ledger_spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cert def whose serial does not depend on the key (here: forced) for a new key."""
    import provserver.signing as signing
    from atcaprov.atcacert.build import prepare as real

    def fixed_serial(cert_def: object, **kw: object) -> object:
        from atcaprov.atcacert.sn import SnSource

        fixed = dataclasses.replace(cert_def, sn_source=SnSource.DEVICE_SN_HASH)  # type: ignore[type-var]
        return real(fixed, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(signing, "prepare", fixed_serial)
    first = make_request(CHAIN, 4)
    async with serving(tmp_path, ledger_spec) as (server, _, data):
        station = await Station.connect(server.port)
        a = await station.request(first)
        b = await station.request(
            dataclasses.replace(  # same serial number, another key
                make_request(CHAIN, 5), config_zone=first.config_zone
            )
        )
        await station.close()
    assert isinstance(a, CertReply)
    assert isinstance(b, ErrorReply) and b.code is ReturnCode.CERT_SERIAL_IN_USE, b
    assert [r["result"] for r in rows(data)] == ["signed", "refused"]


async def test_reports_and_a_version_1_client(tmp_path: Path, ledger_spec: str) -> None:
    failed, v1 = make_request(CHAIN, 10), make_request(CHAIN, 11)
    async with serving(tmp_path, ledger_spec) as (server, _, data):
        station = await Station.connect(server.port)
        await station.request(failed)
        ack = await station.report(
            report_for(
                failed,
                ReportOutcome.FAILED,
                stage=int(ProvStage.CERTS_WRITE),
                part_state=ReportPartState.CONFIG_LOCKED,
                code=ReturnCode.DEVICE_ERROR,
                message="chip did not answer",
            )
        )
        unknown = await station.report(report_for(make_request(CHAIN, 12)))
        # a version-1 client: its request in a version-1 header, the reply in version 1
        await station.send(encode(v1, 1))
        header = parse_header(await station.reader.readexactly(HEADER_SIZE))
        body = await station.reader.readexactly(header.body_length)
        # a report in a version-1 header does not exist: the connection is closed after it
        report_v1 = bytearray(encode(report_for(v1)))
        report_v1[4] = 1
        await station.send(bytes(report_v1))
        refused = await station.reply()
        await station.close()
    assert ack == ReportAck(RecordedState.FAILED)
    assert unknown == ReportAck(RecordedState.UNKNOWN)
    assert header.version == 1 and len(body) == header.body_length
    assert isinstance(refused, ErrorReply) and refused.code is ReturnCode.UNKNOWN_MESSAGE_TYPE
    with reader(ledger_spec, data) as ledger:
        failed_history = ledger.device_history(failed.device_serial_number.hex())
        v1_history = ledger.device_history(v1.device_serial_number.hex())
    assert failed_history.device is not None
    assert failed_history.device.state is IssuanceState.FAILED
    (event,) = [e for e in failed_history.events if e.kind is EventKind.FAILED]
    assert (event.stage, event.part_state, event.code, event.detail) == (
        "CERTS_WRITE",
        "CONFIG_LOCKED",
        "DEVICE_ERROR",
        "chip did not answer",
    )
    assert v1_history.device is not None and v1_history.device.state is IssuanceState.SIGNED


async def test_two_servers_share_one_postgresql_ledger(
    tmp_path: Path, postgres_server: PostgresServer | str
) -> None:
    """Installed through server A, refused through server B (in-process; the kill -9 case is
    in test_server_processes)."""
    ledger_spec = postgres_or_skip(postgres_server).new_database()
    request = make_request(CHAIN, 20)
    async with (
        serving(tmp_path, ledger_spec, name="a") as (a, _, _),
        serving(tmp_path, ledger_spec, name="b") as (b, _, data_b),
    ):
        station_a = await Station.connect(a.port)
        await station_a.request(request)
        assert await station_a.report(report_for(request)) == ReportAck(RecordedState.INSTALLED)
        await station_a.close()
        station_b = await Station.connect(b.port)
        refused = await station_b.request(new_key_request(request))
        same = await station_b.request(request)
        await station_b.close()
    assert isinstance(refused, ErrorReply)
    assert refused.code is ReturnCode.DEVICE_ALREADY_PROVISIONED
    assert isinstance(same, CertReply)
    assert [r["result"] for r in rows(data_b)] == ["refused", "reissued"]
