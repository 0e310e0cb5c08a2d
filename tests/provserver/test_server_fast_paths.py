"""The server's cheap paths keep their guarantees: linked signer copies, early release of a
batch, copy failures, profile re-checks, in-process signing, the plain-field shortcut."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import io
import json
import os
import random
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import provserver.profile as profile_mod
import provserver.records_file as records_file
from atcaprov.text import printable
from provserver.console import Console, NoPasswordSource
from provserver.manager import SignerManager
from provserver.profile import ProfileError, ProfileStore, write_profile
from provserver.records import MAX_FIELD_CHARS, RecordStoreError, SigningRecord, sanitize_field
from provserver.records_file import FileRecordStore, parse_journal
from tests.support.certs import make_ca_cert
from tests.support.records import cert_pem_text, signed
from tests.support.server import make_chain
from tests.support.signer_fakes import FakeBackend, FakeModule

STARTED = datetime.datetime(2026, 11, 21, 5, 13, 23, tzinfo=datetime.timezone.utc)
TIMEOUT = 30.0
CHAIN = make_chain()


DEVICE_PEM = cert_pem_text("device")
SIGNER_PEM = cert_pem_text("signer")
OTHER_SIGNER_PEM = cert_pem_text("other signer")


def _copies(root: Path, record: SigningRecord) -> tuple[Path, Path]:
    folder = root / "certs" / record.device_sn
    device = next(folder.glob("*-device.pem"))
    signer = next(folder.glob("*-signer.pem"))
    return device, signer


async def _written(root: Path, record: SigningRecord) -> tuple[Path, Path]:
    """The copies of ``record`` once written (they follow the release of the batch)."""
    folder = root / "certs" / record.device_sn
    for _ in range(500):  # bounded: <= 5 s
        if len(list(folder.glob("*.pem"))) == 2:
            break
        await asyncio.sleep(0.01)
    return _copies(root, record)


def _links_work(folder: Path) -> bool:
    (folder / "link-probe").write_bytes(b"x")
    try:
        os.link(folder / "link-probe", folder / "link-probe-2")
    except OSError:
        return False
    finally:
        for name in ("link-probe", "link-probe-2"):
            (folder / name).unlink(missing_ok=True)
    return True


# ------------------------------------------------------------------ signer copies
async def test_signer_copies_of_a_run_share_one_file(tmp_path: Path) -> None:
    if not _links_work(tmp_path):
        pytest.skip("this file system has no hard links")
    records = [signed(i) for i in range(5)]
    async with FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None) as store:
        for record in records:  # one at a time: five batches
            await asyncio.wait_for(store.log_signing(record, DEVICE_PEM, SIGNER_PEM), TIMEOUT)
        await asyncio.wait_for(store.log_signing(signed(9), DEVICE_PEM, OTHER_SIGNER_PEM), TIMEOUT)
    signers = [_copies(tmp_path, r)[1] for r in records]
    devices = [_copies(tmp_path, r)[0] for r in records]
    assert {s.stat().st_ino for s in signers} == {signers[0].stat().st_ino}
    assert signers[0].stat().st_nlink == 5
    assert len({d.stat().st_ino for d in devices}) == 5  # device certificates: own files
    assert all(s.read_text() == SIGNER_PEM for s in signers)
    other = _copies(tmp_path, signed(9))[1]
    assert other.read_text() == OTHER_SIGNER_PEM and other.stat().st_nlink == 1
    assert not list((tmp_path / "certs").rglob("*.tmp"))


async def test_link_copies_false_writes_a_file_per_device(tmp_path: Path) -> None:
    records = [signed(i) for i in range(3)]
    store = FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None, link_copies=False)
    async with store:
        for record in records:
            await asyncio.wait_for(store.log_signing(record, DEVICE_PEM, SIGNER_PEM), TIMEOUT)
    signers = [_copies(tmp_path, r)[1] for r in records]
    assert len({s.stat().st_ino for s in signers}) == 3
    assert all(s.stat().st_nlink == 1 and s.read_text() == SIGNER_PEM for s in signers)


async def test_a_changed_or_removed_first_copy_is_not_linked(tmp_path: Path) -> None:
    async with FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None) as store:
        await asyncio.wait_for(store.log_signing(signed(0), DEVICE_PEM, SIGNER_PEM), TIMEOUT)
        first = (await _written(tmp_path, signed(0)))[1]
        first.write_text("tampered\n")  # same inode, other content
        await asyncio.wait_for(store.log_signing(signed(1), DEVICE_PEM, SIGNER_PEM), TIMEOUT)
        second = (await _written(tmp_path, signed(1)))[1]
        assert second.read_text() == SIGNER_PEM
        assert second.stat().st_ino != first.stat().st_ino
        (second.parent / "replacement").write_text(SIGNER_PEM)
        os.replace(second.parent / "replacement", second)  # same name, another file
        await asyncio.wait_for(store.log_signing(signed(2), DEVICE_PEM, SIGNER_PEM), TIMEOUT)
        third = (await _written(tmp_path, signed(2)))[1]
        assert third.read_text() == SIGNER_PEM
        assert third.stat().st_ino != second.stat().st_ino
    assert first.read_text() == "tampered\n"  # nobody else's copy went with it


# ------------------------------------------------------------------ batch release and copy errors
async def test_waiters_are_released_before_the_copies_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None)
    await store.open()
    gate = threading.Event()
    entered = threading.Event()
    real = store._materialize_sync

    def held(files: list[tuple[str, bytes]]) -> None:
        entered.set()
        gate.wait(TIMEOUT)  # bounded
        real(files)

    monkeypatch.setattr(store, "_materialize_sync", held)
    try:
        await asyncio.wait_for(store.log_signing(signed(1), DEVICE_PEM, SIGNER_PEM), TIMEOUT)
        # the worker thread goes on to the copies after releasing us: it may not be there yet
        assert entered.wait(TIMEOUT)
        assert not (tmp_path / "certs" / signed(1).device_sn).exists()  # copies not yet there
        rows = store.tsv_path.read_bytes().splitlines()
        assert len(rows) == 2 and signed(1).device_sn.encode() in rows[1]
        entries, _ = parse_journal(store.journal_path.read_bytes())
        assert [pem.decode() for _, pem in entries] == [DEVICE_PEM, SIGNER_PEM]
    finally:
        gate.set()
    await asyncio.wait_for(store.close(), TIMEOUT)
    device, signer = _copies(tmp_path, signed(1))
    assert device.read_text() == DEVICE_PEM and signer.read_text() == SIGNER_PEM


async def test_copy_failure_keeps_the_record_then_stops_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None)
    await store.open()

    def broken(path: str, tmp: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records_file, "_write_new_file", broken)
    await asyncio.wait_for(store.log_signing(signed(1), DEVICE_PEM, SIGNER_PEM), TIMEOUT)
    for _ in range(200):  # bounded: the worker notes the failure just after the release
        if store._failure is not None:
            break
        await asyncio.sleep(0.01)
    with pytest.raises(RecordStoreError, match=r"failed earlier.*No space left"):
        await store.log_signing(signed(2), DEVICE_PEM, SIGNER_PEM)
    monkeypatch.undo()
    await store.close()
    assert store.marker_path.exists()  # the journal holds the certificates
    later = FileRecordStore(tmp_path, started=STARTED + datetime.timedelta(hours=1))
    await later.open()
    await later.close()
    assert later.recovered == [store.stamp]
    device, signer = _copies(tmp_path, signed(1))
    assert device.read_text() == DEVICE_PEM and signer.read_text() == SIGNER_PEM


# ------------------------------------------------------------------ profiles
def _counting_loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    loads: list[Path] = []
    real = profile_mod.load_profile

    def counted(path: Path) -> profile_mod.SignerProfile:
        loads.append(path)
        return real(path)

    monkeypatch.setattr(profile_mod, "load_profile", counted)
    return loads


def test_profile_found_is_reused_for_the_recheck_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"{CHAIN.key_id.hex().upper()}.json"
    write_profile(path, CHAIN.profile)
    loads = _counting_loads(monkeypatch)
    store = ProfileStore([tmp_path], recheck_interval=3600.0)
    first = store.get(CHAIN.key_id)
    path.unlink()
    assert store.get(CHAIN.key_id) is first  # within the interval: no look at the disk
    assert len(loads) == 1
    store._found.clear()  # the interval is over
    with pytest.raises(ProfileError, match="no signer profile"):
        store.get(CHAIN.key_id)


def test_unchanged_profile_file_is_parsed_once_and_edits_are_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"{CHAIN.key_id.hex().upper()}.json"
    write_profile(path, CHAIN.profile)
    monkeypatch.setattr(profile_mod, "_RACY_NS", 0)  # trust stamps at once (ctime is now)
    loads = _counting_loads(monkeypatch)
    store = ProfileStore([tmp_path], recheck_interval=0)
    for _ in range(3):
        assert store.get(CHAIN.key_id).validity_years == CHAIN.profile.validity_years
    assert len(loads) == 1
    obj = json.loads(path.read_text())
    obj["validity_years"] = 3
    path.write_text(json.dumps(obj))
    assert store.get(CHAIN.key_id).validity_years == 3  # stat changed: read again
    assert len(loads) == 2
    monkeypatch.setattr(profile_mod, "_RACY_NS", 10**18)  # every file counts as just written
    store.get(CHAIN.key_id)
    store.get(CHAIN.key_id)
    assert len(loads) == 4  # a stamp too recent to trust: read every time


def test_profile_added_to_a_folder_is_found(tmp_path: Path) -> None:
    other = make_chain()
    store = ProfileStore([tmp_path], recheck_interval=0)
    with pytest.raises(ProfileError):
        store.get(other.key_id)
    write_profile(tmp_path / f"{other.key_id.hex().upper()}.json", other.profile)
    assert store.get(other.key_id).signer_key_id == other.key_id


# ------------------------------------------------------------------ signing in the loop
class InlineModule(FakeModule):
    signs_inline = True

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.threads: list[int] = []

    def sign_digest(self, digest: bytes) -> bytes:
        self.threads.append(threading.get_ident())
        return super().sign_digest(digest)


async def test_inline_module_signs_on_the_loop_unless_busy_elsewhere() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_ca_cert(key, "Example Signer C48B")
    backend = FakeBackend()
    inline = InlineModule("a", key, cert, sn="01231E6CD82CA571EE")
    backend.present["a"] = inline
    mgr = SignerManager([backend], Console(io.StringIO()), NoPasswordSource(), rescan_interval=0)
    await mgr.start_scanning()
    managed = mgr.modules()[0]
    digest = hashlib.sha256(b"tbs").digest()
    try:
        await mgr.sign(managed.identity.key_id, bytes.fromhex("C48B"), digest)
        assert inline.threads == [threading.get_ident()]
        with managed.thread_lock:  # e.g. a close() running in a worker thread
            task = asyncio.create_task(
                mgr.sign(managed.identity.key_id, bytes.fromhex("C48B"), digest)
            )
            await asyncio.sleep(0.05)
            assert not task.done()  # waits in a worker thread, the loop goes on
        await asyncio.wait_for(task, TIMEOUT)
        assert len(inline.threads) == 2 and inline.threads[1] != threading.get_ident()
    finally:
        await mgr.stop()


async def test_ordinary_module_signs_in_a_worker_thread() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_ca_cert(key, "Example Signer C48B")
    backend = FakeBackend()
    module = InlineModule("a", key, cert, sn="01231E6CD82CA571EE")
    module.signs_inline = False  # type: ignore[misc]
    backend.present["a"] = module
    mgr = SignerManager([backend], Console(io.StringIO()), NoPasswordSource(), rescan_interval=0)
    await mgr.start_scanning()
    try:
        key_id = mgr.modules()[0].identity.key_id
        await mgr.sign(key_id, bytes.fromhex("C48B"), hashlib.sha256(b"x").digest())
        assert module.threads and module.threads[0] != threading.get_ident()
    finally:
        await mgr.stop()


# ------------------------------------------------------------------ plain TSV fields
def _sanitize_reference(value: str) -> str:
    """sanitize_field without its shortcut: escape, guard a formula, cut at an escape."""
    pieces = [printable(ch) for ch in value]
    if value[:1] in ("=", "+", "-", "@"):
        pieces.insert(0, "'")
    if sum(map(len, pieces)) <= MAX_FIELD_CHARS:
        return "".join(pieces)
    kept: list[str] = []
    for piece in pieces:
        if sum(map(len, kept)) + len(piece) > MAX_FIELD_CHARS - 1:
            break
        kept.append(piece)
    return "".join(kept) + "…"


def test_plain_field_shortcut_gives_the_same_cells() -> None:
    rng = random.Random(8971)
    alphabet = [" ", "a", "Z", "0", "=", "-", "+", "@", "'", '"', "\t", "\r", "\n", "\x00"]
    alphabet += ["\x7f", "\u2028", "\u2029", "é", "…", ":", "\\", "\x1b"]
    values = ["", "a", " a", "a ", "a  b", "127.0.0.1:5555 line-1", "=1+1", "-x", "@"]
    values += ["a" * n for n in (MAX_FIELD_CHARS - 1, MAX_FIELD_CHARS, MAX_FIELD_CHARS + 1)]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9))) for _ in range(3000)]
    for value in values:
        assert sanitize_field(value) == _sanitize_reference(value), repr(value)
