"""Records exports: devices per second and peak memory, for a small and a 10x larger ledger.

A SQLite ledger in a temporary folder is filled through the ledger's own commit (batches of 500
new issuances, short fake certificate bytes: the exports do not parse them), first with
``--devices / 10`` devices, then up to ``--devices``. After each fill the real command line
(``python -m provserver.cli records export --format F``, a subprocess) exports every device in
each format; its peak RSS comes from ``wait4`` (``ru_maxrss`` of that child alone). Constant
memory shows as the same peak RSS at both sizes (``growth``). Each line::

    manifest  devices=200000  seconds=9.1  devices/s=21978  peak_rss_mb=48.2  file_mb=540.3

Every loop is bounded by the device count; each export has a timeout. Usage::

    python bench/bench_records_export.py [--devices 200000] [--formats csv,jsonl,pem,manifest]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests.support

from tests.support.ledger_fill import fill_ledger, make_fill_pki

from provserver.ledger import open_ledger

EXPORT_TIMEOUT_S = 3600


def export(data_dir: Path, fmt: str, out: Path, signer: tuple[Path, Path]) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one export subprocess."""
    cmd = [
        sys.executable,
        "-m",
        "provserver.cli",
        "records",
        "export",
        "--data-dir",
        str(data_dir),
        "--format",
        fmt,
        "-o",
        str(out),
    ]
    if fmt == "manifest":
        cmd += [
            "--manifest-key",
            str(signer[0]),
            "--manifest-cert",
            str(signer[1]),
            "--provisioner",
            "Bench Factory",
        ]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = start + EXPORT_TIMEOUT_S
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"export {fmt} took more than {EXPORT_TIMEOUT_S} s")
        time.sleep(0.05)
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        assert proc.stderr is not None
        raise SystemExit(f"export {fmt} failed: {proc.stderr.read().decode(errors='replace')}")
    return seconds, usage.ru_maxrss / 1024  # Linux: kB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--formats", default="csv,jsonl,pem,manifest")
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    pki = make_fill_pki()
    with tempfile.TemporaryDirectory(prefix="bench-records-") as tmp:
        folder = Path(tmp)
        signer = pki.write_manifest_signer(folder)
        small = max(args.devices // 10, 1)
        peaks: dict[str, list[float]] = {f: [] for f in formats}
        done = 0
        for target in (small, args.devices):
            t0 = time.monotonic()
            with open_ledger(None, folder) as ledger:
                fill_ledger(ledger, target - done, None, start=done)
            print(f"fill  devices={target}  seconds={time.monotonic() - t0:.1f}", flush=True)
            done = target
            for fmt in formats:
                out = folder / f"export.{fmt}"
                seconds, peak = export(folder, fmt, out, signer)
                size = out.stat().st_size / (1 << 20)
                out.unlink()
                peaks[fmt].append(peak)
                print(
                    f"{fmt:<8}  devices={target}  seconds={seconds:.1f}  "
                    f"devices/s={target / seconds:.0f}  peak_rss_mb={peak:.1f}  "
                    f"file_mb={size:.1f}",
                    flush=True,
                )
        for fmt in formats:
            first, last = peaks[fmt]
            print(
                f"{fmt:<8}  growth  peak_rss_mb {first:.1f} -> {last:.1f} "
                f"({last - first:+.1f} MiB for {args.devices - small} more devices)"
            )


if __name__ == "__main__":
    main()
