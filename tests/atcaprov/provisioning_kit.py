"""Test kit for the provisioning flow: a small PKI, an in-memory server and recording hooks.

The in-memory server decodes the request bytes the library sends, builds the device certificate
with the device cert def and a software signer key, and answers with protocol bytes, so the flow
is exercised through its real message path (only the TCP transport is left out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from atcaprov.atcacert import build_cert
from atcaprov.atcacert.keys import public_key_bytes
from atcaprov.atcacert.standard import make_root_cert, make_signer_cert, make_standard_cert_defs
from atcaprov.certinfo import CertInfo
from atcaprov.device import Device
from atcaprov.hooks import BaseHooks
from atcaprov.protocol import (
    CertReply,
    CertRequest,
    ErrorReply,
    MessageReader,
    encode,
)
from atcaprov.return_codes import ReturnCode
from atcaprov.stages import ProvStage, ProvStatus

NOW = datetime(2026, 11, 21, 5, 0, tzinfo=timezone.utc)
SIGNER_ID = b"\xc4\x8b"


@dataclass
class Pki:
    root_key: ec.EllipticCurvePrivateKey
    signer_key: ec.EllipticCurvePrivateKey
    root_cert: bytes
    signer_cert: bytes
    cert_info: CertInfo


def make_pki(signer_id: bytes = SIGNER_ID) -> Pki:
    root_key = ec.generate_private_key(ec.SECP256R1())
    signer_key = ec.generate_private_key(ec.SECP256R1())
    root = make_root_cert(root_key, common_name="Test Root CA", now=NOW)
    signer = make_signer_cert(root, root_key, public_key_bytes(signer_key.public_key()),
                              signer_id=signer_id, now=NOW, common_name="Test Signer")
    defs = make_standard_cert_defs(root, signer, now=NOW)
    info = CertInfo.from_certs(signer, root, "Test Signer", defs.device, defs.signer)
    return Pki(root_key, signer_key, root, signer, info)


def sign_digest(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    der = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class InMemoryServer:
    """Answers request bytes with reply bytes, as provserver would (no checks beyond decoding)."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.requests: list[CertRequest] = []
        self.error: tuple[ReturnCode, str] | None = None
        self.tamper: Callable[[CertReply], CertReply] | None = None

    def handle(self, data: bytes) -> bytes:
        reader = MessageReader()
        reader.feed(data)
        msg = reader.next_message()
        assert isinstance(msg, CertRequest), msg
        self.requests.append(msg)
        if self.error is not None:
            return encode(ErrorReply(self.error[0], self.error[1]))
        info = self.pki.cert_info
        config = msg.config_zone
        device_sn = bytes(config[0:4]) + bytes(config[8:13])
        built = build_cert(
            info.device_cert_def,
            public_key=msg.device_public_key, issue_date=NOW, signer_id=info.signer_id,
            sign=lambda d: sign_digest(self.pki.signer_key, d), device_sn=device_sn,
            ca_public_key=info.signer_public_key,
        )
        reply = CertReply(device_cert=built.cert_der, signer_cert=self.pki.signer_cert)
        if self.tamper is not None:
            reply = self.tamper(reply)
        return encode(reply)


@dataclass
class RecordingHooks(BaseHooks):
    """Hooks talking to an InMemoryServer; records notify calls and errors."""

    server: InMemoryServer
    chunk: int = 1 << 20
    events: list[tuple[ProvStage, ProvStatus]] = field(default_factory=list)
    errors: list[tuple[ReturnCode, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    recv_sizes: list[int] = field(default_factory=list)
    extra_data: dict[int, bytes] = field(default_factory=dict)
    fail_at: ProvStage | None = None
    _pending: bytes = b""

    def certreq_start(self) -> None:
        self.calls.append("start")

    def certreq_send(self, data: bytes) -> None:
        self.calls.append("send")
        self._pending = self.server.handle(data)

    def certreq_recv(self, n: int) -> bytes:
        self.recv_sizes.append(n)
        out, self._pending = self._pending[: min(n, self.chunk)], self._pending[
            min(n, self.chunk):]
        return out

    def certreq_done(self) -> None:
        self.calls.append("done")

    def request_error(self, code: ReturnCode, message: str) -> None:
        self.errors.append((code, message))

    def notify(self, stage: ProvStage, status: ProvStatus) -> None:
        self.events.append((stage, status))

    def write_data_zone(self, device: Device) -> None:
        for slot, data in self.extra_data.items():
            for block in range(len(data) // 32):
                device.write_zone(2, slot, block, 0, data[block * 32 : block * 32 + 32])
