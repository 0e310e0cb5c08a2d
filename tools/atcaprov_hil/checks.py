"""The HIL tests, run inside the guest through the real drivers (docs/hil.md).

Each check prints ``HIL-PASS name: detail`` or ``HIL-FAIL name: why``; rates are printed as
``HIL-MEASURE``. The servers behind the gadgets are the project's emulators: the virtual kit
board (:class:`~atcaprov.emulator.kit_board.VirtualKitBoard`, ``tty=/dev/ttyGS0``) and the
emulated HID kit (:class:`~atcaprov.emulator.kit_hid_device.EmulatedKitHidDevice` served by
:class:`~atcaprov.emulator.kit_hid_gadget.KitHidGadget` on ``/dev/hidg0``). The programs are
the real ``provserver`` and ``provclient-cdc`` (subprocesses, from the host's venv).
"""

from __future__ import annotations

import fcntl
import importlib
import os
import re
import select
import struct
import termios
import threading
import time
import traceback
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from serial.tools import list_ports

from atcaprov import kit_protocol as kp
from atcaprov.emulator.chip import Atecc508a
from atcaprov.emulator.kit_board import VirtualKitBoard
from atcaprov.emulator.kit_hid_device import EmulatedKitHidDevice
from atcaprov.emulator.kit_hid_gadget import KitHidGadget
from atcaprov.hal.kit_cdc import KitCdcHal
from atcaprov.hal.kit_hal import KitHal
from atcaprov.hal.kit_hid import KitHidHal, enumerate_kits
from atcaprov_demo import (
    DemoLayout,
    Processes,
    cli_command,
    create_signer,
    run_client,
    start_server,
    verify_chains,
)
from provclient_cdc.boards import find_kit_ports

from .gadget import CDC_KIT, HID_KIT, Gadget, udcs, wait_for

ROUND_TRIPS = 300
ROUND_TRIP_BUDGET_S = 20.0
PASSWORD_VAR = "HIL_SIGNER_PASSWORD"
PASSWORD = "hil-module-password"
REMOVE_LINE = "Provisioning successful! Please remove board..."
SIGNER_READY = r"Signer \(.*\) (found|password accepted, ready)\."


class CheckFailed(AssertionError):
    """A HIL check did not hold."""


def check(condition: bool, text: str) -> None:
    if not condition:
        raise CheckFailed(text)


