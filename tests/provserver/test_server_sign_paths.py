"""The signing path's cheaper steps keep their guarantees: a module whose key is elsewhere has
every signature checked, an in-memory pem key is checked once when it is loaded; the ledger
store writes a batch's files while the next batch commits, in commit order, and a crash
before they are written loses none of them."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from atcaprov.protocol import CertReply, ErrorReply
from atcaprov.return_codes import ReturnCode
from provserver.console import Console, NoPasswordSource
from provserver.ledger import IssueOp, open_ledger
from provserver.ledger.store import LedgerRecordStore
from provserver.manager import SignerManager
from provserver.peer import Peer
from provserver.profile import ProfileStore
from provserver.records import MemoryRecordStore
from provserver.signers.base import SignerModule
from provserver.signers.chip import ChipSignerModule
from provserver.signers.pem import PemSignerModule
from provserver.signers.pkcs11 import Pkcs11SignerModule
from provserver.signing import SigningService
from tests.support.server import make_chain, make_request, write_pem_signer
from tests.support.signer_fakes import FakeBackend, FakeModule

TIMEOUT = 30.0
CHAIN = make_chain()
PEER = Peer("127.0.0.1:40000")


def _op(n: int) -> IssueOp:
    return IssueOp(
        time=f"2026-01-01T00:00:{n % 60:02d}.{n:06d}Z", station="127.0.0.1:9 line-1",
        device_sn=f"01231E6CD82C{n:04X}EE", public_key=f"{n:0128X}", issuer_key_id="AB" * 20,
        signer_id="C48B", signer="Example Signer (0123, pem:signer.pem)", cert_sn=f"{n:08X}",
        device_cert=b"\x30\x03DEV" + n.to_bytes(4, "big"), signer_cert=b"\x30\x03SGN",
        root_cert=None,
    )  # fmt: skip


async def _service_with(
    module: SignerModule, clock: Callable[[], datetime] | None = None
) -> tuple[SigningService, SignerManager]:
    backend = FakeBackend()
    assert isinstance(module, FakeModule)
    backend.present[module.location] = module
    console = Console(io.StringIO())
    manager = SignerManager([backend], console, NoPasswordSource(), rescan_interval=0)
    service = SigningService(
        manager,
        ProfileStore([], [CHAIN.profile]),
        MemoryRecordStore(),
        console,
        **({} if clock is None else {"clock": clock}),
    )
    await service.open()
    await manager.start()
    await manager.start_scanning()
    return service, manager


class _CheckedAtLoad(FakeModule):
    key_checked_at_load = True


@pytest.mark.parametrize("checked_at_load", [False, True])
async def test_wrong_key_module_is_refused_unless_its_key_was_checked_at_load(
    checked_at_load: bool,
) -> None:
    wrong = ec.generate_private_key(ec.SECP256R1())  # not the certificate's key
    kind = _CheckedAtLoad if checked_at_load else FakeModule
    module = kind("m0", wrong, CHAIN.signer_cert, sn="0123000000000000EE")
    service, manager = await _service_with(module)
    try:
        reply = await asyncio.wait_for(service.handle(make_request(CHAIN, 7), PEER), TIMEOUT)
    finally:
        await manager.stop()
        await service.close()
    if checked_at_load:  # trusted: a module that says so must have checked its key itself
        assert isinstance(reply, CertReply)
    else:
        assert isinstance(reply, ErrorReply)
        assert reply.code is ReturnCode.SIGNING_FAILED
        assert "does not verify" in reply.message


async def test_kept_certificate_base_follows_the_hour() -> None:
    """The per-signer, per-hour part of the certificate is made once per hour, not kept
    past it: each certificate has its own hour's dates and the same bytes a fresh build gives."""
    times = [
        datetime(2026, 11, 21, 5, 13, tzinfo=timezone.utc),
        datetime(2026, 11, 21, 5, 59, tzinfo=timezone.utc),
        datetime(2026, 11, 21, 6, 0, 1, tzinfo=timezone.utc),
    ]
    now = iter(times)
    module = FakeModule("m0", CHAIN.signer_key, CHAIN.signer_cert, sn="0123000000000000EE")
    service, manager = await _service_with(module, clock=lambda: next(now))
    try:
        replies = [
            await asyncio.wait_for(service.handle(make_request(CHAIN, n), PEER), TIMEOUT)
            for n in (1, 2, 3)
        ]
    finally:
        await manager.stop()
        await service.close()
    hours = []
    for reply in replies:
        assert isinstance(reply, CertReply)
        cert = x509.load_der_x509_certificate(reply.device_cert)
        hours.append(cert.not_valid_before_utc.hour)
        cert.verify_directly_issued_by(x509.load_der_x509_certificate(CHAIN.signer_cert))
    assert hours == [5, 5, 6]
    assert len(service._bases) == 2


