"""``make demo``: the whole line on one machine, in one command (``python -m atcaprov_demo``).

What it does, each step through the real command-line programs (subprocesses):

1. make a demo folder ``./demo-run/<timestamp>/`` and print its path;
2. ``provserver signer create --backend sim``: a demo root CA, a password-less simulated
   signer module, the server's signer profile and ``atcaprov_cert_info_0.c``;
3. ``provserver`` on a free loopback port with its data folder in the demo folder;
4. ``atcaprov sim board --count 2``: two virtual kit boards (a gang), each with blank chips,
   each swapping in its next chip once one is provisioned (``--auto-swap``);
5. ``provclient-cdc --yes --count N --board socket://... --board socket://...``: gang mode,
   both boards provisioned at once; its operator lines are shown prefixed with their board;
6. stop board and server (the server then has every record on disk), verify every device
   certificate chain in the server's ``certs/`` folder with ``openssl verify`` (root as CA
   file, signer as untrusted) or, without openssl, with ``cryptography``; print
   ``N provisioned, N verified, 0 failed``.

All processes are stopped on success, failure and Ctrl-C; the files stay in the folder (with a
log per program). The exit status is non-zero on any failure. The building blocks
(:class:`DemoLayout`, :class:`Processes`, :func:`create_signer`, :func:`start_server`,
:func:`start_board`, :func:`start_boards`, :func:`run_client`, :func:`verify_chains`,
:func:`signing_rows`) are reused by the end-to-end tests and benchmarks.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import click

from atcaprov.cli import parse_chip_types
from atcaprov.errors import AtcaprovError

DEFAULT_COUNT = 5
DEMO_BOARDS = 2  # the demo's gang: one station provisioning two boards at once
STOP_TIMEOUT_S = 15.0
START_TIMEOUT_S = 60.0
SIGNER_NAME = "Demo Signer"


class DemoError(AtcaprovError):
    """A step of the demo failed (what, and where its log is)."""


# --------------------------------------------------------------------------------------------
# Folder layout
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoLayout:
    """Where everything of one run lives."""

    folder: Path

    @classmethod
    def new(cls, base: Path) -> DemoLayout:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = base / stamp
        n = 1
        while folder.exists():
            folder = base / f"{stamp}-{n}"
            n += 1
        folder.mkdir(parents=True)
        return cls(folder.resolve())

    @property
    def root_dir(self) -> Path:
        return self.folder / "root"

    @property
    def root_cert(self) -> Path:
        return self.root_dir / "root-ca.crt"

    @property
    def modules(self) -> Path:
        return self.folder / "modules"

    @property
    def data_dir(self) -> Path:
        return self.folder / "server-data"

    @property
    def certs(self) -> Path:
        return self.data_dir / "certs"

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    @property
    def boards(self) -> Path:
        return self.folder / "board-chips"

    @property
    def certinfo(self) -> Path:
        return self.folder / "atcaprov_cert_info_0.c"

    @property
    def station_logs(self) -> Path:
        return self.folder / "station-logs"

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"


def cli_command(script: str, module: str) -> list[str]:
    """The console script next to this Python (the installed CLI), else ``python -m module``."""
    exe = Path(sys.executable).parent / (script + (".exe" if os.name == "nt" else ""))
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", module]


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------
class ManagedProcess:
    """A child process whose output lines are logged to a file and kept for waiting on."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path,
        stdin_pipe: bool = False,
        on_line: Callable[[str, str], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.lines: list[tuple[str, str]] = []
        self._cond = threading.Condition()
        self._on_line = on_line
        self._log: IO[str] = log_path.open("a", encoding="utf-8")
        self._log.write("$ " + " ".join(self.argv) + "\n")
        self._log.flush()
        try:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=cwd,
                text=True,
                bufsize=1,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except OSError as exc:
            self._log.close()
            raise DemoError(f"cannot start {name} ({self.argv[0]}): {exc}") from exc
        self._readers = [
            threading.Thread(target=self._read, args=(stream, label), daemon=True)
            for stream, label in ((self.popen.stdout, "stdout"), (self.popen.stderr, "stderr"))
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: IO[str] | None, label: str) -> None:
        if stream is None:
            return
        for raw in stream:
            line = raw.rstrip("\n")
            with self._cond:
                self.lines.append((label, line))
                self._log.write(("" if label == "stdout" else "[stderr] ") + line + "\n")
                self._log.flush()
                self._cond.notify_all()
            if self._on_line is not None:
                self._on_line(label, line)
        with self._cond:
            self._cond.notify_all()

    def text(self, label: str | None = None) -> list[str]:
        with self._cond:
            return [line for lab, line in self.lines if label is None or lab == label]

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first output line matching ``pattern`` (regex search), waiting up to ``timeout``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for _, line in self.lines[seen:]:
                    found = regex.search(line)
                    if found:
                        return found
                seen = len(self.lines)
                if self.popen.poll() is not None and all(not t.is_alive() for t in self._readers):
                    raise DemoError(
                        f"{self.name} exited with status {self.popen.returncode} before printing"
                        f" {pattern!r}; see {self.log_path}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DemoError(
                        f"{self.name} did not print {pattern!r} within {timeout:g} s;"
                        f" see {self.log_path}"
                    )
                self._cond.wait(min(left, 0.2))

    def send(self, line: str) -> None:
        """Write a control line to the process's stdin (``unplug``, ``next``...)."""
        if self.popen.stdin is None:
            raise DemoError(f"{self.name} has no stdin pipe")
        try:
            self.popen.stdin.write(line + "\n")
            self.popen.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise DemoError(f"cannot send {line!r} to {self.name}: {exc}") from exc

    def wait(self, timeout: float) -> int:
        """Wait for the exit (polling, so that Ctrl-C interrupts at once); its status."""
        deadline = time.monotonic() + timeout
        while (code := self.popen.poll()) is None:
            if time.monotonic() >= deadline:
                raise DemoError(
                    f"{self.name} still running after {timeout:g} s; see {self.log_path}"
                )
            time.sleep(0.05)
        for t in self._readers:
            t.join(timeout=5)
        return code

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (then SIGKILL after ``timeout``); returns the exit status. Idempotent."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)
        for t in self._readers:
            t.join(timeout=5)
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except OSError as exc:  # the child is gone; its pipe with it
                self._log.write(f"[demo] closing stdin: {exc}\n")
        if not self._log.closed:
            self._log.close()
        return self.popen.returncode


class Processes:
    """The children of one run; all are stopped on exit, in reverse start order."""

    def __init__(self) -> None:
        self.children: list[ManagedProcess] = []

    def start(self, *args: Any, **kwargs: Any) -> ManagedProcess:
        proc = ManagedProcess(*args, **kwargs)
        self.children.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.children):
            proc.stop()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------