class Run:
    """The state shared by the checks: gadgets, servers, folders, results."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.passed: list[str] = []
        self.failed: list[str] = []
        names = udcs()
        if len(names) < 2:
            raise RuntimeError(f"need two dummy UDCs, found {names}")
        self.cdc = Gadget(CDC_KIT, names[0])
        self.hid = Gadget(HID_KIT, names[1])
        self.procs = Processes()
        self.board: VirtualKitBoard | None = None
        self.hid_chip = Atecc508a()
        self.hid_kit = EmulatedKitHidDevice(lambda _path: self.hid_chip, pad_reports=True)
        self.hid_server: KitHidGadget | None = None
        self.acm: str | None = None
        os.environ[PASSWORD_VAR] = PASSWORD  # --password-env of signer create and provserver

    # -- bookkeeping --------------------------------------------------------------------------
    def run(self, name: str, fn: Callable[[], str]) -> None:
        started = time.monotonic()
        try:
            detail = fn()
        except Exception as exc:  # every failure is reported; the next check still runs
            self.failed.append(name)
            say(f"HIL-FAIL {name}: {type(exc).__name__}: {exc}")
            for line in traceback.format_exc().splitlines()[-12:]:
                say(f"    {line}")
            return
        self.passed.append(name)
        say(f"HIL-PASS {name} ({time.monotonic() - started:.1f} s): {detail}")

    # -- the CDC board ------------------------------------------------------------------------
    def new_board(self, name: str, chips: int, timing_scale: float = 0.0) -> VirtualKitBoard:
        """A board with fresh chips serving /dev/ttyGS0 (the previous one stopped first)."""
        if self.board is not None:
            self.board.stop()
        self.board = VirtualKitBoard(
            self.base / f"boards-{name}", chips=chips, tty="/dev/ttyGS0", timing_scale=timing_scale
        )
        self.board.start()
        return self.board

    def acm_device(self, timeout: float = 20.0) -> str:
        """The /dev/ttyACM* list_ports shows for the CDC gadget (VID, PID, serial)."""
        found: list[str] = []

        def listed() -> bool:
            found[:] = [
                p.device
                for p in list_ports.comports()
                if p.vid == CDC_KIT.vid
                and p.pid == CDC_KIT.pid
                and p.serial_number == CDC_KIT.serial
            ]
            return bool(found)

        wait_for(listed, timeout, "the CDC gadget in serial.tools.list_ports")
        return found[0]

    def operator_swap(self, next_chip: bool, pause: float = 0.5) -> None:
        """Pull the board (UDC emptied, chip powered off), plug it back (next chip or same)."""
        assert self.board is not None
        self.cdc.unplug()
        self.board.unplug()
        time.sleep(pause)
        self.board.replug(next_chip=next_chip)
        self.cdc.plug()


def say(text: str) -> None:
    print(text, flush=True)


def rate(hal: KitHal, count: int = ROUND_TRIPS) -> tuple[float, int]:
    """Kit line round trips per second (``b:device(00)``), bounded in count and time; bad."""
    bad = 0
    done = 0
    started = time.monotonic()
    line = kp.format_discover(0)
    while done < count and time.monotonic() - started < ROUND_TRIP_BUDGET_S:
        reply = hal.request(line, "discover")
        if kp.parse_device_reply(reply) is None:
            bad += 1
        done += 1
    return done / (time.monotonic() - started), bad


def raw_tty_rate(path: str, count: int = ROUND_TRIPS) -> float:
    """The same round trips with plain os.read/os.write on the raw tty (no driver, no pyserial)."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)
        line = kp.format_discover(0)
        done = 0
        started = time.monotonic()
        while done < count and time.monotonic() - started < ROUND_TRIP_BUDGET_S:
            os.write(fd, line)
            got = b""
            while not got.endswith(b"\n"):
                ready, _, _ = select.select([fd], [], [], 3.0)
                check(bool(ready), f"no reply on {path}")
                got += os.read(fd, 4096)
            done += 1
        return done / (time.monotonic() - started)
    finally:
        os.close(fd)


@contextmanager
def kit_cdc(url: str, ports: list[Any] | None = None) -> Iterator[KitCdcHal]:
    import serial

    def factory(*args: Any, **kwargs: Any) -> Any:
        port = serial.serial_for_url(*args, **kwargs)
        if ports is not None:
            ports.append(port)
        return port

    hal = KitCdcHal(url, serial_factory=factory)
    try:
        yield hal
    finally:
        hal.close()


# --------------------------------------------------------------------------------------------
# CDC checks
# --------------------------------------------------------------------------------------------
def cdc_enumerates(run: Run) -> str:
    run.cdc.create()  # makes /dev/ttyGS0 (the device side): the board serves it before plug
    wait_for(lambda: os.path.exists("/dev/ttyGS0"), 10, "/dev/ttyGS0")
    run.new_board("enum", 1)
    run.cdc.plug()
    run.acm = run.acm_device()
    kits = [p.url for p in find_kit_ports()]
    check(run.acm in kits, f"provclient's find_kit_ports does not list {run.acm}: {kits}")
    info = next(p for p in list_ports.comports() if p.device == run.acm)
    return (
        f"{run.acm} VID:PID {info.vid:04X}:{info.pid:04X} serial {info.serial_number}"
        f" ({info.description})"
    )


def cdc_dtr_rts(run: Run) -> str:
    assert run.acm is not None
    ports: list[Any] = []
    with kit_cdc(run.acm, ports) as hal:
        raw = fcntl.ioctl(ports[0].fileno(), termios.TIOCMGET, struct.pack("I", 0))
        bits = struct.unpack("I", raw)[0]
        device = hal.device_type
    check(bool(bits & termios.TIOCM_DTR), f"DTR not asserted after kit-cdc open (0x{bits:x})")
    check(bool(bits & termios.TIOCM_RTS), f"RTS not asserted after kit-cdc open (0x{bits:x})")
    return f"kit-cdc open asserts DTR and RTS on {run.acm} (modem bits 0x{bits:x}); {device}"


