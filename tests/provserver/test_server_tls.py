"""TLS with client-certificate authentication: a station without a valid certificate is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_server_support import (
    FakeBackend,
    FakeModule,
    Station,
    make_chain,
    make_request,
)

from atcaprov.protocol import CertReply
from provserver.console import Console, NoPasswordSource
from provserver.manager import SignerManager
from provserver.profile import ProfileStore
from provserver.records import MemoryRecordStore
from provserver.server import ProvisioningServer, ServerLimits, ServerStartError, make_tls_context
from provserver.signing import SigningService

CHAIN = make_chain()


def _cert(
    subject_cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer_cn: str,
    *,
    ca: bool,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Line CA", ca_key, ca_key, "Line CA", ca=True)
    _write(d / "ca", ca, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    _write(
        d / "server",
        _cert("server", server_key, ca_key, "Line CA", ca=False, server=True),
        server_key,
    )
    station_key = ec.generate_private_key(ec.SECP256R1())
    _write(d / "station", _cert("station-7", station_key, ca_key, "Line CA", ca=False), station_key)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    _write(d / "rogue", _cert("rogue", rogue_key, rogue_key, "rogue", ca=False), rogue_key)
    return d


def client_context(pki: Path, who: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.crt"))
    if who is not None:
        ctx.load_cert_chain(str(pki / f"{who}.crt"), str(pki / f"{who}.key"))
    return ctx


async def test_client_certificate_required(pki: Path) -> None:
    out = io.StringIO()
    console = Console(out)
    backend = FakeBackend()
    backend.present["m"] = FakeModule(
        "m", CHAIN.signer_key, CHAIN.signer_cert, sn="0123000000000001EE"
    )
    manager = SignerManager([backend], console, NoPasswordSource(), rescan_interval=0)
    service = SigningService(
        manager, ProfileStore([], [CHAIN.profile]), MemoryRecordStore(), console
    )
    tls = make_tls_context(pki / "server.crt", pki / "server.key", pki / "ca.crt")
    server = ProvisioningServer(
        service.handle,
        console,
        host="127.0.0.1",
        port=0,
        tls=tls,
        limits=ServerLimits(tls_handshake_timeout=5),
    )
    await service.open()
    await manager.start()
    await server.start()
    await manager.start_scanning()
    try:
        assert (
            f"Server listening on 127.0.0.1:{server.port} (TLS, client certificate required)."
            in out.getvalue()
        )
        # a station with a certificate from the line CA is served
        good = await Station.connect(server.port, tls=client_context(pki, "station"))
        reply = await good.request(make_request(CHAIN))
        assert isinstance(reply, CertReply)
        await good.close()
        # without a certificate, or with one the CA did not sign: refused and logged
        for who in (None, "rogue"):
            refused = False
            try:
                bad = await Station.connect(server.port, tls=client_context(pki, who))
                await bad.request(make_request(CHAIN), timeout=5)
            except (ssl.SSLError, ConnectionError, OSError, asyncio.IncompleteReadError):
                refused = True
            assert refused, f"station {who} was served"
        for _ in range(100):
            if out.getvalue().count("TLS handshake failed") >= 2:
                break
            await asyncio.sleep(0.02)
        assert out.getvalue().count("TLS handshake failed") >= 2
        # a plain TCP station is refused too
        plain = await Station.connect(server.port)
        with pytest.raises((ConnectionError, OSError, asyncio.TimeoutError)):
            await plain.request(make_request(CHAIN), timeout=5)
        await plain.close()
        assert "station-7" in out.getvalue()  # the served station's certificate is logged
    finally:
        await server.stop()
        await manager.stop()


def test_bad_tls_files_are_a_start_error(pki: Path, tmp_path: Path) -> None:
    with pytest.raises(ServerStartError):
        make_tls_context(tmp_path / "missing.crt", pki / "server.key")