def create_signer(layout: DemoLayout, *, timeout: float = START_TIMEOUT_S) -> list[str]:
    """``provserver signer create --backend sim`` into the demo folder; returns its lines."""
    args = [
        "create",
        "--backend",
        "sim",
        "--name",
        SIGNER_NAME,
        "--no-password",
        "--root-dir",
        str(layout.root_dir),
        "--root-cn",
        "Demo Root CA",
        "--modules",
        str(layout.modules),
        "--data-dir",
        str(layout.data_dir),
        "--certinfo-out",
        str(layout.certinfo),
    ]
    argv = [*cli_command("provserver", "provserver.cli"), "signer", *args]
    with Processes() as procs:
        proc = procs.start(
            "provserver signer create", argv, layout.log("signer-create"), cwd=layout.folder
        )
        code = proc.wait(timeout)
    if code != 0:
        raise DemoError(
            f"provserver signer create failed (status {code}):"
            f" {' / '.join(proc.text()[-3:])}; see {proc.log_path}"
        )
    if not layout.certinfo.exists() or not layout.root_cert.exists():
        raise DemoError(
            f"provserver signer create did not write {layout.certinfo} and"
            f" {layout.root_cert}; see {proc.log_path}"
        )
    return proc.text()


def start_server(
    procs: Processes,
    layout: DemoLayout,
    *,
    timeout: float = START_TIMEOUT_S,
    extra: Sequence[str] = (),
) -> tuple[ManagedProcess, int]:
    """``provserver`` on 127.0.0.1, any free port; waits until it listens and found the signer."""
    argv = [
        *cli_command("provserver", "provserver.cli"),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        str(layout.data_dir),
        "--signers",
        "sim",
        "--modules",
        str(layout.modules),
        *extra,
    ]
    proc = procs.start("provserver", argv, layout.log("server"), cwd=layout.folder)
    found = proc.wait_for(r"Server listening on [^ ]*:(\d+)", timeout)
    proc.wait_for(r"Signer \(.*\) found", timeout)
    return proc, int(found.group(1))


