"""End-to-end provisioning speed: signer set-up, provserver, virtual kit board, provclient-cdc.

All four are the real command-line programs (``atcaprov_demo`` building blocks). Figures, one
line each:

* ``timing off, line``: devices/s over the client's whole run with the chip timing model off
  (instant chips), board swaps included (the virtual board swaps ``--auto-swap`` s after the
  host went silent, checked every loop tick);
* ``timing off, provisioning``: devices/s counting only the time inside ``provision()`` (the
  client's ``elapsed_s``), i.e. the host + kit protocol + server cost per device;
* ``timing on (scale S)``: wall time per device inside ``provision()`` with the emulated chips
  taking their max execution time x S, against the chip-time floor of that run (sum of the
  max execution times of the commands actually sent, ``Device.chip_floor_ms``, reported by the
  client as ``chip_floor_ms``) x S; the ratio says how much the host, the kit link and the
  server add on top of the chip itself; once with the data lock's summary CRC (the default)
  and once with ``--no-data-lock-crc``;
* ``chip time per stage``: commands and chip time (the 508A's max execution times, the
  emulator's timing table) of each stage of one ``provision()`` run, in process (emulated chip,
  in-memory server from ``tests/support``: the chip time does not depend on the server), for a
  part whose config already holds the target and one whose every config word differs, with
  and without the data-lock CRC. The first config read comes before any stage starts: it is
  its own row.

Counts and time are bounded. Usage: ``python bench/bench_end_to_end.py [--count N]
[--timed-count M] [--timing-scale S] [--stages-only]``; run from the repository root with
``PYTHONPATH=src:tools:.``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.cert_server import InMemoryServer
from tests.support.hooks import RecordingHooks
from tests.support.pki import make_pki

from atcaprov import provision
from atcaprov.config import DEFAULT_CONFIG
from atcaprov.datasheet import ATECC508A, SN_LAST, SN_PREFIX
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.state import Memory
from atcaprov.emulator.zones import default_config
from atcaprov.hal import open_hal
from atcaprov.packet import Opcode
from atcaprov.stages import ProvStage, ProvStatus
from atcaprov_demo import (
    DemoLayout,
    Processes,
    create_signer,
    run_client,
    start_board,
    start_server,
)

FIRST_READ = "(first config read)"
MICROCHIP_MS = 1078.0  # CryptoAuthLib doing the same job, same timing table (issue 13)


class _StageMeter(RecordingHooks):
    """Hooks that note the device's command count and chip floor at each stage's START."""

    device: Device | None = None
    rows: dict[str, tuple[int, float]]
    mark: tuple[int, float] = (0, 0.0)

    def notify(self, stage: ProvStage, status: ProvStatus) -> None:
        super().notify(stage, status)
        assert self.device is not None
        now = (sum(self.device.opcode_counts.values()), self.device.chip_floor_ms)
        if status == ProvStatus.START:
            if not self.rows:
                self.rows[FIRST_READ] = now
            self.mark = now
        elif status in (ProvStatus.DONE, ProvStatus.ERROR):
            self.rows[stage.name] = (now[0] - self.mark[0], now[1] - self.mark[1])


def _part(config_differs: bool, serial_tail: int) -> Atecc508a:
    serial = SN_PREFIX + serial_tail.to_bytes(6, "big") + bytes((SN_LAST,))
    config = default_config(serial)
    for i in (*range(16, 84), *range(88, 128)):
        config[i] = DEFAULT_CONFIG[i] ^ (0x5A if config_differs else 0)
    return Atecc508a(_memory=Memory.blank(config, ATECC508A))


def stage_table() -> None:
    """Commands and chip time per stage, four ways (config matching/differing, CRC or not)."""
    pki = make_pki()
    columns: list[tuple[str, dict[str, tuple[int, float]], Counter[str]]] = []
    for crc in (True, False):
        for differs in (False, True):
            device = Device(open_hal("emulator", chip=_part(differs, len(columns) + 1)))
            hooks = _StageMeter(InMemoryServer(pki))
            hooks.device, hooks.rows = device, {}
            provision(device, hooks, pki.cert_info, data_lock_crc=crc)
            total = (sum(device.opcode_counts.values()), device.chip_floor_ms)
            rows = {FIRST_READ: hooks.rows.pop(FIRST_READ), **hooks.rows, "total": total}
            ops = Counter(
                {
                    Opcode(k).name if k in Opcode._value2member_map_ else str(k): v
                    for k, v in device.opcode_counts.items()
                }
            )
            name = f"{'CRC' if crc else 'no CRC'}, config {'differs' if differs else 'matches'}"
            columns.append((name, rows, ops))
    print("chip time per stage (commands / ms at the 508A's max execution times):")
    print(f"  {'stage':<20}" + "".join(f"{name:>26}" for name, _, _ in columns))
    for stage in columns[0][1]:
        cells = [rows.get(stage) for _, rows, _ in columns]
        print(
            f"  {stage:<20}"
            + "".join(f"{'-':>26}" if c is None else f"{c[0]:>14} / {c[1]:7.0f} ms" for c in cells)
        )
    for name, rows, ops in columns:
        ms = rows["total"][1]
        print(
            f"  {name}: {rows['total'][0]} commands, {ms:.0f} ms"
            f" ({ms / MICROCHIP_MS:.2f} x Microchip's {MICROCHIP_MS:.0f} ms);"
            f" {', '.join(f'{k} {v}' for k, v in sorted(ops.items()))}"
        )


def _run(
    layout: DemoLayout,
    procs: Processes,
    port: int,
    state: str,
    count: int,
    timing_scale: float,
    auto_swap: float,
    extra: tuple[str, ...] = (),
) -> tuple[float, list[dict[str, Any]]]:
    board_layout = DemoLayout(layout.folder / state)
    board_layout.folder.mkdir()
    board, url = start_board(
        procs, board_layout, chips=count, auto_swap=auto_swap, timing_scale=timing_scale
    )
    run = run_client(procs, layout, port, url, count, timeout=30.0 + 10.0 * count, extra=extra)
    board.stop()
    if run.returncode != 0 or len(run.results) != count:
        sys.exit(f"client failed (status {run.returncode}): {run.lines[-5:]}")
    return run.wall_s, run.results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="boards with timing off")
    parser.add_argument("--timed-count", type=int, default=5, help="boards with timing on")
    parser.add_argument("--timing-scale", type=float, default=1.0, help="chip time factor")
    parser.add_argument("--auto-swap", type=float, default=0.05, help="board swap delay (s)")
    parser.add_argument(
        "--timed-auto-swap",
        type=float,
        default=1.0,
        help="swap delay with timing on (must exceed the longest host silence"
        " inside a run: a command's execution time x scale)",
    )
    parser.add_argument(
        "--stages-only",
        action="store_true",
        help="print the per-stage table only (no server, board or client)",
    )
    args = parser.parse_args()
    stage_table()
    if args.stages_only:
        return
    if not (1 <= args.count <= 200 and 1 <= args.timed_count <= 50):
        parser.error("--count must be 1..200 and --timed-count 1..50")

    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp, Processes() as procs:
        layout = DemoLayout.new(Path(tmp))
        create_signer(layout)
        _, port = start_server(procs, layout)

        wall, results = _run(layout, procs, port, "fast", args.count, 0.0, args.auto_swap)
        inside = sum(r["elapsed_s"] for r in results)
        print(
            f"timing off, line:          {args.count / wall:7.2f} devices/s"
            f" ({args.count} boards in {wall:.2f} s, swap delay {args.auto_swap:g} s)"
        )
        print(
            f"timing off, provisioning:  {args.count / inside:7.2f} devices/s"
            f" ({1000 * inside / args.count:.1f} ms per device inside provision())"
        )

        for extra in ((), ("--no-data-lock-crc",)):
            _, timed = _run(
                layout,
                procs,
                port,
                "timed" + "".join(extra),
                args.timed_count,
                args.timing_scale,
                args.timed_auto_swap,
                extra,
            )
            per_device = statistics.mean(r["elapsed_s"] for r in timed) * 1000
            floor = statistics.mean(r["chip_floor_ms"] for r in timed) * args.timing_scale
            commands = statistics.mean(r["commands"] for r in timed)
            what = "no data-lock CRC" if extra else "data-lock CRC"
            print(
                f"timing on (scale {args.timing_scale:g}), {what}: {per_device:7.1f} ms per"
                f" device, chip-time floor {floor:.1f} ms ({commands:.0f} commands):"
                f" ratio {per_device / floor:.2f}"
            )


if __name__ == "__main__":
    main()
