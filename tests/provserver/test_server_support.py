"""Shared helpers for the server tests (no tests here): a signer CA and fake signer modules."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID

from atcaprov.atcacert.keys import public_key_bytes
from atcaprov.atcacert.standard import make_root_cert, make_signer_cert, make_standard_cert_defs
from atcaprov.protocol import CertRequest, MessageReader, MessageType, encode
from provserver.profile import SignerProfile
from provserver.signers.base import (
    SignerBackend,
    SignerIdentity,
    SignerLockedError,
    SignerModule,
    SignerUnavailableError,
    WrongPasswordError,
    check_digest,
)


def make_ca_cert(
    key: ec.EllipticCurvePrivateKey,
    cn: str,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    issuer_cn: str | None = None,
) -> bytes:
    """A CA certificate (DER) for ``key``, self-signed unless an issuer is given."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn or cn)])
    now = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365 * 30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(issuer_key or key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


class FakeModule(SignerModule):
    """A signer module with an in-memory key; counts concurrency; can fail on demand."""

    def __init__(
        self,
        location: str,
        key: ec.EllipticCurvePrivateKey,
        cert_der: bytes,
        *,
        sn: str,
        name: str = "Example ATECC508A Signer",
        password: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self.backend = "fake"
        self.location = location
        self.identity = SignerIdentity(sn, name, cert_der)
        self._key = key
        self._password = password
        self._unlocked = password is None
        self.delay = delay
        self.fail_next = False
        self.active = 0
        self.max_active = 0
        self.signed = 0
        self.closed = False
        self._count_lock = threading.Lock()

    @property
    def password_protected(self) -> bool:
        return self._password is not None

    @property
    def unlocked(self) -> bool:
        return self._unlocked

    def unlock(self, password: str) -> None:
        if password != self._password:
            raise WrongPasswordError("wrong password")
        self._unlocked = True

    def sign_digest(self, digest: bytes) -> bytes:
        digest = check_digest(digest)
        if not self._unlocked:
            raise SignerLockedError("locked")
        with self._count_lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.fail_next or self.closed:
                self.fail_next = False
                raise SignerUnavailableError(f"{self.location} stopped answering")
            der = self._key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
            r, s = utils.decode_dss_signature(der)
            self.signed += 1
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        finally:
            with self._count_lock:
                self.active -= 1

    def close(self) -> None:
        self.closed = True


class FakeBackend(SignerBackend):
    """Modules are whatever is in ``present`` (location -> factory) at scan time."""

    name = "fake"

    def __init__(self) -> None:
        self.present: dict[str, FakeModule] = {}
        self.opened: list[str] = []

    def scan(self) -> set[str]:
        return set(self.present)

    def open(self, location: str) -> SignerModule:
        self.opened.append(location)
        module = self.present[location]
        module.closed = False
        return module


# --------------------------------------------------------------------------------------------
# A signer chain, profiles, requests and a station client
# --------------------------------------------------------------------------------------------

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
SIGNER_ID = bytes.fromhex("C48B")


@dataclass
class Chain:
    root_key: ec.EllipticCurvePrivateKey
    root_cert: bytes
    signer_key: ec.EllipticCurvePrivateKey
    signer_cert: bytes
    profile: SignerProfile

    @property
    def key_id(self) -> bytes:
        return self.profile.signer_key_id


def make_chain(expire_years: int = 10) -> Chain:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_cert = make_root_cert(root_key, common_name="Example Root", now=NOW)
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer_cert = make_signer_cert(
        root_cert,
        root_key,
        public_key_bytes(signer_key.public_key()),
        signer_id=SIGNER_ID,
        now=NOW,
        common_name="Example Signer",
    )
    defs = make_standard_cert_defs(
        root_cert, signer_cert, now=NOW, signer_id=SIGNER_ID, device_expire_years=expire_years
    )
    key_id = SignerIdentity("x", "x", signer_cert).key_id
    profile = SignerProfile(key_id, defs.device, root_cert=root_cert)
    return Chain(root_key, root_cert, signer_key, signer_cert, profile)


def config_zone(sn_tail: int = 1) -> bytes:
    cfg = bytearray(128)
    cfg[0:4] = bytes([0x01, 0x23, 0x1E, 0x6C])
    cfg[4:8] = bytes([0x00, 0x00, 0x50, 0x00])
    cfg[8:13] = bytes([0xD8, 0x2C, (sn_tail >> 8) & 0xFF, sn_tail & 0xFF, 0xEE])
    cfg[16] = 0xC0
    cfg[86] = 0x55
    cfg[87] = 0x00
    cfg[88:90] = b"\xff\xff"
    return bytes(cfg)


def device_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, public_key_bytes(key.public_key())


def make_request(chain: Chain, sn_tail: int = 1, **changes: object) -> CertRequest:
    _, pub = device_key()
    fields: dict[str, object] = {
        "signer_id": SIGNER_ID,
        "signer_key_id": chain.key_id,
        "device_template_id": chain.profile.device_cert_def.template_id,
        "signer_template_id": 1,
        "chain_id": chain.profile.device_cert_def.chain_id,
        "config_zone": config_zone(sn_tail),
        "device_public_key": pub,
        "station_id": "line-1",
    }
    fields.update(changes)
    return CertRequest(**fields)  # type: ignore[arg-type]


class Station:
    """A test client: one connection, send raw bytes or requests, read one reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.messages = MessageReader({MessageType.CERT_REPLY, MessageType.ERROR_REPLY})

    @classmethod
    async def connect(
        cls, port: int, *, tls: ssl.SSLContext | None = None, timeout: float = 5.0
    ) -> Station:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=tls), timeout
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, request: CertRequest, timeout: float = 10.0) -> object:
        await self.send(encode(request))
        return await self.reply(timeout)

    async def reply(self, timeout: float = 10.0) -> object:
        async def read() -> object:
            while True:
                msg = self.messages.next_message()
                if msg is not None:
                    return msg
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("server closed the connection before a reply")
                self.messages.feed(data)

        return await asyncio.wait_for(read(), timeout)

    async def at_eof(self, timeout: float = 5.0) -> bool:
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)