def cdc_round_trips(run: Run) -> str:
    assert run.acm is not None
    results = []
    with kit_cdc(run.acm) as hal:
        acm_rate, bad = rate(hal)
    check(bad == 0, f"{bad} bad replies over {run.acm}")
    results.append(f"{run.acm} {acm_rate:.0f}/s")
    say(f"HIL-MEASURE round-trips {run.acm} {acm_rate:.0f}/s bad {bad}")
    raw_rate = raw_tty_rate(run.acm)
    say(f"HIL-MEASURE round-trips {run.acm}-raw-os-read-write {raw_rate:.0f}/s")
    results.append(f"{run.acm} without pyserial {raw_rate:.0f}/s")
    for label, kwargs in (("socket://", {"listen": ("127.0.0.1", 0)}), ("pty", {"pty": True})):
        folder = run.base / f"boards-rate-{label[:3]}"
        with VirtualKitBoard(folder, chips=1, **kwargs) as board, kit_cdc(board.url) as hal:
            r, bad = rate(hal)
        check(bad == 0, f"{bad} bad replies over {label}")
        say(f"HIL-MEASURE round-trips {label} {r:.0f}/s bad {bad}")
        results.append(f"{label} {r:.0f}/s")
    return "kit line round trips: " + ", ".join(results) + " (guest, TCG)"


def two_parts_discovered(run: Run, layout: DemoLayout, port: int) -> str:
    board = run.new_board("two", 2)
    swaps: list[threading.Thread] = []

    def on_line(stream: str, line: str) -> None:
        if stream == "stderr" and line == REMOVE_LINE and len(swaps) < 1:
            t = threading.Thread(target=run.operator_swap, args=(True,), daemon=True)
            swaps.append(t)
            t.start()

    client = run_client(run.procs, layout, port, None, 2, timeout=240, on_line=on_line)
    for t in swaps:
        t.join(10)
    check(client.returncode == 0, f"client exit {client.returncode}: {client.lines[-5:]}")
    check([r["result"] for r in client.results] == ["ok", "ok"], f"{client.results}")
    serials = [r["serial_number"] for r in client.results]
    check(len(set(serials)) == 2, f"the same part twice: {serials}")
    check(all(e.chip.data_locked for e in board.chips), "a chip on the board is not locked")
    found = [r["board"] for r in client.results]
    check(all(b.startswith("/dev/ttyACM") for b in found), f"boards found: {found}")
    chains = verify_chains(layout)
    check(chains.failures == [], f"chain failures: {chains.failures}")
    check(set(serials) <= set(chains.verified), f"{serials} not in {chains.verified}")
    return (
        f"2 parts provisioned over discovered {', '.join(found)}, chains verified"
        f" ({chains.tool}), {client.wall_s:.1f} s"
    )


def unplug_mid_run(run: Run, layout: DemoLayout, port: int) -> str:
    run.new_board("unplug", 1, timing_scale=2.0)
    pulled = threading.Event()

    def pull_and_replug() -> None:
        assert run.board is not None
        run.cdc.unplug()
        run.board.unplug()
        time.sleep(3.0)  # the client reports the removal, then waits for a board
        run.board.replug(next_chip=False)
        run.cdc.plug()

    def on_line(stream: str, line: str) -> None:
        if line == "Requesting certificates...done" and not pulled.is_set():
            pulled.set()
            threading.Thread(target=pull_and_replug, daemon=True).start()

    client = run_client(run.procs, layout, port, None, 2, timeout=240, on_line=on_line)
    check(pulled.is_set(), "never reached the certificate request")
    check(len(client.results) == 2, f"{client.results} / {client.lines[-8:]}")
    first, second = client.results
    check(first["result"] == "removed", f"first result {first}")
    label = first["stage_label"]
    check(f'    Board removed during "{label}".' in client.lines, f"no removal line for {label}")
    check(f"    Part state: {first['part_state_text']}" in client.lines, "no part state line")
    check(second["result"] == "ok", f"after replug: {second}")
    check(second["serial_number"] == first["serial_number"], "not the same part after replug")
    return (
        f"pulled during {label!r} (part state {first['part_state']}), resumed after replug:"
        f" {second['result']}"
    )