def test_only_in_memory_keys_skip_the_per_signature_check() -> None:
    assert PemSignerModule.key_checked_at_load
    assert not Pkcs11SignerModule.key_checked_at_load  # a token: every signature checked
    assert not ChipSignerModule.key_checked_at_load  # a chip (hid, sim)
    assert not SignerModule.key_checked_at_load


def test_pem_key_is_checked_against_its_certificate_when_loaded(tmp_path: Path) -> None:
    from provserver.signers.base import SignerConfigError

    key_path = write_pem_signer(CHAIN, tmp_path / "good")
    module = PemSignerModule(key_path)
    assert module.unlocked
    other = make_chain()  # another key under the same certificate: refused at load
    bad = write_pem_signer(other, tmp_path / "bad")
    bad.with_suffix(".crt").write_bytes(key_path.with_suffix(".crt").read_bytes())
    with pytest.raises(SignerConfigError, match="does not match"):
        PemSignerModule(bad)


async def test_files_follow_the_commits_in_order_and_survive_a_crash(tmp_path: Path) -> None:
    """Many batches back to back: every certificate gets its files and its row, in commit
    order; a store that dies before writing a batch's files has them restored at the next
    start (the files are derived data, the ledger had the batch before any reply)."""
    data = tmp_path / "data"
    data.mkdir()
    store = LedgerRecordStore(open_ledger(None, data), data, checkpoint_after=None)
    await store.open()
    ops = [_op(i) for i in range(300)]
    tasks = []
    for start in range(0, len(ops), 10):  # requests keep arriving while batches commit
        tasks += [asyncio.create_task(store.issue(op)) for op in ops[start : start + 10]]
        await asyncio.sleep(0.002)
    results = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert all(r.action == "issued" for r in results)
    await store.close()
    rows = [row.split("\t")[2] for row in store.tsv_path.read_text().splitlines()[1:]]
    assert rows == [op.device_sn for op in ops]  # one row each, in commit order
    assert len(list((data / "certs").glob("*/*-device.pem"))) == 300
    assert store.commits > 1  # several batches, their files overlapping the next commits

    crashed = LedgerRecordStore(open_ledger(None, data), data, checkpoint_after=None)
    await crashed.open()

    def files_never_written(*args: object) -> None:  # the process dies before the files
        return None

    crashed._files_sync = files_never_written  # type: ignore[method-assign,assignment]
    last = [_op(i) for i in range(300, 320)]
    await asyncio.wait_for(asyncio.gather(*(crashed.issue(op) for op in last)), TIMEOUT)
    assert crashed._task is not None
    crashed._task.cancel()  # kill -9: no close(), the crash marker stays
    with contextlib.suppress(asyncio.CancelledError):
        await crashed._task
    crashed.ledger.close()
    assert crashed._files_thread is not None
    crashed._files_thread.shutdown()
    assert crashed.marker_path.exists()
    assert len(list((data / "certs").glob("*/*-device.pem"))) == 300

    again = LedgerRecordStore(open_ledger(None, data), data, checkpoint_after=None)
    await again.open()
    try:
        assert [(r.stamp, r.rows, r.files) for r in again.recovered] == [(crashed.stamp, 20, 40)]
        assert len(list((data / "certs").glob("*/*-device.pem"))) == 320
        rows = [row.split("\t")[2] for row in crashed.tsv_path.read_text().splitlines()[1:]]
        assert rows == [op.device_sn for op in last]
    finally:
        await again.close()
