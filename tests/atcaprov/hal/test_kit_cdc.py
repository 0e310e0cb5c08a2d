"""kit-cdc driver: scripted fake port (dialects, errors) and a real pty round trip with pyserial."""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import serial

from atcaprov import kit_protocol as kp
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.kit_firmware import KitFirmware
from atcaprov.errors import CommError, CommTimeoutError, NoDevicesError
from atcaprov.hal import open_hal
from atcaprov.hal.kit_cdc import KitCdcHal
from atcaprov.hal.kit_hal import KitTransportError

Responder = Callable[[bytes], bytes]


class FakePort:
    """A pyserial-like port whose kit answers each complete line through ``responder``."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.decoder = kp.KitLineDecoder()
        self.sent: list[bytes] = []
        self.rx = bytearray()
        self.timeout: float | None = None
        self.kwargs: dict[str, Any] = {}
        self.closed = False
        self.broken = False

    def write(self, data: bytes) -> int:
        if self.broken:
            raise serial.SerialException("device disconnected")
        for line in self.decoder.feed(data):
            self.sent.append(line)
            self.rx += self.responder(line)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        if self.broken:
            raise serial.SerialException("read failed: device disconnected")
        if not self.rx and self.timeout:
            time.sleep(min(self.timeout, 0.01))
        out = bytes(self.rx[:size])
        del self.rx[:size]
        return out

    @property
    def in_waiting(self) -> int:
        if self.broken:
            raise serial.SerialException("device disconnected")
        return len(self.rx)

    def close(self) -> None:
        self.closed = True


def firmware_responder(chip: Atecc508a | None = None) -> Responder:
    chip = chip or Atecc508a()
    fw = KitFirmware(lambda: chip)
    return fw.handle_line


def open_fake(responder: Responder, **kwargs: Any) -> tuple[KitCdcHal, FakePort]:
    port = FakePort(responder)

    def factory(url: str, **kw: Any) -> FakePort:
        port.kwargs = {"url": url, **kw}
        port.timeout = kw["timeout"]
        return port

    hal = KitCdcHal("fake://kit", serial_factory=factory, timeout=0.2, **kwargs)
    return hal, port


class TimeoutCountingPort(FakePort):
    """Counts timeout changes: on a real tty each one is a tcsetattr (docs/hil.md)."""

    def __init__(self, responder: Responder) -> None:
        self.timeout_changes = 0
        super().__init__(responder)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "timeout":
            self.__dict__["timeout_changes"] = self.__dict__.get("timeout_changes", 0) + 1
        super().__setattr__(name, value)


def test_request_does_not_reconfigure_the_port() -> None:
    # found through /dev/ttyACM0 in the HIL guest: a timeout change per read (tcsetattr) halved
    # the round trips; a reply's rest is taken with in_waiting, the timeout stays put
    port = TimeoutCountingPort(firmware_responder())

    def factory(url: str, **kw: Any) -> FakePort:
        port.timeout = kw["timeout"]
        return port

    with KitCdcHal("fake://kit", serial_factory=factory, timeout=0.2) as hal:
        before = port.timeout_changes
        for _ in range(20):
            assert kp.parse_device_reply(hal.request(kp.format_discover(0), "discover"))
        assert port.timeout_changes == before


def test_opens_115200_8n1_with_timeouts() -> None:
    hal, port = open_fake(firmware_responder())
    assert port.kwargs["baudrate"] == 115200
    assert port.kwargs["bytesize"] == 8 and port.kwargs["parity"] == "N"
    assert port.kwargs["stopbits"] == 1
    assert port.kwargs["timeout"] == 0.2 and port.kwargs["write_timeout"] == 0.2
    assert port.kwargs["exclusive"] is True
    assert port.sent == [b"board:device(00)", b"s:physical:select(C0)"]
    assert (hal.device_type, hal.address, hal.dialect) == ("ECC508A", 0xC0, kp.KitDialect.LEGACY)
    hal.close()
    assert port.closed


def test_auto_dialect_falls_back_to_current() -> None:
    fw = firmware_responder()

    def legacy_refused(line: bytes) -> bytes:
        if line.startswith(b"s:"):
            return kp.format_kit_reply(kp.KitStatus.COMMAND_NOT_VALID)
        return fw(line)

    hal, port = open_fake(legacy_refused)
    assert hal.dialect is kp.KitDialect.CURRENT
    assert port.sent[1:] == [b"s:physical:select(C0)", b"E:physical:select(C0)"]
    assert Device(hal).info() == b"\x00\x00\x50\x00"
    assert port.sent[-3:] == [b"d:w()", b"d:t(0730000000035D)", b"d:i()"]


def test_forced_dialect_refused_is_no_devices() -> None:
    def refuse_all_selects(line: bytes) -> bytes:
        if b"select" in line:
            return b"03()\n"
        return b"ECC508A TWI 00(C0)\n"

    with pytest.raises(NoDevicesError, match=r"refused to select it.*COMMAND_NOT_VALID"):
        open_fake(refuse_all_selects, dialect="2016")


def test_no_device_at_index() -> None:
    with pytest.raises(NoDevicesError, match="no device at index 01"):
        open_fake(lambda line: b"no device\n", device_index=1)


def test_garbage_discovery_reply() -> None:
    with pytest.raises(kp.KitFrameError, match="discovery reply"):
        open_fake(lambda line: b"hello there\n")


def test_nuls_and_crlf_in_replies_tolerated() -> None:
    fw = firmware_responder()

    def noisy(line: bytes) -> bytes:
        return b"\x00" + fw(line).replace(b"\n", b"\r\n") + b"\x00\x00"

    hal, _ = open_fake(noisy)
    assert Device(hal).info() == b"\x00\x00\x50\x00"


def test_kit_error_status_on_talk() -> None:
    fw = firmware_responder()

    def comm_fail_on_talk(line: bytes) -> bytes:
        return b"F0()\n" if line.startswith(b"s:t(") else fw(line)

    hal, _ = open_fake(comm_fail_on_talk)
    with pytest.raises(kp.KitStatusError, match=r"talk opcode 0x30.*COMM_FAIL") as info:
        hal.transact(bytes.fromhex("0730000000035D"), 2)
    assert info.value.kit_status == 0xF0


def test_silent_kit_times_out() -> None:
    started = time.monotonic()
    with pytest.raises(CommTimeoutError, match="no kit reply to discover"):
        open_fake(lambda line: b"")
    assert time.monotonic() - started < 5


def test_partial_reply_times_out_with_what_arrived() -> None:
    fw = firmware_responder()
    hal, port = open_fake(fw)
    port.responder = lambda line: b"00(0411"
    with pytest.raises(CommTimeoutError, match=r"received so far: b'00\(0411'"):
        hal.wake()
    port.responder = fw  # the stale partial line does not poison the next request
    assert hal.wake() == bytes.fromhex("04113343")


def test_late_reply_after_timeout_is_drained() -> None:
    fw = firmware_responder()
    hal, port = open_fake(fw)
    port.responder = lambda line: b""
    with pytest.raises(CommTimeoutError):
        hal.transact(bytes.fromhex("0730000000035D"), 2)
    port.rx += b"00(07000050000391)\n"  # the late answer to the Info that timed out
    port.responder = fw
    assert hal.wake() == bytes.fromhex("04113343")


def test_disconnect_is_transport_error() -> None:
    hal, port = open_fake(firmware_responder())
    port.broken = True
    with pytest.raises(KitTransportError, match="fake://kit"):
        hal.wake()
    hal.close()
    with pytest.raises(KitTransportError, match="closed"):
        hal.wake()


def test_unopenable_url() -> None:
    with pytest.raises(NoDevicesError, match="cannot open kit port '/nonexistent/tty'"):
        KitCdcHal("/nonexistent/tty", timeout=0.2)


# ---- a real pty: pyserial on the slave, a kit loop on the master ---------------------------------
@pytest.fixture
def pty_kit() -> Iterator[tuple[str, Atecc508a, list[bytes]]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    chip = Atecc508a()
    fw = KitFirmware(lambda: chip)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        decoder = kp.KitLineDecoder()
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            for line in decoder.feed(data):
                seen.append(line)
                os.write(master, fw.handle_line(line))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield os.ttyname(slave), chip, seen
    finally:
        stop.set()
        thread.join(5)
        os.close(master)
        os.close(slave)


def test_round_trip_over_real_pty(pty_kit: tuple[str, Atecc508a, list[bytes]]) -> None:
    path, chip, seen = pty_kit
    with open_hal("kit-cdc", url=path, timeout=2.0) as hal:
        assert isinstance(hal, KitCdcHal)
        dev = Device(hal)
        assert dev.info() == b"\x00\x00\x50\x00"
        assert dev.read_serial_number() == chip.serial_number
        assert dev.read_config_zone() == chip.config_zone
        assert dev.random() == b"\xff\xff\x00\x00" * 8  # config not locked yet
    assert seen[:4] == [
        b"board:device(00)",
        b"s:physical:select(C0)",
        b"s:w()",
        b"s:t(0730000000035D)",
    ]


def test_second_program_on_a_real_pty_is_told_board_in_use(
    pty_kit: tuple[str, Atecc508a, list[bytes]],
) -> None:
    path, chip, _ = pty_kit
    first = KitCdcHal(path, timeout=2.0)
    try:
        with pytest.raises(kp.KitBoardInUseError, match="board in use by another program"):
            KitCdcHal(path, timeout=2.0)
        assert Device(first).read_serial_number() == chip.serial_number  # first one unharmed
    finally:
        first.close()
    with KitCdcHal(path, timeout=2.0) as again:  # free once the first program let go
        assert Device(again).read_serial_number() == chip.serial_number


@pytest.mark.parametrize(
    ("errno_value", "in_use"), [(errno.EAGAIN, True), (errno.EBUSY, True), (errno.ENOENT, False)]
)
def test_port_in_use_errors(errno_value: int, in_use: bool) -> None:
    def factory(url: str, **kw: Any) -> FakePort:
        raise serial.SerialException(errno_value, f"could not open port {url}")

    kind = kp.KitBoardInUseError if in_use else NoDevicesError
    with pytest.raises(kind):
        KitCdcHal("/dev/ttyACM0", serial_factory=factory, timeout=0.2)


# ---- kit text never reaches a message or a log line raw -----------------------------------------
CLEAR_AND_LIE = b"\x1b[2J\x1b[HProvisioning successful!\x07"


@pytest.mark.parametrize(
    "kit",
    [
        lambda line: CLEAR_AND_LIE + b"\n",  # garbage discovery reply
        lambda line: b"no device " + CLEAR_AND_LIE + b"\n",  # "no device", with extras
        lambda line: CLEAR_AND_LIE,  # a partial line, then silence
    ],
)
def test_kit_text_in_driver_errors_is_escaped(kit: Responder) -> None:
    with pytest.raises(CommError) as info:
        open_fake(kit)
    message = str(info.value)
    assert message.isprintable() and "\x1b" not in message, message
    assert "\\x1b[2J" in message  # shown, escaped


def test_kit_text_in_driver_log_lines_is_escaped(caplog: pytest.LogCaptureFixture) -> None:
    fw = firmware_responder()
    hal, port = open_fake(fw)
    port.responder = lambda line: fw(line) + CLEAR_AND_LIE + b"\r\n"  # an extra line each time
    with caplog.at_level(logging.DEBUG, logger="atcaprov.hal.kit_hal"):
        assert hal.wake() == bytes.fromhex("04113343")
    logged = [r.getMessage() for r in caplog.records if "extra" in r.getMessage()]
    assert logged and all(m.isprintable() and "\x1b" not in m for m in logged), logged


@contextmanager
def socket_kit(quit_at: Callable[[bytes], bool] = lambda line: False) -> Iterator[int]:
    """A kit (the emulator's firmware) on a TCP port of 127.0.0.1, for one connection: yields
    the port. ``quit_at(line)``: the kit goes away at that line, unanswered."""
    responder = firmware_responder()
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        decoder = kp.KitLineDecoder()
        with conn:
            while data := conn.recv(4096):
                for line in decoder.feed(data):
                    if quit_at(line):
                        return
                    conn.sendall(responder(line))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        thread.join(5)


def test_a_reply_over_socket_url_comes_in_one_piece() -> None:
    # pyserial's socket:// port answers in_waiting with 0 or 1: taking "the rest" by in_waiting
    # read a reply two bytes per read (a 32-byte Read's reply: ~40 reads, each a select and a
    # recv); the rest is taken with one zero-timeout read instead
    reads: list[int] = []

    class Counting:
        def __init__(self, inner: Any) -> None:
            self.__dict__["inner"] = inner

        def read(self, size: int = 1) -> bytes:
            data: bytes = self.inner.read(size)
            reads.append(len(data))
            return data

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def __setattr__(self, name: str, value: Any) -> None:
            setattr(self.inner, name, value)

    def factory(url: str, **kw: Any) -> Counting:
        return Counting(serial.serial_for_url(url, **kw))

    with (
        socket_kit() as port_number,
        KitCdcHal(f"socket://127.0.0.1:{port_number}", serial_factory=factory, timeout=2.0) as hal,
    ):
        device = Device(hal)
        with device.session():
            reads.clear()
            assert len(device.read_zone(0, 0, 0, 0, 32)) == 32
        assert len(reads) <= 4, reads  # the first byte, then the rest (per reply)
        assert device.read_zone(0, 0, 0, 0, 32)[:4] == device.read_zone(0, 0, 0, 0, 4)


def test_a_plain_socket_url_is_a_tcp_connection_of_its_own() -> None:
    from atcaprov.hal.kit_cdc import _plain_socket_address

    assert _plain_socket_address("socket://127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert _plain_socket_address("SOCKET://localhost:1") == ("localhost", 1)
    # pyserial options, a path, no port, a bad port, a serial device: pyserial opens them
    assert _plain_socket_address("socket://127.0.0.1:5000?logging=debug") is None
    assert _plain_socket_address("socket://127.0.0.1:5000/x") is None
    assert _plain_socket_address("socket://127.0.0.1") is None
    assert _plain_socket_address("socket://127.0.0.1:99999") is None
    assert _plain_socket_address("/dev/ttyACM0") is None


def test_a_socket_kit_that_closes_the_link_is_a_transport_error() -> None:
    # the first command: the kit goes away unanswered
    with (
        socket_kit(quit_at=lambda line: line[1:4] == b":t(") as port_number,
        KitCdcHal(f"socket://127.0.0.1:{port_number}", timeout=2.0) as hal,
    ):
        assert hal._tcp is not None  # not pyserial's handler
        device = Device(hal, wake_retries=0, crc_retries=0)
        with pytest.raises(KitTransportError, match="closed the link"):
            device.read_zone(0, 0, 0, 0, 32)


def test_no_kit_at_a_socket_url_is_no_devices() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port_number = probe.getsockname()[1]
    with pytest.raises(NoDevicesError, match="cannot open kit port"):
        KitCdcHal(f"socket://127.0.0.1:{port_number}", timeout=1.0)
