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
  server add on top of the chip itself.

Counts and time are bounded. Usage: ``python bench/bench_end_to_end.py [--count N]
[--timed-count M] [--timing-scale S]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from atcaprov_demo import (
    DemoLayout,
    Processes,
    create_signer,
    run_client,
    start_board,
    start_server,
)


def _run(layout: DemoLayout, procs: Processes, port: int, state: str, count: int,
         timing_scale: float, auto_swap: float) -> tuple[float, list[dict[str, Any]]]:
    board_layout = DemoLayout(layout.folder / state)
    board_layout.folder.mkdir()
    board, url = start_board(procs, board_layout, chips=count, auto_swap=auto_swap,
                             timing_scale=timing_scale)
    run = run_client(procs, layout, port, url, count, timeout=30.0 + 10.0 * count)
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
    parser.add_argument("--timed-auto-swap", type=float, default=1.0,
                        help="swap delay with timing on (must exceed the longest host silence"
                        " inside a run: a command's execution time x scale)")
    args = parser.parse_args()
    if not (1 <= args.count <= 200 and 1 <= args.timed_count <= 50):
        parser.error("--count must be 1..200 and --timed-count 1..50")

    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp, Processes() as procs:
        layout = DemoLayout.new(Path(tmp))
        create_signer(layout)
        _, port = start_server(procs, layout)

        wall, results = _run(layout, procs, port, "fast", args.count, 0.0, args.auto_swap)
        inside = sum(r["elapsed_s"] for r in results)
        print(f"timing off, line:          {args.count / wall:7.2f} devices/s"
              f" ({args.count} boards in {wall:.2f} s, swap delay {args.auto_swap:g} s)")
        print(f"timing off, provisioning:  {args.count / inside:7.2f} devices/s"
              f" ({1000 * inside / args.count:.1f} ms per device inside provision())")

        _, timed = _run(layout, procs, port, "timed", args.timed_count, args.timing_scale,
                        args.timed_auto_swap)
        per_device = statistics.mean(r["elapsed_s"] for r in timed) * 1000
        floor = statistics.mean(r["chip_floor_ms"] for r in timed) * args.timing_scale
        commands = statistics.mean(r["commands"] for r in timed)
        print(f"timing on (scale {args.timing_scale:g}):    {per_device:7.1f} ms per device,"
              f" chip-time floor {floor:.1f} ms ({commands:.0f} commands):"
              f" ratio {per_device / floor:.2f}")


if __name__ == "__main__":
    main()
