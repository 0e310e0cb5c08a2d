"""Test kit for the client: a small PKI, a threaded TCP certificate server, scripted keys.

:class:`CertServer` speaks the real protocol over 127.0.0.1 (decodes the request, builds the
device certificate with the cert def and a software signer key) and can be told to answer with
an error reply, to close connections, or to go silent, so the client is tested through its real
socket path without starting provserver.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from atcaprov.atcacert import build_cert
from atcaprov.atcacert.keys import public_key_bytes
from atcaprov.atcacert.standard import make_root_cert, make_signer_cert, make_standard_cert_defs
from atcaprov.certinfo import CertInfo
from atcaprov.protocol import (
    CertReply,
    CertRequest,
    ErrorReply,
    MessageReader,
    encode,
)
from atcaprov.return_codes import ReturnCode
from atcaprov.stages import ProvStage, ProvStatus
from provclient_cdc.console import Keys
from provclient_cdc.output import Output

NOW = datetime(2026, 11, 21, 5, 0, tzinfo=timezone.utc)
SIGNER_ID = b"\xc4\x8b"


@dataclass
class Pki:
    signer_key: ec.EllipticCurvePrivateKey
    root_cert: bytes
    signer_cert: bytes
    cert_info: CertInfo

    def write_certinfo(self, folder: Path) -> Path:
        path = folder / "atcaprov_cert_info_0.c"
        path.write_text(self.cert_info.to_c_source(), encoding="utf-8")
        return path


def make_pki() -> Pki:
    root_key = ec.generate_private_key(ec.SECP256R1())
    signer_key = ec.generate_private_key(ec.SECP256R1())
    root = make_root_cert(root_key, common_name="Test Root CA", now=NOW)
    signer = make_signer_cert(root, root_key, public_key_bytes(signer_key.public_key()),
                              signer_id=SIGNER_ID, now=NOW, common_name="Test Signer")
    defs = make_standard_cert_defs(root, signer, now=NOW)
    info = CertInfo.from_certs(signer, root, "Test Signer", defs.device, defs.signer)
    return Pki(signer_key, root, signer, info)


def _sign(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    der = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class CertServer:
    """A threaded certificate server on 127.0.0.1 (one thread per connection, bounded reads)."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.error: tuple[ReturnCode, str] | None = None
        self.silent = False
        self.close_after_reply = False
        self.requests: list[CertRequest] = []
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        reader = MessageReader()
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                reader.feed(data)
                msg = reader.next_message()
                if msg is None:
                    continue
                assert isinstance(msg, CertRequest)
                self.requests.append(msg)
                if self.silent:
                    continue
                conn.sendall(self._answer(msg))
                if self.close_after_reply:
                    return

    def _answer(self, msg: CertRequest) -> bytes:
        if self.error is not None:
            return encode(ErrorReply(self.error[0], self.error[1]))
        info = self.pki.cert_info
        config = msg.config_zone
        device_sn = bytes(config[0:4]) + bytes(config[8:13])
        built = build_cert(
            info.device_cert_def,
            public_key=msg.device_public_key, issue_date=NOW, signer_id=info.signer_id,
            sign=lambda d: _sign(self.pki.signer_key, d), device_sn=device_sn,
            ca_public_key=info.signer_public_key,
        )
        return encode(CertReply(device_cert=built.cert_der, signer_cert=self.pki.signer_cert))

    def drop_connections(self) -> None:
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue
        self._conns.clear()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)


class ScriptedKeys(Keys):
    """Keys given in advance; each is handed out once ``when()`` allows (default: at once)."""

    def __init__(self, keys: list[str] | None = None) -> None:
        super().__init__()
        self.script: list[tuple[str, Callable[[], bool] | None]] = [
            (k, None) for k in (keys or [])
        ]
        self.lock = threading.Lock()

    def add(self, key: str, when: Callable[[], bool] | None = None) -> None:
        with self.lock:
            self.script.append((key, when))

    def _read(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if self.script and (self.script[0][1] is None or self.script[0][1]()):
                    return [self.script.pop(0)[0]]
            if time.monotonic() >= deadline:
                return []
            time.sleep(min(0.01, max(deadline - time.monotonic(), 0)))


class CapturingOutput(Output):
    """An Output into a StringIO, with an optional callback per stage notification."""

    def __init__(self, *, json_lines: bool = False) -> None:
        self.text = io.StringIO()
        self.json_text = io.StringIO()
        super().__init__(self.text, self.json_text if json_lines else None)
        self.on_stage: Callable[[object, object], None] | None = None

    def stage(self, stage: ProvStage, status: ProvStatus) -> None:
        if self.on_stage is not None:
            self.on_stage(stage, status)
        super().stage(stage, status)

    def lines(self) -> list[str]:
        return self.text.getvalue().splitlines()