# --------------------------------------------------------------------------------------------
# HID checks
# --------------------------------------------------------------------------------------------
def hid_enumerates(run: Run) -> str:
    run.hid_kit.open_path(b"hidg0")
    run.hid.create()
    run.hid.plug()  # f_hid makes /dev/hidg0 when the gadget binds to its UDC
    wait_for(lambda: os.path.exists("/dev/hidg0"), 10, "/dev/hidg0")
    run.hid_server = KitHidGadget("/dev/hidg0", run.hid_kit)
    run.hid_server.start()
    details = []
    for name in ("hidraw", "hid"):
        module = importlib.import_module(name)
        wait_for(
            lambda m=module: bool(m.enumerate(HID_KIT.vid, HID_KIT.pid)),
            20,
            f"{name}: the HID gadget enumerated",
        )
        [raw] = module.enumerate(HID_KIT.vid, HID_KIT.pid)
        [kit] = enumerate_kits(HID_KIT.vid, HID_KIT.pid, hid_module=module)
        check(kit.serial_number == HID_KIT.serial, f"{name}: serial {kit.serial_number!r}")
        hal = KitHidHal(path=kit.path, device_factory=module.device)
        try:
            r, bad = rate(hal)
            device = hal.device_type
        finally:
            hal.close()
        check(bad == 0, f"{name}: {bad} bad replies")
        say(
            f"HIL-MEASURE round-trips hidapi-{name} {r:.0f}/s bad {bad} usage_page"
            f" 0x{raw.get('usage_page', -1):04X} interface {raw.get('interface_number')}"
        )
        details.append(
            f"{name}: {kit.path!r} {device}, usage page"
            f" 0x{raw.get('usage_page', -1):04X}, {r:.0f} round trips/s"
        )
    return "; ".join(details)


def hid_empty_reads(run: Run) -> str:
    """How each hidapi module hands over a reply: count the empty reads before it."""
    out = []
    for name in ("hidraw", "hid"):
        module = importlib.import_module(name)
        [raw] = module.enumerate(HID_KIT.vid, HID_KIT.pid)
        dev = module.device()
        dev.open_path(raw["path"])
        try:
            empties = 0
            dev.write(b"\x00" + kp.format_discover(0).ljust(64, b"\x00"))
            for _ in range(200):
                data = dev.read(64, 1000)
                if data:
                    break
                empties += 1
            check(bool(data), f"{name}: no reply")
        finally:
            dev.close()
        out.append(f"{name}: {empties} empty read(s) before the reply")
    return "; ".join(out)


def hid_signer_create(run: Run, layout: DemoLayout) -> str:
    args = [
        "signer",
        "create",
        "--backend",
        "hid",
        "--hidapi",
        "hidraw",
        "--name",
        "HIL Signer",
        "--password-env",
        PASSWORD_VAR,
        "--root-dir",
        str(layout.root_dir),
        "--root-cn",
        "HIL Root CA",
        "--data-dir",
        str(layout.data_dir),
        "--certinfo-out",
        str(layout.certinfo),
    ]
    proc = run.procs.start(
        "provserver signer create",
        [*cli_command("provserver", "provserver.cli"), *args],
        layout.log("signer-create"),
        cwd=layout.folder,
    )
    code = proc.wait(240)
    check(code == 0, f"signer create exit {code}: {proc.text()[-5:]}")
    check(
        run.hid_chip.config_locked and run.hid_chip.data_locked,
        "the module's chip is not locked after create",
    )
    return proc.text()[-1] if proc.text() else "created"


