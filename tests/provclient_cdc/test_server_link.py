"""The server connection: reasons, the retry countdown, reconnect, TLS."""

from __future__ import annotations

import io
import socket
import ssl
import threading
from pathlib import Path

import pytest

from atcaprov.errors import AtcaprovError
from atcaprov.return_codes import ReturnCode
from atcaprov.terminal import ESC
from provclient_cdc.console import NoKeys, OperatorQuit
from provclient_cdc.output import Output
from provclient_cdc.server_link import (
    LinkHooks,
    ServerLink,
    ServerLinkError,
    ServerUnreachableError,
    TlsOptions,
    TlsRefusedError,
    TlsSetupError,
    connect_with_retry,
    make_client_tls,
)
from tests.support.certs import an_hour_ago, self_signed, tls_files, write_cert_and_key
from tests.support.client import ScriptedKeys
from tests.support.keys import new_key
from tests.support.net import free_port


def test_refused_reason() -> None:
    link = ServerLink("127.0.0.1", free_port(), connect_timeout=1.0)
    with pytest.raises(ServerUnreachableError) as info:
        link.connect()
    assert info.value.reason == "connection refused"
    assert not link.connected


def test_countdown_lines_then_give_up() -> None:
    port = free_port()
    buf = io.StringIO()
    link = ServerLink("127.0.0.1", port, connect_timeout=1.0)
    with pytest.raises(ServerUnreachableError):
        connect_with_retry(link, Output(buf), NoKeys(), retries=2, interval=0.05)
    assert buf.getvalue().splitlines() == [
        f"Connecting to 127.0.0.1:{port}...failed (connection refused), retrying in 0.05 s",
        f"Connecting to 127.0.0.1:{port}...failed (connection refused), retrying in 0.05 s",
        f"Connecting to 127.0.0.1:{port}...failed (connection refused)",
    ]


def test_live_countdown_counts_down_in_place() -> None:
    buf = io.StringIO()
    link = ServerLink("127.0.0.1", free_port(), connect_timeout=1.0)
    with pytest.raises(ServerUnreachableError):
        connect_with_retry(link, Output(buf, live=True), NoKeys(), retries=1, interval=1.2)
    text = buf.getvalue()
    assert "retrying in 2 s" in text and "\r" in text and "retrying in 1 s" in text


def test_escape_during_countdown_quits() -> None:
    buf = io.StringIO()
    link = ServerLink("127.0.0.1", free_port(), connect_timeout=1.0)
    with pytest.raises(OperatorQuit):
        connect_with_retry(link, Output(buf), ScriptedKeys([ESC]), retries=5, interval=30)


def test_connects_once_server_appears() -> None:
    port = free_port()
    server = socket.socket()
    buf = io.StringIO()

    def start_later() -> None:
        server.bind(("127.0.0.1", port))
        server.listen(1)

    timer = threading.Timer(0.3, start_later)
    timer.start()
    try:
        link = ServerLink("127.0.0.1", port, connect_timeout=1.0)
        connect_with_retry(link, Output(buf), NoKeys(), retries=20, interval=0.1)
        assert link.connected and link.alive()
        assert buf.getvalue().splitlines()[-1] == f"Connecting to 127.0.0.1:{port}...ok"
        link.close()
    finally:
        timer.join()
        server.close()


def test_hooks_reconnect_when_server_closed_idle_connection() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    server.settimeout(5)
    port = server.getsockname()[1]
    try:
        link = ServerLink("127.0.0.1", port)
        link.connect()
        first, _ = server.accept()
        first.close()  # idle timeout on the server side
        hooks = LinkHooks(link, Output(io.StringIO()), "st")
        threading.Event().wait(0.05)
        hooks.certreq_start()
        second, _ = server.accept()
        with second:
            assert hooks.reconnects == 1
            hooks.certreq_send(b"ping")
            assert second.recv(4) == b"ping"
            second.sendall(b"pong")
            assert hooks.certreq_recv(4) == b"pong"
            second.shutdown(socket.SHUT_RDWR)
            assert hooks.certreq_recv(4) == b""  # closed: the library reports it
        with pytest.raises(ServerLinkError) as info:
            hooks.certreq_send(b"x")
        assert info.value.code is ReturnCode.COMM_ERROR
    finally:
        server.close()


def test_tls_with_station_certificate(tmp_path: Path) -> None:
    tls_files(tmp_path, "Test CA")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    sctx.load_verify_locations(tmp_path / "ca.crt")
    sctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    listener.settimeout(5)
    port = listener.getsockname()[1]
    peers: list[str] = []

    def serve() -> None:
        for _ in range(2):
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with sctx.wrap_socket(raw, server_side=True) as conn:
                    cert = conn.getpeercert()
                    assert cert is not None
                    peers.append(cert["subject"][0][0][1])
                    conn.sendall(conn.recv(5))
            except (ssl.SSLError, OSError):
                peers.append("refused")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        ctx = make_client_tls(
            TlsOptions(
                ca=tmp_path / "ca.crt", cert=tmp_path / "station.crt", key=tmp_path / "station.key"
            )
        )
        link = ServerLink("127.0.0.1", port, tls=ctx, io_timeout=5)
        link.connect()
        threading.Event().wait(0.2)  # TLS 1.3 session tickets arrive: still alive
        assert link.alive()
        link.send(b"hello")
        assert link.recv(5) == b"hello"
        link.close()
        # a CA the server certificate does not chain to: refused with a TLS reason
        other = tmp_path / "other"
        other_key = new_key()
        other_ca = self_signed("Other CA", other_key, not_before=an_hour_ago(), ca=True)
        write_cert_and_key(other, other_ca, other_key)
        bad = ServerLink(
            "127.0.0.1",
            port,
            tls=make_client_tls(TlsOptions(ca=other.with_suffix(".crt"))),
            io_timeout=5,
        )
        with pytest.raises(ServerUnreachableError) as info:
            bad.connect()
        assert info.value.reason.startswith("TLS: server certificate not accepted")
    finally:
        listener.close()
        thread.join(timeout=5)
    assert peers[0] == "station"


def test_tls_options_checked(tmp_path: Path) -> None:
    assert make_client_tls(TlsOptions()) is None
    with pytest.raises(TlsSetupError, match="both --tls-cert and --tls-key"):
        make_client_tls(TlsOptions(cert=tmp_path / "a.crt"))
    with pytest.raises(TlsSetupError, match="cannot load TLS files"):
        make_client_tls(TlsOptions(ca=tmp_path / "missing.crt"))


def test_tls_closed_after_handshake_is_unreachable(tmp_path: Path) -> None:
    # A server that finishes the handshake and hangs up (as one refusing the station
    # certificate after a TLS 1.3 handshake does): reported at connect, not at the first request.
    tls_files(tmp_path, ca_cn="Test CA", peers=("server",))
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            raw, _ = listener.accept()
            with sctx.wrap_socket(raw, server_side=True):
                pass
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        link = ServerLink(
            "127.0.0.1", port, tls=make_client_tls(TlsOptions(ca=tmp_path / "ca.crt")), io_timeout=5
        )
        with pytest.raises(ServerUnreachableError) as info:
            link.connect()
        assert info.value.reason.startswith(
            "TLS: the server closed the connection after the handshake"
        )
        assert isinstance(info.value.__cause__, TlsRefusedError)
        assert isinstance(info.value.__cause__, AtcaprovError)
        assert not link.connected
    finally:
        listener.close()
        thread.join(timeout=5)
