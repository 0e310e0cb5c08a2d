"""Crash recovery of a run's files: how long a start takes after a crash, per unsynced file.

The ledger is the record; the signing log and ``certs/`` files are derived from it, and the
crash marker names the last checkpoint (the files synced then). After a crash, the next start
checks every issuance after the marker (its two certificate files read and compared, or
written) and appends the log rows the file lacks: the time that takes grows with the files
written since the last checkpoint, which is what ``CHECKPOINT_FILES`` bounds.

A SQLite ledger in a temporary folder is filled with ``--devices`` issuances of one run
(through the ledger's own commit, short fake certificate bytes), then the run is recovered
three times with a marker that names no checkpoint at all:

- ``missing``: an empty data folder, every row and file written (a crash before any file);
- ``present-warm``: every file already there (the kernel wrote them back before the crash),
  each read and compared, from the page cache;
- ``present-cold``: the same after the page cache was dropped (as after a power cut; needs root
  to write ``/proc/sys/vm/drop_caches``, otherwise this case is left out and says so).

Each line: ``case devices=N files=F seconds=S files/s=R``. Every loop is bounded by the device
count. Usage::

    python bench/bench_recovery.py [--devices 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests.support

from tests.support.ledger_fill import fill_ledger

from provserver.ledger import open_ledger
from provserver.ledger.files import Marker, recover_run

STAMP = "20261121-050000"  # the run fill_ledger records


def recover(data: Path, run_id: int) -> tuple[float, int, int]:
    """Seconds, rows appended and files written by one recovery of the run."""
    with open_ledger(None, data) as ledger:
        marker = Marker(ledger.ledger_id, run_id)
        start = time.perf_counter()
        done = recover_run(data, STAMP, marker, ledger)
        return time.perf_counter() - start, done.rows, done.files


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        data = Path(tmp)
        (data / "logs").mkdir()
        (data / "certs").mkdir()
        start = time.perf_counter()
        with open_ledger(None, data) as ledger:
            run_id = fill_ledger(ledger, args.devices, None)
        print(f"filled {args.devices} devices in {time.perf_counter() - start:.1f} s", flush=True)
        cases = ["missing", "present-warm", "present-cold"]
        for case in cases:
            if case == "present-cold" and not drop_caches():
                print("present-cold  left out: the page cache cannot be dropped (not root)")
                continue
            seconds, rows, written = recover(data, run_id)
            files = 2 * args.devices
            print(
                f"{case:<13} devices={args.devices}  files={files}  seconds={seconds:.2f}  "
                f"files/s={files / seconds:.0f}  (rows appended {rows}, files written "
                f"{written})",
                flush=True,
            )


if __name__ == "__main__":
    main()
