"""Signer manager: discovery, hot plug, passwords, pools, per-module serialisation, failover."""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from atcaprov.return_codes import ReturnCode
from provserver.console import (
    CallablePasswordSource,
    Console,
    EnvPasswordSource,
    NoPasswordSource,
    PasswordCancelled,
)
from provserver.manager import SignerManager, SignerRequestError
from tests.support.certs import make_ca_cert
from tests.support.signer_fakes import FakeBackend, FakeModule

FIXED = datetime(2015, 11, 6, 15, 51, 7)
KEY = ec.generate_private_key(ec.SECP256R1())
CERT = make_ca_cert(KEY, "Example Signer C48B")
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_CERT = make_ca_cert(OTHER_KEY, "Other Signer 0001")
SID = bytes.fromhex("C48B")
DIGEST = hashlib.sha256(b"tbs").digest()


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(out, clock=lambda: FIXED), out


def lines(out: io.StringIO) -> list[str]:
    return [line.split("] ", 1)[1] for line in out.getvalue().splitlines() if "] " in line]


def module(loc: str, sn: str = "01231E6CD82CA571EE", **kw: object) -> FakeModule:
    return FakeModule(loc, KEY, CERT, sn=sn, **kw)  # type: ignore[arg-type]


def verify(signature: bytes) -> None:
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    KEY.public_key().verify(
        utils.encode_dss_signature(r, s), DIGEST, ec.ECDSA(utils.Prehashed(hashes.SHA256()))
    )


async def test_discovery_hot_plug_and_removal() -> None:
    con, out = console()
    backend = FakeBackend()
    backend.present["a"] = module("a")
    mgr = SignerManager([backend], con, NoPasswordSource(), rescan_interval=0)
    await mgr.start()
    await mgr.start_scanning()
    key_id = mgr.modules()[0].identity.key_id
    assert lines(out) == [
        "Signer Manager started.",
        "Signer (01231E6CD82CA571EE, Example ATECC508A Signer) found.",
    ]
    result = await mgr.sign(key_id, SID, DIGEST)
    verify(result.signature)
    backend.present["b"] = FakeModule("b", OTHER_KEY, OTHER_CERT, sn="0123AAAAAAAAAAAAEE")
    del backend.present["a"]
    await mgr.rescan()
    assert lines(out)[2:] == [
        "Signer (01231E6CD82CA571EE, Example ATECC508A Signer) removed.",
        "Signer (0123AAAAAAAAAAAAEE, Example ATECC508A Signer) found.",
    ]
    with pytest.raises(SignerRequestError) as err:
        await mgr.sign(key_id, SID, DIGEST)
    assert err.value.code is ReturnCode.SIGNER_NOT_FOUND
    assert key_id.hex().upper() in err.value.message
    await mgr.stop()
    assert backend.present["b"].closed


async def test_periodic_rescan_finds_new_module() -> None:
    con, out = console()
    backend = FakeBackend()
    mgr = SignerManager([backend], con, NoPasswordSource(), rescan_interval=0.05)
    await mgr.start()
    await mgr.start_scanning()
    backend.present["a"] = module("a")
    for _ in range(100):
        if mgr.modules():
            break
        await asyncio.sleep(0.02)
    assert "Signer (01231E6CD82CA571EE, Example ATECC508A Signer) found." in lines(out)
    await mgr.stop()


async def test_password_rejected_then_accepted() -> None:
    con, out = console()
    backend = FakeBackend()
    backend.present["a"] = module("a", password="right")
    answers = iter(["wrong", "right"])
    prompts: list[str] = []

    def reader(prompt: str) -> str | None:
        prompts.append(prompt)
        return next(answers)

    mgr = SignerManager([backend], con, CallablePasswordSource(reader), rescan_interval=0)
    await mgr.start()
    await mgr.start_scanning()
    for _ in range(200):
        if mgr.modules() and mgr.modules()[0].ready:
            break
        await asyncio.sleep(0.01)
    label = "Signer (01231E6CD82CA571EE, Example ATECC508A Signer)"
    assert prompts == [f"{label} password: "] * 2
    assert lines(out)[1:] == [
        f"{label} requires password.",
        f"{label} password rejected.",
        f"{label} password accepted, ready.",
    ]
    verify((await mgr.sign(mgr.modules()[0].identity.key_id, SID, DIGEST)).signature)
    await mgr.stop()


async def test_no_password_source_leaves_module_locked() -> None:
    con, out = console()
    backend = FakeBackend()
    backend.present["a"] = module("a", password="pw")
    mgr = SignerManager([backend], con, NoPasswordSource(), rescan_interval=0)
    await mgr.start()
    await mgr.start_scanning()
    for _ in range(100):
        if any("stays locked" in line for line in lines(out)):
            break
        await asyncio.sleep(0.01)
    assert any("stays locked" in line for line in lines(out))
    with pytest.raises(SignerRequestError) as err:
        await mgr.sign(mgr.modules()[0].identity.key_id, SID, DIGEST)
    assert err.value.code is ReturnCode.SIGNER_LOCKED
    await mgr.stop()


