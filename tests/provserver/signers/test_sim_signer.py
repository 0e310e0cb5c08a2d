"""The sim back-end: emulated signer modules in a folder, through the kit-hid and emulator HALs."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import pytest

from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.hal.emulator import EmulatorHal
from provserver.signers import (
    SignerConfigError,
    SignerFormatError,
    SignerLockedError,
    SignerUnavailableError,
    WrongPasswordError,
    open_backend,
)
from provserver.signers.chip import ChipSignerModule
from provserver.signers.sim import SimBackend, create_sim_module
from tests.support.certs import TestRoot
from tests.support.keys import cert_public_key, verify_rs

NAME = "Example ATECC508A Signer"
PASSWORD = "correct horse battery staple"
SERIAL = bytes.fromhex("01231E6CD82CA571EE")
ITERATIONS = 1000  # fast tests; the default is much higher


@pytest.fixture(params=["kit-hid", "emulator"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _make(folder: Path, root: TestRoot, stem: str, password: str | None = None) -> Path:
    path = folder / f"{stem}.json"
    create_sim_module(
        path, name=NAME, issuer=(root.key, root.cert), kdf_iterations=ITERATIONS, password=password
    )
    return path


def _sign_and_verify(module: ChipSignerModule, text: bytes) -> None:
    digest = hashlib.sha256(text).digest()
    signature = module.sign_digest(digest)
    key = cert_public_key(module.identity.signer_cert_der)
    assert verify_rs(key, digest, signature)
    assert not verify_rs(key, hashlib.sha256(text + b"!").digest(), signature)


def test_unprotected_module_round_trip(tmp_path: Path, root: TestRoot, transport: str) -> None:
    path = tmp_path / "m.json"
    identity = create_sim_module(
        path, serial=SERIAL, name=NAME, issuer=(root.key, root.cert), signer_id=b"\xc4\x8b"
    )
    assert identity.module_sn == "01231E6CD82CA571EE"
    assert identity.signer_id == b"\xc4\x8b"
    cert = identity.certificate
    assert cert.subject.rfc4514_string() == f"CN={NAME} C48B"
    assert cert.serial_number == 0x40C48B
    backend = open_backend("sim", modules=tmp_path, transport=transport)
    assert backend.scan() == {str(path)}
    with backend.open(str(path)) as module:
        assert isinstance(module, ChipSignerModule)
        assert module.identity == identity
        assert not module.password_protected and not module.needs_password
        module.unlock("anything")  # no-op on an unprotected module
        _sign_and_verify(module, b"device certificate tbs")
        _sign_and_verify(module, b"another one")


def test_signer_cert_chains_to_root(tmp_path: Path, root: TestRoot) -> None:
    identity = create_sim_module(tmp_path / "m.json", name=NAME, issuer=(root.key, root.cert))
    cert = identity.certificate
    assert cert.issuer == root.cert.subject
    cert.verify_directly_issued_by(root.cert)
    assert cert.not_valid_before_utc.minute == 0 and cert.not_valid_before_utc.second == 0
    assert cert.not_valid_after_utc.year - cert.not_valid_before_utc.year == 20


def test_password_protected_module(
    tmp_path: Path, root: TestRoot, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = _make(tmp_path, root, "p", password=PASSWORD)
    assert PASSWORD.encode() not in path.read_bytes()
    module = SimBackend(tmp_path, transport=transport).open(str(path))
    assert module.password_protected and module.needs_password
    with pytest.raises(SignerLockedError):
        module.sign_digest(bytes(32))
    with pytest.raises(WrongPasswordError):
        module.unlock("wrong password")
    assert module.needs_password
    module.unlock(PASSWORD)
    assert not module.needs_password
    _sign_and_verify(module, b"after unlock")
    # The chip sleeps (watchdog, power save): the authorization is gone, the module re-authorizes
    # from the derived key it kept. (It was left idle, and an idle chip ignores a sleep token:
    # wake it first so the sleep counts.)
    chip = _chip_of(module)
    chip.wake()
    chip.sleep()
    assert chip.power_state.value == "asleep"
    _sign_and_verify(module, b"after the chip slept")
    assert PASSWORD not in caplog.text
    module.close()


def _chip_of(module: ChipSignerModule) -> Atecc508a:
    device = module._device
    assert device is not None
    hal = device.hal
    inner = getattr(hal, "_inner", None)
    if inner is not None:
        return inner.chip  # type: ignore[no-any-return]
    return hal._dev.chip  # type: ignore[attr-defined,no-any-return]


def test_chip_enforces_the_password(tmp_path: Path, root: TestRoot) -> None:
    """Without the CheckMac the chip itself refuses to sign; slots 0/1 are unreadable."""
    from atcaprov.errors import ExecutionError

    path = _make(tmp_path, root, "p", password=PASSWORD)
    with Device(EmulatorHal(Atecc508a.load(path))) as device:
        with pytest.raises(ExecutionError):
            device.sign(0, bytes(32))
        for slot in (0, 1):
            with pytest.raises(ExecutionError):
                device.read_zone(2, slot, 0, 0, 32)
        with pytest.raises(ExecutionError):  # never writable after the lock
            device.write_zone(2, 8, 0, 0, bytes(32))
        config = device.read_config_zone()
        key_config0 = int.from_bytes(config[96:98], "little")
        assert key_config0 == 0x0193  # P256 private, PubInfo, ReqAuth, AuthKey = slot 1


def test_hot_unplug_and_new_module(tmp_path: Path, root: TestRoot, transport: str) -> None:
    first = _make(tmp_path, root, "a")
    backend = SimBackend(tmp_path, transport=transport, timeout=0.5)
    assert backend.scan() == {str(first)}
    module = backend.open(str(first))
    _sign_and_verify(module, b"present")
    second = _make(tmp_path, root, "b", password=PASSWORD)
    assert backend.scan() == {str(first), str(second)}
    first.unlink()
    assert backend.scan() == {str(second)}
    with pytest.raises(SignerUnavailableError):
        module.sign_digest(bytes(32))
    module.close()
    with pytest.raises(SignerUnavailableError):
        backend.open(str(first))


def test_chip_stops_answering(tmp_path: Path, root: TestRoot) -> None:
    path = _make(tmp_path, root, "a")
    backend = SimBackend(tmp_path, transport="kit-hid", timeout=0.2)
    module = backend.open(str(path))
    _sign_and_verify(module, b"before")
    backend.kits[str(path)].silent = True
    started = time.monotonic()
    with pytest.raises(SignerUnavailableError, match="stopped answering"):
        module.sign_digest(bytes(32))
    assert time.monotonic() - started < 30  # bounded by the kit timeout and wake retries
    module.close()
    assert str(path) not in backend.kits


def test_kit_protocol_is_used(tmp_path: Path, root: TestRoot) -> None:
    path = _make(tmp_path, root, "a")
    backend = SimBackend(tmp_path)
    module = backend.open(str(path))
    kit = backend.kits[str(path)]
    module.sign_digest(bytes(32))
    talked = [line for line in kit.lines_seen if b":t(" in line]
    assert talked and any(line.endswith(b")") for line in talked)
    assert kit.lines_seen[0].startswith(b"board:device(")  # board:device discovery first


def test_not_a_module_and_bad_options(tmp_path: Path, root: TestRoot) -> None:
    blank = Atecc508a()
    blank.save(tmp_path / "blank.json")
    (tmp_path / "junk.json").write_text("{}")
    backend = SimBackend(tmp_path, transport="emulator")
    with pytest.raises(SignerFormatError, match="not a signer module"):
        backend.open(str(tmp_path / "blank.json"))
    with pytest.raises(SignerFormatError, match="not a saved emulated chip"):
        backend.open(str(tmp_path / "junk.json"))
    with pytest.raises(SignerConfigError):
        SimBackend(tmp_path / "missing")
    with pytest.raises(SignerConfigError, match="transport"):
        SimBackend(tmp_path, transport="usb")
    with pytest.raises(SignerConfigError, match="will not overwrite"):
        create_sim_module(tmp_path / "blank.json", name=NAME, issuer=(root.key, root.cert))


@pytest.mark.parametrize("password", [None, PASSWORD])
def test_certificate_not_for_the_chip_key(
    tmp_path: Path, root: TestRoot, password: str | None
) -> None:
    """A module whose slot 8 holds another module's certificate fails its self-test."""
    import json

    a = _make(tmp_path, root, "a", password=password)
    b = _make(tmp_path, root, "b", password=password)
    saved_a, saved_b = json.loads(a.read_text()), json.loads(b.read_text())
    saved_a["slots"][8] = saved_b["slots"][8]
    a.write_text(json.dumps(saved_a))
    backend = SimBackend(tmp_path, transport="emulator")
    if password is None:
        with pytest.raises(SignerFormatError, match="does not match the signer certificate"):
            backend.open(str(a))
    else:
        module = backend.open(str(a))
        with pytest.raises(SignerFormatError, match="does not match the signer certificate"):
            module.unlock(PASSWORD)
        assert module.needs_password
