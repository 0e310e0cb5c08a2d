"""A test station for the server: requests for a signer and an asyncio client that sends them.

:func:`request_for` makes the request a station sends for device number ``n`` (a new device key,
a locked config zone), :func:`check_reply` verifies a reply's chain up to the cert info's root and
:class:`Station` is one connection to the server under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from atcaprov.atcacert.keys import public_key_bytes
from atcaprov.certinfo import CertInfo
from atcaprov.protocol import (
    SUPPORTED_VERSIONS,
    CertReply,
    CertRequest,
    DeviceReport,
    MessageReader,
    MessageType,
    ReadyRequest,
    encode,
)
from tests.support.config import config_zone
from tests.support.keys import new_key


def device_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = new_key()
    return key, public_key_bytes(key.public_key())


def request_for(info: CertInfo, n: int, station: str = "load") -> CertRequest:
    """A station's request for device number ``n`` (1..65535: its serial number) and a new key."""
    _, pub = device_key()
    return CertRequest(
        signer_id=info.signer_id,
        signer_key_id=info.signer_key_id,
        device_template_id=info.device_cert_def.template_id,
        signer_template_id=info.signer_cert_def.template_id,
        chain_id=info.device_cert_def.chain_id,
        config_zone=config_zone(n),
        device_public_key=pub,
        station_id=station,
    )


def check_reply(info: CertInfo, request: CertRequest, reply: object) -> x509.Certificate:
    """A CertReply whose chain verifies up to the cert info's root, for the requested key."""
    assert isinstance(reply, CertReply), reply
    assert reply.root_cert == info.root_cert_der
    device = x509.load_der_x509_certificate(reply.device_cert)
    signer = x509.load_der_x509_certificate(reply.signer_cert)
    root = x509.load_der_x509_certificate(info.root_cert_der)
    device.verify_directly_issued_by(signer)  # raises on a bad signature or names
    signer.verify_directly_issued_by(root)
    device_pub = device.public_key()
    signer_pub = signer.public_key()
    assert isinstance(device_pub, ec.EllipticCurvePublicKey)
    assert isinstance(signer_pub, ec.EllipticCurvePublicKey)
    assert public_key_bytes(device_pub) == request.device_public_key
    assert public_key_bytes(signer_pub) == info.signer_public_key
    return device


def ready_request_for(info: CertInfo, station: str = "load") -> ReadyRequest:
    """The readiness question a station asks for ``info``."""
    return ReadyRequest(
        signer_id=info.signer_id,
        signer_key_id=info.signer_key_id,
        device_template_id=info.device_cert_def.template_id,
        signer_template_id=info.signer_cert_def.template_id,
        chain_id=info.device_cert_def.chain_id,
        station_id=station,
    )


class Station:
    """A test client: one connection, send raw bytes or requests, read one reply.

    ``versions`` are the protocol versions it reads (``{1}``: a version-1 station)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        versions: frozenset[int] = SUPPORTED_VERSIONS,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.messages = MessageReader(
            {
                MessageType.CERT_REPLY,
                MessageType.ERROR_REPLY,
                MessageType.READY_REPLY,
                MessageType.REPORT_ACK,
            },
            versions=versions,
        )

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        timeout: float = 5.0,
        versions: frozenset[int] = SUPPORTED_VERSIONS,
    ) -> Station:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=tls), timeout
        )
        return cls(reader, writer, versions=versions)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, request: CertRequest | ReadyRequest, timeout: float = 10.0) -> object:
        await self.send(encode(request))
        return await self.reply(timeout)

    async def report(self, report: DeviceReport, timeout: float = 10.0) -> object:
        """Send a device outcome report (protocol version 2); the server's answer."""
        await self.send(encode(report))
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
