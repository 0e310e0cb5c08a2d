"""Provisioning server memory under load: RSS growth over many signings (pem back-end).

The server is the real one (``python -m provserver.cli`` in a subprocess, its default SQLite
ledger with the signing log and certs folder in a temporary data folder, or ``--ledger URL``);
stations are asyncio connections in this process sending ``CertRequest``s back to back (one
outstanding request per connection, a distinct serial number and public key per request, as
in ``bench_server.py``). The server's resident set size (``VmRSS`` in ``/proc/PID/status``) is
sampled every ``--every`` signings; the figure is the growth from the sample after the warm-up
(``--warmup`` signings: imports, caches and the ledger's page cache settle) to the last one, and
the largest RSS seen. Bounded by count (``--signings``) and time (``--max-seconds``); stops at
the first failed request. Linux only (``/proc``). Figures: docs/benchmarks.md. Usage::

    python bench/bench_server_memory.py [--signings 200000] [--every 10000] [--warmup 10000]
        [--connections 16] [--max-seconds 3600] [--ledger URL] [--commit-writer auto|thread|process]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from atcaprov.protocol import CertReply, MessageReader, MessageType
from bench_server import (
    REPLY_TIMEOUT,
    Requests,
    create_signer,
    server_args,
    serving,
)


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` and its child processes in KiB (``VmRSS``;
    the child: ``--commit-writer process``)."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total = int(line.split()[1])
            break
    else:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            try:
                total += rss_kib(child)
            except (OSError, RuntimeError):  # gone meanwhile
                continue
    return total


class Load:
    """Shared by the connections: how many signings are done, RSS samples, the first error."""

    def __init__(self, total: int, every: int, pid: int, deadline: float) -> None:
        self.total, self.every, self.pid, self.deadline = total, every, pid, deadline
        self.sent = 0
        self.done = 0
        self.error: str | None = None
        self.samples: list[tuple[int, float, int]] = [(0, 0.0, rss_kib(pid))]
        self.start = time.perf_counter()

    def take(self) -> bool:
        """Claim one more request (False: the count, the time or an error says stop)."""
        if self.error is not None or self.sent >= self.total:
            return False
        if time.perf_counter() >= self.deadline:
            self.error = self.error or "time limit reached"
            return False
        self.sent += 1
        return True

    def signed(self) -> None:
        self.done += 1
        if self.done % self.every == 0 or self.done == self.total:
            sample = (self.done, time.perf_counter() - self.start, rss_kib(self.pid))
            self.samples.append(sample)
            print(
                f"  {sample[0]:>8} signings  {sample[1]:8.1f} s  RSS {sample[2] / 1024:8.2f} MiB"
                f"  ({sample[0] / max(sample[1], 1e-9):.0f} signings/s)",
                flush=True,
            )


async def _station(port: int, requests: Requests, load: Load) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    messages = MessageReader({MessageType.CERT_REPLY, MessageType.ERROR_REPLY})
    try:
        while load.take():
            writer.write(requests.next())
            await writer.drain()
            reply = messages.next_message()
            while reply is None:
                chunk = await asyncio.wait_for(reader.read(65536), REPLY_TIMEOUT)
                if not chunk:
                    load.error = load.error or "server closed the connection"
                    return
                messages.feed(chunk)
                reply = messages.next_message()
            if isinstance(reply, CertReply):
                load.signed()
            else:
                load.error = load.error or repr(reply)
                return
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signings", type=int, default=200_000)
    parser.add_argument("--every", type=int, default=10_000, help="RSS sample interval")
    parser.add_argument("--warmup", type=int, default=10_000, help="signings before the base")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    parser.add_argument("--ledger", default=None, metavar="URL", help="default: SQLite")
    parser.add_argument(
        "--commit-writer", choices=("auto", "thread", "process"), default="auto",
        help="the server's --commit-writer (default: the server's own; process, auto on "
        "POSIX: the child's RSS counts too)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.warmup % args.every:
        parser.error("--warmup must be a multiple of --every")

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as name:
        tmp = Path(name)
        key = tmp / "pem-key.pem"
        data, info = create_signer(tmp, "pem", "--backend", "pem", "--pem-key", str(key))
        started = time.perf_counter()
        requests = Requests(info, keys=args.signings + 16)
        print(
            f"{args.signings + 16} device keys made in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        ledger = ["--ledger", args.ledger] if args.ledger else []
        ledger += ["--commit-writer", args.commit_writer]
        command = [
            sys.executable,
            "-m",
            "provserver.cli",
            *server_args(data, "--signers", "pem", "--pem-key", str(key), ledger=ledger),
        ]
        with serving(command, tmp / "console.txt", {}, 1) as server:
            load = Load(
                args.signings, args.every, server.proc.pid, time.perf_counter() + args.max_seconds
            )

            async def go() -> None:
                await asyncio.gather(
                    *(_station(server.port, requests, load) for _ in range(args.connections))
                )

            print(
                f"server pid {server.proc.pid}: RSS at start {load.samples[0][2] / 1024:.2f} MiB",
                flush=True,
            )
            asyncio.run(go())
        base = next((s for s in load.samples if s[0] >= args.warmup), load.samples[-1])
        last = load.samples[-1]
        peak = max(s[2] for s in load.samples)
        print(
            f"signings: {load.done} in {last[1]:.1f} s ({load.done / max(last[1], 1e-9):.0f}/s)"
            f"{'' if load.error is None else f'; stopped: {load.error}'}"
        )
        print(
            f"RSS: {load.samples[0][2] / 1024:.2f} MiB at start, {base[2] / 1024:.2f} MiB after "
            f"{base[0]} signings, {last[2] / 1024:.2f} MiB after {last[0]}, peak "
            f"{peak / 1024:.2f} MiB; growth after the warm-up {(last[2] - base[2]) / 1024:.2f} "
            f"MiB over {last[0] - base[0]} signings "
            f"({(last[2] - base[2]) * 1024 / max(last[0] - base[0], 1):.1f} bytes/signing)"
        )


if __name__ == "__main__":
    main()
