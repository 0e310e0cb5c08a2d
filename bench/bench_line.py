"""Gang throughput: one station driving 1, 2, 4 and 8 virtual boards at real chip times.

All programs are the real command lines (``atcaprov_demo`` building blocks): ``provserver``
with a simulated signer, ``atcaprov sim board --count N --timing-scale 1`` (N boards in one
process, each with its own chips; a board swaps in its next blank chip ``--auto-swap`` s after
the host went silent on a provisioned one), and ``provclient-cdc --yes --json --count PARTS``
with one ``--board`` per board (gang mode; one board is the single-board path).

Per N, one line:

* ``devices/h``: the steady rate, (PARTS - N) results between the N-th JSON result line and the
  last one, x 3600: every device counted there cost its board one whole cycle (part found,
  provisioned, swapped), whatever the gang size (a rate over the whole run would favour big
  gangs, whose last round has no swap after it). The whole run's time is shown too, from the
  client's ``Press ESC to quit.`` (start-up done) to its last result;
* ``per device``: mean wall time inside ``provision()`` (the client's ``elapsed_s``) against
  the mean chip-time floor of the commands it sent (``chip_floor_ms``: the sum of their max
  execution times) and their ratio;
* ``x N x 1-board``: devices/h divided by N x the one-board figure of the same run (goal
  >= 0.9).

Counts and time are bounded. Usage: ``python bench/bench_line.py [--boards 1,2,4,8]
[--parts 32] [--timing-scale 1] [--auto-swap 1.0] [--no-data-lock-crc]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from atcaprov_demo import (
    DemoLayout,
    Processes,
    create_signer,
    run_client,
    start_boards,
    start_server,
)


def _run(
    layout: DemoLayout,
    procs: Processes,
    port: int,
    boards: int,
    parts: int,
    timing_scale: float,
    auto_swap: float,
    extra: tuple[str, ...] = (),
) -> Figures:
    """One gang run."""
    board_layout = DemoLayout(layout.folder / f"gang-{boards}")
    board_layout.folder.mkdir()
    per_board = -(-parts // boards) + 1  # enough blank chips whichever board is fastest
    proc, urls = start_boards(
        procs,
        board_layout,
        chips=per_board,
        count=boards,
        auto_swap=auto_swap,
        timing_scale=timing_scale,
    )
    started: list[float] = []
    finished: list[float] = []

    def on_line(stream: str, line: str) -> None:
        if stream == "stderr" and line.startswith("Press ESC to quit."):
            started.append(time.monotonic())
        elif stream == "stdout":
            finished.append(time.monotonic())

    run = run_client(
        procs,
        layout,
        port,
        urls,
        parts,
        on_line=on_line,
        timeout=60.0 + 5.0 * parts * 2.5 / boards,
        extra=extra,
    )
    proc.stop()
    if run.returncode != 0 or len(run.results) != parts or run.provisioned != parts:
        sys.exit(
            f"client failed (status {run.returncode}, {run.provisioned}/{parts} ok):"
            f" {run.lines[-8:]}"
        )
    return Figures(parts, boards, started[0], finished, run.results)


@dataclass
class Figures:
    """One gang run: when the loop started, when each result came, the results."""

    parts: int
    boards: int
    start: float
    finished: list[float]
    results: list[dict[str, object]]

    @property
    def line_s(self) -> float:
        return self.finished[-1] - self.start

    @property
    def steady_per_hour(self) -> float:
        span = self.finished[-1] - self.finished[self.boards - 1]
        return (self.parts - self.boards) / span * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default="1,2,4,8", help="gang sizes, comma-separated")
    parser.add_argument("--parts", type=int, default=32, help="parts per gang size")
    parser.add_argument("--timing-scale", type=float, default=1.0, help="chip time factor")
    parser.add_argument(
        "--auto-swap",
        type=float,
        default=1.0,
        help="board swap delay (s); with timing on it must exceed the longest"
        " host silence inside a run (a command's execution time x scale)",
    )
    parser.add_argument(
        "--no-data-lock-crc",
        action="store_true",
        help="provision with the client's --no-data-lock-crc (the data lock without its CRC)",
    )
    args = parser.parse_args()
    extra = ("--no-data-lock-crc",) if args.no_data_lock_crc else ()
    sizes = [int(n) for n in args.boards.split(",") if n.strip()]
    if (
        not sizes
        or any(not 1 <= n <= 16 for n in sizes)
        or not 1 <= args.parts <= 200
        or args.parts < 2 * max(sizes)
    ):
        parser.error(
            "--boards must list sizes 1..16 and --parts be 1..200, at least twice the biggest gang"
        )

    with tempfile.TemporaryDirectory(prefix="bench-line-") as tmp, Processes() as procs:
        layout = DemoLayout.new(Path(tmp))
        create_signer(layout)
        _, port = start_server(procs, layout)
        print(
            f"{args.parts} parts per gang, chip timing scale {args.timing_scale:g},"
            f" swap delay {args.auto_swap:g} s"
            + (", data lock without its CRC (--no-data-lock-crc)" if extra else "")
        )
        one_board: float | None = None
        for boards in sizes:
            run = _run(
                layout, procs, port, boards, args.parts, args.timing_scale, args.auto_swap, extra
            )
            rate = run.steady_per_hour
            if boards == 1:
                one_board = rate
            inside = statistics.mean(float(str(r["elapsed_s"])) for r in run.results) * 1000
            floor = statistics.mean(float(str(r["chip_floor_ms"])) for r in run.results)
            floor *= args.timing_scale
            scaling = (
                f"{rate / (boards * one_board):5.2f} x N x 1-board"
                if one_board
                else "(no 1-board run)"
            )
            print(
                f"{boards} board{'s' if boards > 1 else ' '}: {rate:7.0f} devices/h"
                f" (run: {args.parts} in {run.line_s:6.2f} s); per device {inside:6.1f} ms"
                f" inside provision() vs chip floor {floor:6.1f} ms ({inside / floor:4.2f});"
                f" {scaling}"
            )


if __name__ == "__main__":
    main()