def start_board(
    procs: Processes,
    layout: DemoLayout,
    *,
    chips: int,
    auto_swap: float | None = 0.3,
    timing_scale: float = 0.0,
    chip_types: str | None = None,
    timeout: float = START_TIMEOUT_S,
) -> tuple[ManagedProcess, str]:
    """``atcaprov sim board`` on 127.0.0.1; returns the process and its ``socket://`` URL.
    ``chip_types``: its ``--chip-type`` (``atecc608b``, ``atecc608b,atecc508a``...)."""
    proc, urls = start_boards(
        procs,
        layout,
        chips=chips,
        auto_swap=auto_swap,
        timing_scale=timing_scale,
        chip_types=chip_types,
        timeout=timeout,
    )
    return proc, urls[0]


def start_boards(
    procs: Processes,
    layout: DemoLayout,
    *,
    chips: int,
    count: int = 1,
    auto_swap: float | None = 0.3,
    timing_scale: float = 0.0,
    chip_types: str | None = None,
    timeout: float = START_TIMEOUT_S,
    name: str | None = None,
) -> tuple[ManagedProcess, list[str]]:
    """``atcaprov sim board --count N`` on 127.0.0.1 (``chips`` blank chips each); returns the
    process and the boards' ``socket://`` URLs in order (control line ``unplug 2`` unplugs
    board 2). ``name``: a program of its own (another board plugged in), called so, with its
    log and its chips in ``layout.folder / name``; else the layout's boards."""
    state = layout.boards if name is None else layout.folder / name
    argv = [
        *cli_command("atcaprov", "atcaprov.cli"),
        "sim",
        "board",
        "--listen",
        "127.0.0.1:0",
        "--chips",
        str(chips),
        "--state",
        str(state),
        "--timing-scale",
        f"{timing_scale:g}",
        "--count",
        str(count),
    ]
    if chip_types is not None:
        argv += ["--chip-type", chip_types]
    if auto_swap is not None:
        argv += ["--auto-swap", f"{auto_swap:g}"]
    proc = procs.start(
        name or "atcaprov sim board",
        argv,
        layout.log(name or "board"),
        cwd=layout.folder,
        stdin_pipe=True,
    )
    deadline = time.monotonic() + timeout
    proc.wait_for(r"Board ready: (\S+)", timeout)
    while True:
        urls = [
            line.removeprefix("Board ready: ").strip()
            for line in proc.text("stdout")
            if line.startswith("Board ready: ")
        ]
        if len(urls) >= count:
            return proc, urls[:count]
        if time.monotonic() >= deadline or proc.popen.poll() is not None:
            raise DemoError(
                f"{proc.name} started {len(urls)} of {count} boards within"
                f" {timeout:g} s; see {proc.log_path}"
            )
        time.sleep(0.05)


def _board_args(board_url: str | Sequence[str] | None) -> list[str]:
    if board_url is None:
        return []
    urls = [board_url] if isinstance(board_url, str) else list(board_url)
    return [arg for url in urls for arg in ("--board", url)]


@dataclass
class ClientRun:
    """What one ``provclient-cdc`` run did."""

    returncode: int
    lines: list[str]
    results: list[dict[str, Any]]
    wall_s: float

    @property
    def provisioned(self) -> int:
        return sum(1 for r in self.results if r.get("result") == "ok")

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r.get("result") != "ok")