def hid_server(run: Run, layout: DemoLayout, hidapi: str) -> tuple[Any, int]:
    """``provserver --signers hid`` on a free loopback port, once it found the module."""
    argv = [
        *cli_command("provserver", "provserver.cli"),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        str(layout.data_dir),
        "--signers",
        "hid",
        "--hidapi",
        hidapi,
        "--password-env",
        PASSWORD_VAR,
    ]
    proc = run.procs.start("provserver", argv, layout.log("server"), cwd=layout.folder)
    try:
        found = proc.wait_for(r"Server listening on [^ ]*:(\d+)", 120)
        proc.wait_for(SIGNER_READY, 180)  # the password's KDF is slow on an emulated CPU
    except BaseException:
        proc.stop()
        raise
    return proc, int(found.group(1))


def provision(run: Run, layout: DemoLayout, port: int, name: str, count: int) -> str:
    run.new_board(name, count)
    swaps: list[threading.Thread] = []

    def on_line(stream: str, line: str) -> None:
        if stream == "stderr" and line == REMOVE_LINE and len(swaps) < count - 1:
            t = threading.Thread(target=run.operator_swap, args=(True,), daemon=True)
            swaps.append(t)
            t.start()

    client = run_client(run.procs, layout, port, None, count, timeout=240, on_line=on_line)
    for t in swaps:
        t.join(10)
    check(client.returncode == 0, f"client exit {client.returncode}: {client.lines[-6:]}")
    check(
        all(r["result"] == "ok" for r in client.results) and len(client.results) == count,
        f"{client.results}",
    )
    chains = verify_chains(layout)
    check(chains.failures == [], f"chain failures: {chains.failures}")
    return f"{count} part(s) provisioned, signed by the HID module, chains verified"


def hid_signs(run: Run, layout: DemoLayout, hidapi: str, count: int) -> str:
    server, port = hid_server(run, layout, hidapi)
    try:
        detail = provision(run, layout, port, f"hid-{hidapi}", count)
    finally:
        server.stop()
    return f"--hidapi {hidapi}: {detail}"


def hid_hot_plug(run: Run, layout: DemoLayout) -> str:
    server, port = hid_server(run, layout, "hidraw")
    try:
        ready = re.compile(SIGNER_READY)

        def ready_lines() -> int:
            return sum(bool(ready.search(line)) for line in server.text())

        before = ready_lines()
        run.hid.unplug()
        server.wait_for(r"Signer \(.*\) removed\.", 60)
        run.hid.plug()
        wait_for(lambda: ready_lines() > before, 180, "the server finding the module again")
        detail = provision(run, layout, port, "hotplug", 1)
    finally:
        server.stop()
    return f"module removed and found again while serving; {detail}"


def run_all(base: Path) -> Run:
    run = Run(base)
    try:
        sim_layout = DemoLayout.new(base / "sim-line")
        run.run("cdc-enumerates", lambda: cdc_enumerates(run))
        run.run("cdc-dtr-rts", lambda: cdc_dtr_rts(run))
        run.run("cdc-round-trips", lambda: cdc_round_trips(run))
        create_signer(sim_layout, timeout=240)
        server, port = start_server(run.procs, sim_layout, timeout=120)
        run.run("discovery-two-parts", lambda: two_parts_discovered(run, sim_layout, port))
        run.run("unplug-replug-mid-run", lambda: unplug_mid_run(run, sim_layout, port))
        server.stop()
        hid_layout = DemoLayout.new(base / "hid-line")
        run.run("hid-enumerates-both-backends", lambda: hid_enumerates(run))
        run.run("hid-empty-reads", lambda: hid_empty_reads(run))
        run.run("hid-signer-create", lambda: hid_signer_create(run, hid_layout))
        run.run("hid-signer-hidraw", lambda: hid_signs(run, hid_layout, "hidraw", 2))
        run.run("hid-signer-libusb", lambda: hid_signs(run, hid_layout, "hid", 1))
        run.run("hid-module-hot-plug", lambda: hid_hot_plug(run, hid_layout))
    finally:
        run.procs.stop_all()
        if run.board is not None:
            run.board.stop()
        if run.hid_server is not None:
            run.hid_server.stop()
    return run
