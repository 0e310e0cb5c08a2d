"""Provisioning server throughput: signings per second and latency, stations over 127.0.0.1.

Each figure is one line. The server is the real one (``python -m provserver.cli`` in a
subprocess, its issuance ledger with its group commit: SQLite in the data folder, or
``--ledger URL``; data folder in a temporary directory); the stations are asyncio connections
in this process sending ``CertRequest``s back to back (one outstanding request per
connection) for ``--seconds`` per point. They stand for line PCs of their own but share this
machine's cores with the server, so they are kept light: requests are encoded before the
load, a read's deadline is a timer (the server's ``read_chunk``, not a task), and they run
on the event loop the server picks by default (uvloop where installed).

* ``raw X.509``: ``cryptography``'s X.509 build+sign of a device certificate like the
  server's (subject, issuer, validity, public key, key identifiers, basic constraints, key
  usage; ECDSA P-256 with SHA-256) per second, one thread, measured in the same run: the
  reference every server figure is divided by (``ratio``). ``raw sign`` (ECDSA of a 32-byte
  digest) is printed too. On a shared machine the rate moves with the other jobs' load: each
  pem point is divided by the mean of the raw rate measured for 0.5 s just before and just
  after it (printed on its line); pkcs11 and sim use the rate measured at the start.
* ``pem``: the ``pem`` back-end (key in a file) at 1, 16 and 64 connections, once per record
  store (``--stores``, default all five, one server each, in one run): ``file`` (the app
  note's files only, :class:`provserver.records_file.FileRecordStore`, the store before the
  ledger; the server is started through this script, ``--serve-file-store``), ``sqlite`` (the
  default ledger, with ``--commit-writer thread``: commits and files in threads of the server
  process), ``sqlite-metrics`` (the same with ``--metrics``: what the Prometheus counters and
  histograms cost), ``sqlite-process`` (with ``--commit-writer process``, the server's default
  on POSIX: commits and files in a child process, on the second core) and ``postgresql``
  (``--commit-writer thread``, ``--ledger URL``,
  else a throwaway server started as the tests do, ``tests/support/postgres.py``: initdb +
  pg_ctl in a temporary folder; skipped with a reason where PostgreSQL or psycopg is missing).
* ``pkcs11``: a SoftHSM2 token (made in the temporary folder) at 1, 16 and 64 connections;
  skipped with a reason if SoftHSM2 or python-pkcs11 is missing.
* ``sim``: 1, 2 and 4 emulated modules holding the same key (copies of one module file: a
  pool), at the emulator's chip timing (``--timing-scale``, default 1.0 = the ATECC508A's
  maximum execution times). The ``sim`` back-end has no option for the timing, so the server
  subprocess is started through this script (``--serve-timed-sim``), which sets
  ``timing_scale`` on every chip the back-end loads and then runs the ordinary ``provserver``
  command line in-process.

Each line also gives the p50/p99 latency a station sees and the CPU time per signing of the
server process (all threads, from /proc) and of the stations. Each pem line gives the cost of
creating a file in the data folders' file system, measured just before and after the point
(``file create``: the server writes one certificate file per signing). On ext4 without a
journal that cost rises tenfold for minutes after many files were deleted in the same part of
the disk (the inode allocator skips recently freed inodes, checking each: the cleanup of an
earlier benchmark or test run does it), and every store that writes files slows down with it.
So the run starts by probing it and waits (``--fs-wait``, bounded) until it is below
:data:`FS_SLOW_US`; the temporary folder is made in ``--tmp-dir`` (default: the system's).
Signers are made with ``provserver signer create`` (``--backend pem``/``pkcs11``/``sim``).
Every loop is bounded by time and count; every read has a timeout. Figures:
docs/benchmarks.md. Usage::

    python bench/bench_server.py [--seconds 3] [--connections 1,16,64] [--sim-modules 1,2,4]
        [--sim-connections 16] [--timing-scale 1.0] [--skip-pkcs11] [--only pem|pkcs11|sim]
        [--stores file,sqlite,sqlite-metrics,sqlite-process,postgresql]
        [--ledger postgresql://...] [--tmp-dir DIR] [--fs-wait 180]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from atcaprov.atcacert.keys import public_key_bytes
from atcaprov.certinfo import CertInfo, load_cert_info
from atcaprov.protocol import CertReply, CertRequest, MessageReader, MessageType, encode
from provserver import event_loop
from provserver.server import read_chunk

SERVER_START_TIMEOUT = 60.0
REPLY_TIMEOUT = 30.0
MAX_REQUESTS_PER_CONNECTION = 200_000
SOFTHSM_PIN = "bench-4711"
RAW_AROUND_POINT = 0.5  # s of raw X.509 build+sign measured just before and after a pem point
# requests are made before a pem point for a server signing up to this fraction of the raw
# X.509 rate; a faster one has the stations make the rest during the point (the line says so)
STATIONS_MAX_RATIO = 0.6
FS_PROBE_FILES = 100  # files created per file system probe (kept: deleting them would slow it)
FS_SLOW_US = 100.0  # µs per file created above which the file system counts as slow
FS_WAIT_STEP = 10.0  # s between two probes while waiting for a slow file system


# --------------------------------------------------------------------------------------------
# Reference: raw signs
# --------------------------------------------------------------------------------------------
def raw_sign_rate(seconds: float, max_count: int = 1_000_000) -> float:
    """``cryptography`` ECDSA P-256 signs of a 32-byte digest per second (one thread)."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = bytes(range(32))
    algorithm = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
    key.sign(digest, algorithm)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while count < max_count:
        key.sign(digest, algorithm)
        count += 1
        if time.perf_counter() >= deadline:
            break
    return count / (time.perf_counter() - start)