async def test_unset_password_variable_is_named() -> None:
    con, out = console()
    backend = FakeBackend()
    backend.present["a"] = module("a", password="pw")
    mgr = SignerManager([backend], con, EnvPasswordSource("SIGNER_PW", {}), rescan_interval=0)
    await mgr.start()
    await mgr.start_scanning()
    for _ in range(100):
        if any("stays locked" in line for line in lines(out)):
            break
        await asyncio.sleep(0.01)
    label = "Signer (01231E6CD82CA571EE, Example ATECC508A Signer)"
    assert f"{label} stays locked: environment variable SIGNER_PW is not set (--password-env)." in (
        lines(out)
    )
    await mgr.stop()


async def test_cancelled_prompt_ends_quietly() -> None:
    con, out = console()
    backend = FakeBackend()
    backend.present["a"] = module("a", password="pw")
    asked: list[str] = []

    def reader(prompt: str) -> str | None:
        asked.append(prompt)
        raise PasswordCancelled("ESC")

    mgr = SignerManager([backend], con, CallablePasswordSource(reader), rescan_interval=0)
    await mgr.start()
    await mgr.start_scanning()
    for _ in range(100):
        if asked:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert len(asked) == 1  # not asked again
    label = "Signer (01231E6CD82CA571EE, Example ATECC508A Signer)"
    assert lines(out)[1:] == [f"{label} requires password."]  # no "stays locked" warning
    await mgr.stop()


async def test_module_text_is_escaped_in_its_label() -> None:
    con, out = console()
    backend = FakeBackend()
    backend.present["a"] = module("a", name="Evil\n[x] Signer (Y) found.\x1b[2J")
    mgr = SignerManager([backend], con, NoPasswordSource(), rescan_interval=0)
    await mgr.start()
    await mgr.start_scanning()
    assert out.getvalue().count("\n") == 2  # "started" and "found": two lines, no more
    assert lines(out)[1] == (
        "Signer (01231E6CD82CA571EE, Evil\\n[x] Signer (Y) found.\\x1b[2J) found."
    )
    await mgr.stop()


async def test_pool_spreads_requests_one_operation_per_module() -> None:
    con, _ = console()
    backend = FakeBackend()
    mods = [module(f"m{i}", sn=f"0123000000000000{i:02X}", delay=0.02) for i in range(3)]
    for m in mods:
        backend.present[m.location] = m
    mgr = SignerManager([backend], con, NoPasswordSource(), rescan_interval=0)
    await mgr.start()
    await mgr.start_scanning()
    key_id = mods[0].identity.key_id
    results = await asyncio.wait_for(
        asyncio.gather(*(mgr.sign(key_id, SID, DIGEST) for _ in range(24))), 20
    )
    for r in results:
        verify(r.signature)
    assert all(m.max_active == 1 for m in mods)
    assert all(m.signed >= 4 for m in mods), [m.signed for m in mods]
    await mgr.stop()


async def test_unavailable_module_dropped_and_request_retried_elsewhere() -> None:
    con, out = console()
    backend = FakeBackend()
    a, b = module("a", sn="0123000000000000AA"), module("b", sn="0123000000000000BB")
    backend.present.update(a=a, b=b)
    mgr = SignerManager([backend], con, NoPasswordSource(), rescan_interval=0)
    await mgr.start()
    await mgr.start_scanning()
    a.fail_next = True
    b.fail_next = True
    # both fail once: first try on one, retry on the other, both dropped -> SIGNING_FAILED
    with pytest.raises(SignerRequestError) as err:
        await mgr.sign(a.identity.key_id, SID, DIGEST)
    assert err.value.code is ReturnCode.SIGNING_FAILED
    assert mgr.modules() == []
    await mgr.rescan()  # still plugged in: re-opened
    assert len(mgr.modules()) == 2
    a.fail_next = True
    results = [await mgr.sign(a.identity.key_id, SID, DIGEST) for _ in range(3)]
    for r in results:
        verify(r.signature)
    assert any("unavailable, dropped" in line for line in lines(out))
    await mgr.stop()


async def test_signer_id_mismatch_and_zero_key_id_selection() -> None:
    con, _ = console()
    backend = FakeBackend()
    backend.present["a"] = module("a")
    mgr = SignerManager([backend], con, NoPasswordSource(), rescan_interval=0)
    await mgr.start()
    await mgr.start_scanning()
    identity = mgr.modules()[0].identity
    with pytest.raises(SignerRequestError) as err:
        mgr.find_identity(identity.key_id, b"\x00\x01")
    assert err.value.code is ReturnCode.SIGNER_NOT_FOUND
    assert mgr.find_identity(bytes(20), SID) == identity
    verify((await mgr.sign(bytes(20), SID, DIGEST)).signature)
    await mgr.stop()


async def test_scan_failure_logged_once_and_recovered() -> None:
    from provserver.signers.base import SignerError

    con, out = console()
    backend = FakeBackend()
    calls = {"n": 0}
    real_scan = backend.scan

    def flaky_scan() -> set[str]:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise SignerError("USB bus gone")
        return real_scan()

    backend.scan = flaky_scan  # type: ignore[method-assign]
    backend.present["a"] = module("a")
    mgr = SignerManager([backend], con, NoPasswordSource(), rescan_interval=0)
    await mgr.start()
    for _ in range(4):
        await mgr.rescan()
    msgs = lines(out)
    assert msgs.count("Signer back-end fake scan failed: USB bus gone") == 1
    assert "Signer (01231E6CD82CA571EE, Example ATECC508A Signer) found." in msgs
    await mgr.stop()