def run_client(
    procs: Processes,
    layout: DemoLayout,
    port: int,
    board_url: str | Sequence[str] | None,
    count: int,
    *,
    echo: IO[str] | None = None,
    timeout: float | None = None,
    extra: Sequence[str] = (),
    certinfo: Path | None = None,
    on_line: Callable[[str, str], None] | None = None,
) -> ClientRun:
    """``provclient-cdc --yes --count N --json`` against the server and board; its operator
    lines are echoed to ``echo`` as they come and passed to ``on_line(stream, line)``. Several
    board URLs: gang mode (one ``--board`` each); ``board_url`` None: no ``--board``, the client
    scans the serial ports for kits."""
    certinfo_arg = str(certinfo) if certinfo is not None else layout.certinfo.name
    argv = [
        *cli_command("provclient-cdc", "provclient_cdc.cli"),
        "--yes",
        "--json",
        "--count",
        str(count),
        "--certinfo",
        certinfo_arg,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *_board_args(board_url),
        "--station-id",
        "demo-station",
        "--connect-retries",
        "3",
        "--retry-interval",
        "1",
        "--wait-timeout",
        "30",
        "--log-dir",
        str(layout.station_logs),
        *extra,
    ]

    def show(label: str, line: str) -> None:
        if echo is not None and label == "stderr":
            echo.write(line + "\n")
            echo.flush()
        if on_line is not None:
            on_line(label, line)

    started = time.monotonic()
    proc = procs.start(
        "provclient-cdc", argv, layout.log("client"), cwd=layout.folder, on_line=show
    )
    code = proc.wait(timeout if timeout is not None else 60.0 + 10.0 * count)
    wall = time.monotonic() - started
    results: list[dict[str, Any]] = []
    for line in proc.text("stdout"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DemoError(f"provclient-cdc printed a line that is not JSON: {line!r}") from exc
        if not isinstance(record, dict):
            raise DemoError(f"provclient-cdc printed JSON that is not an object: {line!r}")
        results.append(record)
    return ClientRun(code, proc.text("stderr"), results, wall)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
@dataclass
class ChainReport:
    """Result of verifying the certificates folder."""

    tool: str
    devices: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _newest_per_device(certs: Path) -> dict[str, Path]:
    """Each device's newest device certificate file (``certs/<day>/<SN>-<time>-device.pem``)."""
    newest: dict[str, Path] = {}
    for path in sorted(certs.glob("*/*-device.pem")):  # day folders, then times: oldest first
        newest[path.name.split("-", 1)[0]] = path
    return newest


def verify_chains(layout: DemoLayout, *, use_openssl: bool | None = None) -> ChainReport:
    """Verify root -> signer -> device for every device under the server's certs/."""
    openssl = shutil.which("openssl") if use_openssl in (None, True) else None
    if use_openssl and openssl is None:
        raise DemoError("openssl asked for but not found on PATH")
    report = ChainReport("openssl verify" if openssl else "cryptography")
    if not layout.certs.is_dir():
        report.failures.append(f"no certs folder at {layout.certs}")
        return report
    for sn, device in sorted(_newest_per_device(layout.certs).items()):
        report.devices.append(sn)
        signer = device.with_name(device.name[: -len("device.pem")] + "signer.pem")
        if not signer.exists():
            report.failures.append(f"{sn}: signer certificate {signer} missing")
            continue
        problem = (
            _openssl_verify(openssl, layout.root_cert, signer, device)
            if openssl
            else _crypto_verify(layout.root_cert, signer, device)
        )
        if problem is None:
            report.verified.append(sn)
        else:
            report.failures.append(f"{sn}: {problem}")
    return report


def _openssl_verify(openssl: str, root: Path, signer: Path, device: Path) -> str | None:
    try:
        proc = subprocess.run(
            [openssl, "verify", "-CAfile", str(root), "-untrusted", str(signer), str(device)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"openssl verify could not run: {exc}"
    if proc.returncode == 0 and proc.stdout.strip().endswith(": OK"):
        return None
    return f"openssl verify: {(proc.stdout + proc.stderr).strip()}"


def _crypto_verify(root_path: Path, signer_path: Path, device_path: Path) -> str | None:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    try:
        root = x509.load_pem_x509_certificate(root_path.read_bytes())
        signer = x509.load_pem_x509_certificate(signer_path.read_bytes())
        device = x509.load_pem_x509_certificate(device_path.read_bytes())
        signer.verify_directly_issued_by(root)
        device.verify_directly_issued_by(signer)
    except (OSError, ValueError, TypeError, InvalidSignature) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def signing_rows(layout: DemoLayout) -> list[dict[str, str]]:
    """Every row of the server's signing logs (``logs/signing-*.tsv``)."""
    rows: list[dict[str, str]] = []
    for path in sorted(layout.logs.glob("signing-*.tsv")):
        with path.open(encoding="utf-8", newline="") as fh:
            rows.extend(csv.DictReader(fh, delimiter="\t"))
    return rows


# --------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------
def run_demo(count: int, base: Path, out: IO[str], chip_types: str | None = None) -> int:
    """The whole demo; returns the exit status. ``chip_types``: the board's ``--chip-type``
    (None: the board's default, ATECC508A)."""
    layout = DemoLayout.new(base)

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    say(f"Demo folder: {layout.folder}")
    client: ClientRun | None = None
    with Processes() as procs:
        say("Creating a demo root CA and a simulated signer module (provserver signer create)...")
        create_signer(layout)
        say(f"  cert info: {layout.certinfo}")
        server, port = start_server(procs, layout)
        say(f"Provisioning server listening on 127.0.0.1:{port} (log: {server.log_path})")
        board, urls = start_boards(
            procs, layout, chips=count, count=DEMO_BOARDS, auto_swap=0.3, chip_types=chip_types
        )
        kinds = "" if chip_types is None else f" {chip_types.upper()}"
        say(
            f"{DEMO_BOARDS} virtual kit boards with up to {count} blank{kinds} chips each at"
            f" {', '.join(urls)} (log: {board.log_path})"
        )
        say(
            f"Running provclient-cdc --yes --count {count}"
            + "".join(f" --board {url}" for url in urls)
            + " (gang mode)"
        )
        say("")
        client = run_client(procs, layout, port, urls, count, echo=out)
        say("")
        board.stop()
        server_code = server.stop()  # the server closes its records before we read them
    if client.returncode != 0:
        say(f"provclient-cdc exited with status {client.returncode} (see {layout.log('client')})")
    if server_code not in (0, -signal.SIGTERM):
        say(f"provserver exited with status {server_code} (see {layout.log('server')})")
    chains = verify_chains(layout)
    for failure in chains.failures:
        say(f"Verification failed: {failure}")
    rows = [r for r in signing_rows(layout) if r.get("result") == "signed"]
    say(
        f"Certificate chains checked with {chains.tool} (root {layout.root_cert});"
        f" signing log rows: {len(rows)}"
    )
    failed = client.failed + len(chains.failures) + max(count - len(client.results), 0)
    say(f"{client.provisioned} provisioned, {len(chains.verified)} verified, {failed} failed")
    ok = (
        client.returncode == 0
        and failed == 0
        and client.provisioned == count
        and len(chains.verified) == count
        and len(rows) == count
    )
    say(f"Files left in {layout.folder}")
    return 0 if ok else 1


def _chip_types_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--chip-type``, checked as ``atcaprov sim board`` checks it (lower-case names)."""
    return None if value is None else ",".join(n.lower() for n in parse_chip_types(value))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--count",
    type=click.IntRange(1, 1000),
    default=DEFAULT_COUNT,
    show_default=True,
    help="Boards to provision.",
)
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-run"),
    show_default=True,
    help="Parent folder of the run's timestamped folder.",
)
@click.option(
    "--chip-type",
    "chip_types",
    default=None,
    metavar="TYPE[,TYPE...]",
    callback=_chip_types_option,
    help="Chip models of the virtual board (atecc508a, atecc608a, atecc608b; a"
    " comma-separated list alternates), passed to atcaprov sim board."
    "  [default: atecc508a]",
)
def main(count: int, folder: Path, chip_types: str | None) -> None:
    """Provision COUNT virtual boards end to end: signer set-up, server, board, client, checks."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        code = run_demo(count, folder, sys.stdout, chip_types)
    except KeyboardInterrupt:
        print("\nInterrupted: all demo processes stopped.", flush=True)
        code = 130
    except (AtcaprovError, OSError) as exc:
        print(f"Demo failed: {exc}", flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code)