def raw_x509_rate(seconds: float, max_count: int = 1_000_000) -> float:
    """``cryptography`` X.509 device certificates built and signed per second (one thread).

    Each certificate is what the server issues, built from scratch: a new device key's
    public key, subject with the serial number, the signer as issuer, an hour-floored
    validity, subject and authority key identifiers, basic constraints, key usage; signed
    with ECDSA P-256 / SHA-256 and encoded to DER.
    """
    import datetime as dt

    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "Bench Signer FFFF")])  # fmt: skip
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    device_keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(64)]
    usage = x509.KeyUsage(True, False, True, False, True, False, False, False, False)

    def build(n: int) -> bytes:
        now = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
        public = device_keys[n % len(device_keys)]
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench"),
                        x509.NameAttribute(NameOID.COMMON_NAME, f"sn0123{n:012X}EE"),
                    ]
                )
            )
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(0x4000_0000_0000_0000 | n)
            .not_valid_before(now)
            .not_valid_after(now.replace(year=now.year + 28))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(aki, critical=False)
        )
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(Encoding.DER)

    build(0)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while count < max_count:
        build(count)
        count += 1
        if time.perf_counter() >= deadline:
            break
    return count / (time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# The file system: what creating a file costs there
# --------------------------------------------------------------------------------------------
class FileCreateProbe:
    """Creates files of a certificate's size in ``folder`` and times it (µs per file).

    The files stay until the run's temporary folder goes: deleting them would itself slow
    the creations that follow on the file systems where the probe matters.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._probes = itertools.count(1)  # keeps the file names of successive probes apart
        folder.mkdir(parents=True, exist_ok=True)

    def cost_us(self, files: int = FS_PROBE_FILES) -> float:
        probe = next(self._probes)
        data = bytes(700)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        start = time.perf_counter()
        for n in range(files):
            fd = os.open(self.folder / f"probe-{probe}-{n}.pem", flags, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        return (time.perf_counter() - start) / max(files, 1) * 1e6

    def wait_until_quick(self, limit_s: float) -> float:
        """Probe every :data:`FS_WAIT_STEP` s until two probes in a row cost at most
        :data:`FS_SLOW_US` per file, for at most ``limit_s`` (0: one probe, no wait); returns
        the last cost. Two, because the slowdown starts some seconds after the deletions that
        cause it (a run started right after another's clean-up passes a single probe)."""
        deadline = time.monotonic() + limit_s
        quick_in_a_row = 0
        while True:
            cost = self.cost_us()
            quick_in_a_row = quick_in_a_row + 1 if cost <= FS_SLOW_US else 0
            print(f"{'file create (data folders)':<34} {cost:9.1f} µs per file", flush=True)
            if quick_in_a_row >= 2 or time.monotonic() + FS_WAIT_STEP > deadline:
                break
            why = (
                "checking again"
                if quick_in_a_row
                else f"slow here (over {FS_SLOW_US:.0f} µs): files deleted in the last minutes"
                " (ext4 without a journal)"
            )
            print(
                f"  file creation {why}; waiting {FS_WAIT_STEP:.0f} s"
                f" (--fs-wait, {deadline - time.monotonic():.0f} s left)",
                flush=True,
            )
            time.sleep(FS_WAIT_STEP)
        if cost > FS_SLOW_US:
            print(
                f"  file creation is still slow ({cost:.0f} µs per file): the figures of the"
                " stores that write files are low; see --tmp-dir",
                flush=True,
            )
        return cost


# --------------------------------------------------------------------------------------------
# Signers (made with `provserver signer create`) and servers (subprocesses)
# --------------------------------------------------------------------------------------------
def provserver(*args: str, env: dict[str, str] | None = None) -> None:
    """Run ``python -m provserver.cli ARGS`` (set-up commands); raise with its output on error."""
    result = subprocess.run(
        [sys.executable, "-m", "provserver.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise RuntimeError(f"provserver {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def root_args(tmp: Path) -> list[str]:
    """A new root CA the first time, the same one afterwards."""
    key, cert = tmp / "root" / "root-ca.key", tmp / "root" / "root-ca.crt"
    if key.exists():
        return ["--root-key", str(key), "--root-cert", str(cert)]
    return ["--root-dir", str(tmp / "root")]


def create_signer(
    tmp: Path, tag: str, *backend_args: str, env: dict[str, str] | None = None
) -> tuple[Path, CertInfo]:
    """`provserver signer create` into ``tmp/<tag>-data``; returns the data dir and cert info."""
    data, certinfo = tmp / f"{tag}-data", tmp / f"{tag}-certinfo.c"
    provserver(
        "signer", "create", *backend_args, "--name", f"Bench {tag} Signer",
        *root_args(tmp), "--data-dir", str(data), "--certinfo-out", str(certinfo),
        env=env,
    )  # fmt: skip
    return data, load_cert_info(certinfo)


class Server:
    """A server subprocess; its console goes to a file; ``port`` once it listens."""

    def __init__(self, command: Sequence[str], console: Path, env: dict[str, str]) -> None:
        self.console = console
        with console.open("wb") as out:
            self.proc = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            )
        self.port = int(self.wait_for(r"Server listening on 127\.0\.0\.1:(\d+)\.").group(1))

    def wait_for(self, pattern: str, count: int = 1) -> re.Match[str]:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            matches = list(re.finditer(pattern, self.console.read_text(errors="replace")))
            if len(matches) >= count:
                return matches[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"server: no {pattern!r} (x{count}):\n{self.console.read_text(errors='replace')}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


LEDGER: list[str] = []  # --ledger URL given to every server (default: SQLite in its data folder)


def server_args(data: Path, *backend_args: str, ledger: list[str] | None = None) -> list[str]:
    return ["--host", "127.0.0.1", "--port", "0", "--data-dir", str(data),
            "--rescan-interval", "5", *(LEDGER if ledger is None else ledger),
            *backend_args]  # fmt: skip


@contextlib.contextmanager
def serving(
    command: Sequence[str], console: Path, env: dict[str, str], modules: int
) -> Iterator[Server]:
    server = Server(command, console, env)
    try:
        server.wait_for(r"\) found\.|password accepted, ready\.", count=modules)
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# Stations
# --------------------------------------------------------------------------------------------
@dataclass
class Point:
    signings: int
    errors: int
    seconds: float
    latencies: list[float]
    server_cpu: float = float("nan")  # CPU seconds the server process used during the point
    client_cpu: float = float("nan")  # CPU seconds this process (the stations) used

    @property
    def rate(self) -> float:
        return self.signings / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))]


class Requests:
    """Requests for distinct devices (serial numbers from a counter), each with its own key.

    The server's ledger refuses a public key issued to another device (PUBLIC_KEY_REUSED), so
    every request needs a key of its own. ``keys`` requests are made and encoded before the
    load, and :meth:`ensure` makes more between points (not timed: the stations stand for line
    PCs of their own, and the CPU they spend shares this machine's cores with the server); a
    point that needs still more makes them on the fly (counted in :attr:`made_during_load`).
    Each server has a ledger of its own, so :meth:`rewind` lets the next one use the same
    requests again.
    """

    def __init__(self, info: CertInfo, keys: int = 40_000) -> None:
        self.info = info
        self.counter = 0
        self.made_during_load = 0
        self.encoded: list[bytes] = []
        self.ensure(keys)

    def ensure(self, count: int) -> None:
        """Have at least ``count`` requests made and encoded in all."""
        start = len(self.encoded)
        self.encoded += [self._encode(n, _new_public_key()) for n in range(start + 1, count + 1)]

    def rewind(self) -> None:
        """Start again from the first request (for a server with a new, empty ledger)."""
        self.counter = 0

    def next(self) -> bytes:
        self.counter += 1
        n = self.counter
        if n <= len(self.encoded):
            return self.encoded[n - 1]
        self.made_during_load += 1
        return self._encode(n, _new_public_key())

    def _encode(self, n: int, public_key: bytes) -> bytes:
        cfg = bytearray(128)
        cfg[0:4] = bytes([0x01, 0x23, 0xB0, 0x0C])
        cfg[8] = 0x5E
        cfg[9:12] = (n & 0xFFFFFF).to_bytes(3, "big")
        cfg[12] = 0xEE
        cfg[86], cfg[87] = 0x55, 0x00  # data zone unlocked, config zone locked
        return encode(
            CertRequest(
                signer_id=self.info.signer_id,
                signer_key_id=self.info.signer_key_id,
                device_template_id=self.info.device_cert_def.template_id,
                signer_template_id=self.info.signer_cert_def.template_id,
                chain_id=self.info.device_cert_def.chain_id,
                config_zone=bytes(cfg),
                device_public_key=public_key,
                station_id="bench",
            )
        )


def _new_public_key() -> bytes:
    return public_key_bytes(ec.generate_private_key(ec.SECP256R1()).public_key())


async def _connection(
    port: int, requests: Requests, deadline: float, point: Point, errors: list[str]
) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    messages = MessageReader({MessageType.CERT_REPLY, MessageType.ERROR_REPLY})
    try:
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            if time.perf_counter() >= deadline:
                return
            data = requests.next()
            sent = time.perf_counter()
            writer.write(data)
            await writer.drain()
            reply = None
            while reply is None:
                reply = messages.next_message()
                if reply is None:
                    try:
                        chunk = await read_chunk(reader, REPLY_TIMEOUT)
                    except (OSError, asyncio.TimeoutError) as exc:
                        chunk, reason = b"", repr(exc)
                    else:
                        reason = "server closed the connection"
                    if not chunk:
                        point.errors += 1
                        if len(errors) < 3:
                            errors.append(reason)
                        return
                    messages.feed(chunk)
            point.latencies.append(time.perf_counter() - sent)
            if isinstance(reply, CertReply):
                point.signings += 1
            else:
                point.errors += 1
                if len(errors) < 3:
                    errors.append(repr(reply))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its live child processes (all their
    threads: the commit writer process counts); NaN where /proc is absent."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(x) for x in (task / "children").read_text().split()]
    for child in children:
        cpu = process_cpu_seconds(child)
        if cpu == cpu:  # not NaN: still there
            total += cpu
    return total


def measure(server: Server, requests: Requests, connections: int, seconds: float) -> Point:
    """``connections`` stations for ``seconds`` (after a short warm-up)."""
    port = server.port

    async def go() -> Point:
        warm = Point(0, 0, 0.0, [])
        await asyncio.gather(
            *(_connection(port, requests, time.perf_counter() + 0.3, warm, [])
              for _ in range(min(connections, 4)))
        )  # fmt: skip
        await asyncio.sleep(0.5)  # the server has seen the warm-up connections close
        point = Point(0, 0, 0.0, [])
        errors: list[str] = []
        server_cpu, client_cpu = process_cpu_seconds(server.proc.pid), time.process_time()
        start = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(
                *(_connection(port, requests, start + seconds, point, errors)
                  for _ in range(connections))
            ),
            seconds + 4 * REPLY_TIMEOUT,
        )  # fmt: skip
        point.seconds = time.perf_counter() - start
        point.server_cpu = process_cpu_seconds(server.proc.pid) - server_cpu
        point.client_cpu = time.process_time() - client_cpu
        if errors:
            print(f"  errors (first {len(errors)}): {'; '.join(errors)}", flush=True)
        return point

    # The stations run on the loop the server picks by default (uvloop where installed): they
    # stand for other PCs, so the less CPU they take from the server's cores the better.
    return event_loop.run(go(), event_loop.resolve("auto"))


def line(label: str, point: Point, raw: float, extra: str = "") -> None:
    per = max(point.signings, 1) * 1e-3  # CPU ms per signing
    print(
        f"{label:<34} {point.rate:9.1f} signings/s  p50 {point.percentile(50) * 1000:8.2f} ms"
        f"  p99 {point.percentile(99) * 1000:8.2f} ms  ratio to raw {point.rate / raw:6.4f}"
        f"  ({point.signings} signed, {point.errors} errors; CPU per signing: server"
        f" {point.server_cpu / per:.2f} ms, stations {point.client_cpu / per:.2f} ms){extra}",
        flush=True,
    )


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------
STORES = ("file", "sqlite", "sqlite-metrics", "sqlite-process", "postgresql")


def bench_pem(tmp: Path, args: argparse.Namespace, raw: float, probe: FileCreateProbe) -> None:
    requests: Requests | None = None  # the stores' servers share one signer: one set of requests
    for store in args.stores:
        with contextlib.ExitStack() as stack:
            ledger: list[str] = LEDGER
            if store == "postgresql":
                url = args.ledger or _throwaway_postgres(stack)
                if url is None:
                    continue
                ledger = ["--ledger", url]
            # the server's default writer is the process on POSIX: every store but
            # sqlite-process names the thread writer, as these figures always measured it
            writer = "process" if store == "sqlite-process" else "thread"
            ledger = [*ledger, "--commit-writer", writer]
            if store == "sqlite-metrics":  # the cost of --metrics (counters, histograms)
                ledger += ["--metrics", "127.0.0.1:0"]
            requests = bench_pem_store(tmp, args, raw, store, ledger, probe, requests)


def _throwaway_postgres(stack: contextlib.ExitStack) -> str | None:
    """A PostgreSQL server started as the tests do (initdb + pg_ctl in a temporary folder)."""
    root = str(Path(__file__).resolve().parents[1])  # `make bench` runs bench/ scripts as files
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        from tests.support import postgres
    except ImportError as exc:
        print(f"pem, postgresql: skipped: tests/support not importable ({exc})", flush=True)
        return None
    why = postgres.missing()
    if why is not None:
        print(f"pem, postgresql: skipped: {why}", flush=True)
        return None
    server = stack.enter_context(postgres.running_postgres())
    url: str = server.new_database()
    return url


def bench_pem_store(
    tmp: Path,
    args: argparse.Namespace,
    raw: float,
    store: str,
    ledger: list[str],
    probe: FileCreateProbe,
    requests: Requests | None,
) -> Requests:
    """One store's server at each of ``args.connections``; returns the requests it used (made
    here if ``requests`` is None), for the next store's server."""
    key = tmp / "pem-key.pem"
    if key.exists():
        data = tmp / f"pem-{store}-data"
        shutil.copytree(tmp / "pem-data", data, ignore=shutil.ignore_patterns(
            "ledger.sqlite3*", "logs", "certs", ".provserver.lock"))  # fmt: skip
        info = load_cert_info(tmp / "pem-certinfo.c")
    else:
        data, info = create_signer(tmp, "pem", "--backend", "pem", "--pem-key", str(key))
    backend = ["--signers", "pem", "--pem-key", str(key)]
    via = [str(Path(__file__).resolve()), "--serve-file-store", "--"] if store == "file" else [
        "-m", "provserver.cli"]  # fmt: skip
    command = [sys.executable, *via, *server_args(data, *backend, ledger=ledger)]
    if requests is None:
        requests = Requests(info, keys=0)
    requests.rewind()  # a new server, a new ledger: the same devices and keys are new to it
    with serving(command, tmp / f"pem-{store}-console.txt", {}, 1) as server:
        for conns in args.connections:
            before, files_before = raw_x509_rate(RAW_AROUND_POINT), probe.cost_us()
            # enough requests for the point made beforehand, so that the stations do not make
            # keys while it runs (a server at STATIONS_MAX_RATIO of the raw rate, warm-up too)
            want = requests.counter + int(STATIONS_MAX_RATIO * before * (args.seconds + 1))
            if want - len(requests.encoded) >= 100_000:  # a long point: say why nothing moves
                print(f"  making {want - len(requests.encoded)} more requests...", flush=True)
            requests.ensure(want)
            made_before = requests.made_during_load
            point = measure(server, requests, conns, args.seconds)
            around = (before + raw_x509_rate(RAW_AROUND_POINT)) / 2
            files_around = (files_before + probe.cost_us()) / 2
            made = requests.made_during_load - made_before
            line(
                f"pem, {store}, {conns} connection(s)",
                point,
                around,
                f"; raw X.509 around the point {around:.0f}/s, file create {files_around:.0f} µs"
                + (f"; {made} requests made by the stations during the point" if made else ""),
            )
    return requests


def serve_file_store(server_argv: list[str]) -> None:
    """Run `provserver` with the app note's file record store instead of the ledger."""
    from provserver import cli, signing

    def file_store(data_dir: Any, ledger: object = None, **_: object) -> object:
        return signing.open_file_record_store(data_dir)

    signing.open_ledger_record_store = file_store  # type: ignore[assignment]
    cli.main.main(args=server_argv, prog_name="provserver")


def bench_pkcs11(tmp: Path, args: argparse.Namespace, raw: float) -> None:
    try:
        import pkcs11  # noqa: F401 - only whether it is there

        from provserver.signers.pkcs11 import find_softhsm2
    except ImportError as exc:
        print(f"pkcs11: skipped: python-pkcs11 not installed ({exc})", flush=True)
        return
    lib = find_softhsm2()
    if lib is None or shutil.which("softhsm2-util") is None:
        print("pkcs11: skipped: SoftHSM2 not installed (Debian package softhsm2)", flush=True)
        return
    folder = tmp / "softhsm"
    (folder / "tokens").mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    env = {"SOFTHSM2_CONF": str(conf), "ATCAPROV_PKCS11_PIN": SOFTHSM_PIN}
    init = ["softhsm2-util", "--init-token", "--free", "--label", "Bench HSM",
            "--pin", SOFTHSM_PIN, "--so-pin", "271828"]  # fmt: skip
    subprocess.run(init, check=True, capture_output=True, timeout=60, env={**os.environ, **env})
    data, info = create_signer(
        tmp, "pkcs11", "--backend", "pkcs11", "--pkcs11-lib", lib, "--pkcs11-token", "Bench HSM",
        env=env,
    )  # fmt: skip
    command = [sys.executable, "-m", "provserver.cli",
               *server_args(data, "--signers", "pkcs11", "--pkcs11-lib", lib,
                            "--pkcs11-token", "Bench HSM")]  # fmt: skip
    requests = Requests(info)
    with serving(command, tmp / "pkcs11-console.txt", env, 1) as server:
        for conns in args.connections:
            line(
                f"pkcs11 (SoftHSM2), {conns} connection(s)",
                measure(server, requests, conns, args.seconds),
                raw,
            )


def bench_sim(tmp: Path, args: argparse.Namespace, raw: float) -> None:
    master = tmp / "sim-master"
    data, info = create_signer(tmp, "sim", "--backend", "sim", "--modules", str(master))
    (module,) = master.glob("signer-*.json")
    requests = Requests(info)
    one_module_rate: float | None = None
    for count in args.sim_modules:
        folder = tmp / f"sim-{count}"
        folder.mkdir()
        for i in range(count):  # copies of one chip: the same key, a pool of `count` modules
            shutil.copyfile(module, folder / f"signer-{i}.json")
        command = [sys.executable, str(Path(__file__).resolve()), "--serve-timed-sim",
                   str(args.timing_scale), "--",
                   *server_args(data, "--signers", "sim", "--modules", str(folder))]  # fmt: skip
        with serving(command, tmp / f"sim-{count}-console.txt", {}, count) as server:
            point = measure(server, requests, args.sim_connections, args.seconds)
        if one_module_rate is None and count == 1:
            one_module_rate = point.rate
        scale = f", x{point.rate / one_module_rate:.2f} of 1 module" if one_module_rate else ""
        line(
            f"sim x{count} (timing {args.timing_scale:g}), {args.sim_connections} conns",
            point,
            raw,
            scale,
        )


def serve_timed_sim(scale: float, server_argv: list[str]) -> None:
    """Run `provserver` with every chip of the sim back-end at ``timing_scale`` = ``scale``."""
    from provserver import cli
    from provserver.signers import sim

    load = getattr(sim, "_load_chip", None)
    if load is None:
        raise SystemExit(
            "bench_server: provserver.signers.sim._load_chip is gone; update the bench"
        )

    def load_timed(path: Path) -> object:
        chip = load(path)
        chip.timing_scale = scale
        return chip

    sim._load_chip = load_timed  # type: ignore[assignment]
    cli.main.main(args=server_argv, prog_name="provserver")


def parse_stores(text: str) -> list[str]:
    stores = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in stores if x not in STORES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown store(s) {unknown}; known: {STORES}")
    return stores


def parse_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-file-store":
        rest = sys.argv[2:]
        serve_file_store(rest[1:] if rest[:1] == ["--"] else rest)
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-timed-sim":
        rest = sys.argv[3:]
        serve_timed_sim(float(sys.argv[2]), rest[1:] if rest[:1] == ["--"] else rest)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="load time per point")
    parser.add_argument("--connections", type=parse_list, default=[1, 16, 64])
    parser.add_argument("--sim-modules", type=parse_list, default=[1, 2, 4])
    parser.add_argument("--sim-connections", type=int, default=16)
    parser.add_argument("--timing-scale", type=float, default=1.0)
    parser.add_argument("--skip-pkcs11", action="store_true")
    parser.add_argument("--only", choices=["pem", "pkcs11", "sim"], default=None)
    parser.add_argument(
        "--stores",
        type=parse_stores,
        default=list(STORES),
        help="pem record stores, comma-separated: " + ",".join(STORES),
    )
    parser.add_argument(
        "--ledger",
        default=None,
        metavar="URL",
        help="the postgresql store's --ledger (default: a throwaway server); "
        "pkcs11 and sim servers use it too (default SQLite)",
    )
    parser.add_argument(
        "--tmp-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the run's temporary folder (data folders, signers) is made "
        "(default: the system's temporary folder)",
    )
    parser.add_argument(
        "--fs-wait",
        type=float,
        default=180.0,
        metavar="SECONDS",
        help="wait at most this long, before the points, while creating a file in the data "
        f"folders' file system costs over {FS_SLOW_US:.0f} µs (0: do not wait)",
    )
    args = parser.parse_args()
    if args.tmp_dir is not None and not args.tmp_dir.is_dir():
        parser.error(f"--tmp-dir {str(args.tmp_dir)!r}: no such folder (expected an existing one)")
    if args.ledger:
        LEDGER[:] = ["--ledger", args.ledger]

    seconds = min(args.seconds, 2.0)
    sign = raw_sign_rate(seconds)
    print(f"{'raw cryptography ECDSA P-256 sign':<34} {sign:9.1f} signs/s (one thread)", flush=True)
    raw = raw_x509_rate(seconds)
    print(
        f"{'raw X.509 build+sign (cryptography)':<34} {raw:9.1f} certificates/s (one thread):"
        " the ratio's reference",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-server-", dir=args.tmp_dir) as name:
        tmp = Path(name)
        if args.only in (None, "pem"):
            probe = FileCreateProbe(tmp / "file-create-probe")
            probe.wait_until_quick(max(args.fs_wait, 0.0))
        if args.only in (None, "pem"):
            bench_pem(tmp, args, raw, probe)
        if args.only in (None, "pkcs11") and not args.skip_pkcs11:
            bench_pkcs11(tmp, args, raw)
        if args.only in (None, "sim"):
            bench_sim(tmp, args, raw)


if __name__ == "__main__":
    main()
