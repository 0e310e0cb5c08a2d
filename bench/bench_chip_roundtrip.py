"""Command round trips per second through each layer that reaches an emulated ATECC508A.

One line per figure, with its ratio to the direct ``Atecc508a.execute`` figure:

* ``emulator execute``: the chip object answering Info packets, nothing else;
* ``device/emulator per call``: ``Device.info()`` over the emulator HAL (wake, Info, idle each);
* ``device/emulator session``: the same inside ``device.session()`` (Info only);
* ``kit-cdc socket:// session``: ``Device.info()`` through the kit protocol over TCP to the
  virtual kit board (one ``d:t(...)`` line per command);
* ``kit-cdc pty session``: the same over a pseudo-terminal (pyserial on the slave side).

Every run is bounded by a count and a time budget. Usage: ``python bench/bench_chip_roundtrip.py
[--seconds S] [--max-count N] [--opcode info|read]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from atcaprov.device import ZONE_CONFIG, Device
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.kit_board import VirtualKitBoard
from atcaprov.hal import open_hal
from atcaprov.hal.emulator import EmulatorHal
from atcaprov.packet import build_command


def rate(step: Callable[[], object], seconds: float, max_count: int) -> tuple[float, int]:
    """Calls per second of ``step`` within ``seconds`` and at most ``max_count`` calls."""
    step()  # warm-up (connection set-up, first wake)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while count < max_count:
        step()
        count += 1
        if (count & 15) == 0 and time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    return count / elapsed, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time budget per figure")
    parser.add_argument("--max-count", type=int, default=50_000, help="call budget per figure")
    parser.add_argument("--opcode", choices=("info", "read"), default="info")
    args = parser.parse_args()
    seconds, max_count = args.seconds, args.max_count

    if args.opcode == "info":
        packet = build_command(0x30, 0, 0)

        def command(dev: Device) -> object:
            return dev.info()
    else:
        packet = build_command(0x02, 0x80, 0)

        def command(dev: Device) -> object:
            return dev.read_zone(ZONE_CONFIG, 0, 0, 0, 32)

    results: list[tuple[str, float, int]] = []

    chip = Atecc508a()
    chip.wake()

    def direct() -> object:
        # the watchdog (1.3 s) would put a real chip to sleep; rewake as a host would
        out = chip.execute(packet)
        if out[1:2] == b"\xee":
            chip.idle()
            chip.wake()
        return out

    results.append(("emulator execute", *rate(direct, seconds, max_count)))

    dev = Device(EmulatorHal(Atecc508a()))
    results.append(("device/emulator per call", *rate(lambda: command(dev), seconds, max_count)))

    def session_rate(dev: Device) -> tuple[float, int]:
        # batches of 100 commands per session, short enough for the emulated 1.3 s watchdog
        done = 0
        total_time = 0.0
        deadline = time.perf_counter() + seconds
        command(dev)  # warm-up
        while done < max_count and time.perf_counter() < deadline:
            batch = min(100, max_count - done)
            start = time.perf_counter()
            with dev.session():
                for _ in range(batch):
                    command(dev)
            total_time += time.perf_counter() - start
            done += batch
        return done / total_time, done

    dev = Device(EmulatorHal(Atecc508a()))
    results.append(("device/emulator session", *session_rate(dev)))

    with tempfile.TemporaryDirectory() as tmp:
        with VirtualKitBoard(Path(tmp) / "tcp", chips=1) as board:
            hal = open_hal("kit-cdc", url=board.url, timeout=3.0)
            with Device(hal) as dev:
                results.append(("kit-cdc socket:// session", *session_rate(dev)))
                results.append(
                    ("kit-cdc socket:// per call", *rate(lambda: command(dev), seconds, max_count))
                )
        with VirtualKitBoard(Path(tmp) / "pty", chips=1, pty=True) as board:
            hal = open_hal("kit-cdc", url=board.url, timeout=3.0)
            with Device(hal) as dev:
                results.append(("kit-cdc pty session", *session_rate(dev)))

    base = results[0][1]
    print(f"# {args.opcode} round trips per second (budget {seconds:g} s / {max_count} calls)")
    for name, per_s, count in results:
        print(f"{name:28s} {per_s:10.0f} /s  ({count} calls)  ratio {per_s / base:.4f}")


if __name__ == "__main__":
    main()
