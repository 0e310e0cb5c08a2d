"""``provserver``: the command line of the provisioning server, and the run of one server.

:func:`main` is the click entry point; it turns options into :class:`Settings` and calls
:func:`run`, which takes the data folder's lock (one server per folder; a second one exits 2),
assembles the parts (console and activity log, signer back-ends and manager, signer profiles,
ledger and record store, signing service, TCP server), prints the start sequence of app note
8971A section 2.2.1, serves until ESC, Ctrl-C or SIGTERM, and shuts down cleanly
(``Server stopped.``; a shutdown that could not close the records says why in one line and
exits 1). :func:`run` takes its console, password source and stop event as
arguments so that tests can drive a whole server in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import click

import atcaprov
from atcaprov.errors import AtcaprovError
from atcaprov.protocol import MAX_BODY_SIZE
from atcaprov.return_codes import ReturnCodeError

from .backend_options import (
    MissingOptionError,
    backend_kwargs,
    chosen_backends,
    click_options,
    command_options,
)
from .console import (
    Console,
    ConsoleLogHandler,
    EnvPasswordSource,
    NoPasswordSource,
    PasswordSource,
    TerminalKeys,
    TerminalPasswordSource,
)
from .event_loop import EVENT_LOOPS, EventLoopError
from .event_loop import resolve as resolve_event_loop
from .event_loop import run as run_event_loop
from .folder_lock import DataFolderInUseError, DataFolderLock, DataFolderLockError
from .ledger.writer_process import WRITER_CHOICES, resolve_writer
from .manager import SignerManager
from .paths import DataDir, DataDirError, default_data_dir
from .profile import ProfileError, ProfileStore
from .records import RecordStore
from .records_cli import records as records_group
from .retention import RotatingActivityLog, retention_task
from .server import ProvisioningServer, ServerLimits, make_tls_context
from .signer_cli import signer as signer_group
from .signers.base import (
    SignerBackend,
    SignerError,
    available_backends,
    open_backend,
)
from .signing import SigningService, build_signing_service, open_ledger_record_store

if TYPE_CHECKING:
    from .metrics import MetricsServer, ServerMetrics

DEFAULT_PORT = 11235
DEFAULT_HOST = "0.0.0.0"
MIN_FREE_BYTES = 1 << 20  # the server does not start with less free space in its data folder


class StartupError(AtcaprovError):
    """The server cannot start with these settings."""


class ShutdownError(AtcaprovError):
    """The server stopped but could not close its records cleanly (already on the console)."""


@dataclass
class Settings:
    """Everything the command line can set."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    signers: list[str] = field(default_factory=list)  # empty: automatic choice
    # The back-ends' options on the command line (see their cli_options), by parameter name.
    modules: Path | None = None
    hidapi: str | None = None
    pkcs11_lib: str | None = None
    pkcs11_token: str | None = None
    pem_key: Path | None = None
    pem_cert: Path | None = None
    profiles: list[Path] = field(default_factory=list)
    rescan_interval: float = 2.0
    limits: ServerLimits = field(default_factory=ServerLimits)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    password_env: str | None = None
    ledger: str | None = None  # None: SQLite in the data folder; or sqlite:PATH, postgresql://
    allow_reprovision: bool = False
    keep_days: int | None = None  # remove activity / signing logs older than this (None: keep)
    log_max_bytes: int | None = None  # new activity and signing logs past this size (also per day)
    metrics: tuple[str, int] | None = None  # --metrics HOST:PORT (provserver.metrics)
    # where ledger commits run, resolved: thread or process (the command line's default, auto,
    # is process on POSIX systems)
    commit_writer: str = "thread"
    event_loop: str = "asyncio"  # --event-loop, resolved: asyncio or uvloop

    def backend_values(self) -> dict[str, Any]:
        """The values of the back-ends' ``serve`` options (click parameter name -> value)."""
        return {option.dest: getattr(self, option.dest) for _, option in command_options("serve")}

    def backend_names(self) -> list[str]:
        """Back-ends to use: those asked for, else ``hid`` plus every one given options."""
        if self.signers:
            return list(dict.fromkeys(self.signers))
        return chosen_backends("serve", self.backend_values())

    def backend_options(self, name: str) -> dict[str, Any]:
        """Keyword options for :func:`open_backend` of back-end ``name``."""
        try:
            return backend_kwargs(name, "serve", self.backend_values(), self.data_dir)
        except MissingOptionError as exc:
            raise StartupError(str(exc)) from exc


def open_backends(settings: Settings, console: Console) -> list[SignerBackend]:
    """Build the signer back-ends; one that cannot be built is logged and skipped."""
    backends: list[SignerBackend] = []
    explicit = bool(settings.signers)
    for name in settings.backend_names():
        try:
            backends.append(open_backend(name, **settings.backend_options(name)))
        except (SignerError, StartupError, ImportError) as exc:
            if explicit:
                raise StartupError(f"signer back-end {name}: {exc}") from exc
            console.warning(f"Signer back-end {name} not available: {exc}")
    return backends


def _passwords_for(settings: Settings, keys: TerminalKeys | None) -> PasswordSource:
    if settings.password_env is not None:
        return EnvPasswordSource(settings.password_env)
    if keys is not None:
        return TerminalPasswordSource(keys)
    return NoPasswordSource()


async def run(
    settings: Settings,
    *,
    console: Console,
    passwords: PasswordSource | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[ProvisioningServer], None] | None = None,
    terminal: TerminalKeys | None = None,
    install_signal_handlers: bool = False,
    records: RecordStore | None = None,
    folder_lock: DataFolderLock | None = None,
) -> None:
    """Run one server until ``stop`` is set (or a signal / ESC when those are wired).

    ``records`` replaces the ledger record store (tests); ``on_ready`` is called once the server
    listens and the first signer scan is done. ``folder_lock``: the data folder's lock, already
    held (else run() takes it: :class:`DataFolderInUseError` if another server has it); it is
    taken before anything in the folder is touched.

    The start checks what it can before it writes anything: the console lines go to a memory
    buffer until the server listens; only then are the data folder and the activity log
    created (and the buffer copied into the log), then the record store opened. A start that
    fails on the way (bad option, port in use, a record store that cannot open) removes the
    activity log and the folders it created, so the data folder is left as it was.
    """
    stop_event = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    lock = folder_lock if folder_lock is not None else DataFolderLock(settings.data_dir)
    own_lock = not lock.held
    lock.acquire()  # before anything in the folder is touched
    try:
        _check_free_space(settings.data_dir)
    except DataDirError as exc:  # one line, nothing touched
        console.error(f"Server cannot run: {exc}")
        if own_lock:
            lock.release(remove_if_created=True)
        raise
    data = DataDir(settings.data_dir)
    started = datetime.now()
    early_lines = io.StringIO()
    console.add_sink(early_lines)
    start_files = _StartFiles(data)
    installed: list[signal.Signals] = []
    log_handler = ConsoleLogHandler(console)
    logging.getLogger().addHandler(log_handler)
    manager: SignerManager | None = None
    server: ProvisioningServer | None = None
    service: SigningService | None = None
    metrics_server: MetricsServer | None = None
    ready = False
    stop_problems: list[str] = []
    retention: asyncio.Task[None] | None = None
    try:
        console.info("Provisioning Server started.")
        if install_signal_handlers:
            installed = _install_signal_handlers(loop, stop_event, console)
        if terminal is not None:
            terminal.start()
        tls = None
        if settings.tls_cert is not None or settings.tls_key is not None:
            if settings.tls_cert is None or settings.tls_key is None:
                raise StartupError("TLS needs both --tls-cert and --tls-key")
            tls = make_tls_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        elif settings.tls_client_ca is not None:
            raise StartupError("--tls-client-ca needs --tls-cert and --tls-key")
        backends = open_backends(settings, console)
        password_source = passwords if passwords is not None else _passwords_for(settings, terminal)
        manager = SignerManager(
            backends, console, password_source, rescan_interval=settings.rescan_interval
        )
        await manager.start()
        profile_dirs = [data.signers, *settings.profiles]
        metrics = _metrics_for(settings)
        if records is None:
            lock_fd = lock.fileno()
            records = open_ledger_record_store(
                data,
                settings.ledger,
                console=console,
                allow_reprovision=settings.allow_reprovision,
                writer=settings.commit_writer,
                inherit_fds=() if lock_fd is None else (lock_fd,),
                log_max_bytes=settings.log_max_bytes,
            )
        if metrics is not None:
            records = metrics.metered(records)
            metrics.attach(manager=manager)
        service = build_signing_service(
            manager=manager, console=console, profile_dirs=profile_dirs, records=records
        )
        server = ProvisioningServer(
            service.handle if metrics is None else metrics.cert_handler(service.handle),
            console,
            ready_handler=service.ready
            if metrics is None
            else metrics.ready_handler(service.ready),
            host=settings.host,
            port=settings.port,
            limits=settings.limits,
            tls=tls,
            report_handler=service.handle_report
            if metrics is None
            else metrics.report_handler(service.handle_report),
            on_refusal=None if metrics is None else metrics.connection_refused,
        )
        await server.start()
        if metrics is not None and settings.metrics is not None:
            metrics.attach(server=server)
            metrics_server = metrics.listener(*settings.metrics)
            await metrics_server.start()
            console.info(
                f"Metrics on {metrics_server.url}/metrics, health check on"
                f" {metrics_server.url}/healthz."
            )
        # Listening: from here on the data folder is written.
        start_files.open_activity_log(console, early_lines, started, settings.log_max_bytes)
        try:
            await service.open()
        except AtcaprovError:
            service = None  # nothing to close
            raise
        if settings.keep_days is not None:
            activity = start_files.log
            retention = asyncio.create_task(
                retention_task(
                    console,
                    data.logs,
                    settings.keep_days,
                    keep=lambda path: activity is not None and path == activity.path,
                )
            )
        console.info(f"Version: atcaprov {atcaprov.__version__}.")
        console.info(f"Data folder: {data.root.resolve()}.")
        if isinstance(password_source, EnvPasswordSource) and not password_source.is_set:
            console.warning(
                f"--password-env: environment variable {password_source.variable} is not "
                "set; signer modules that need a password stay locked."
            )
        found = functools.partial(
            report_found, console, manager, ProfileStore(profile_dirs), backends
        )
        await manager.start_scanning(after_first_scan=found)
        ready = True
        if on_ready is not None:
            on_ready(server)
        await stop_event.wait()
    except AtcaprovError as exc:
        console.error(f"Server cannot run: {_reason(exc)}")
        raise
    finally:
        # Every step runs whatever the one before did: the terminal is always restored.
        if retention is not None:
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
        steps: list[Callable[[], Awaitable[None]]] = []
        if metrics_server is not None:
            steps.append(metrics_server.stop)
        if server is not None:
            steps.append(server.stop)
        if manager is not None:
            steps.append(manager.stop)
        if service is not None:
            steps.append(service.close)
        for step in steps:
            try:
                await step()
            except AtcaprovError as exc:
                stop_problems.append(_reason(exc))
        if terminal is not None:
            terminal.stop()
        for sig in installed:
            loop.remove_signal_handler(sig)
        logging.getLogger().removeHandler(log_handler)
        if stop_problems:
            console.error(f"Server did not stop cleanly: {'; '.join(stop_problems)}")
        console.info("Server stopped.")
        console.remove_sink(early_lines)
        start_files.close(console, keep=ready)
        if own_lock:
            lock.release(remove_if_created=not ready)
    if stop_problems:
        raise ShutdownError("; ".join(stop_problems))


def _metrics_for(settings: Settings) -> ServerMetrics | None:
    """The metrics of this run, with ``--metrics`` (prometheus_client imported only then)."""
    if settings.metrics is None:
        return None
    try:
        from .metrics import ServerMetrics
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise StartupError(f"--metrics needs the prometheus_client package: {exc}") from exc
    return ServerMetrics()


def _check_free_space(folder: Path) -> None:
    """Refuse to start on a (nearly) full disk: records could not be written."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise DataDirError(f"cannot check the free space of {folder}: {exc}") from exc
    if free < MIN_FREE_BYTES:
        raise DataDirError(
            f"data folder {folder}: only {free // 1024} kB free on its disk, at least "
            f"{MIN_FREE_BYTES // 1024} kB are needed to record signings; free some space"
        )


def _reason(exc: AtcaprovError) -> str:
    """An error's text for a console line (a return-code error without its code name)."""
    return exc.message if isinstance(exc, ReturnCodeError) else str(exc)


class _StartFiles:
    """The activity log and the data folders one run creates; removed again if it never starts."""

    def __init__(self, data: DataDir) -> None:
        self._data = data
        self._created: list[Path] = []
        self._log_path: Path | None = None
        self._log_file: TextIO | None = None
        self.log: RotatingActivityLog | None = None  # the activity log (rotating sink)

    def open_activity_log(
        self,
        console: Console,
        early_lines: io.StringIO,
        started: datetime,
        max_bytes: int | None = None,
    ) -> None:
        """Create the data folders and the activity log; the log starts with ``early_lines``."""
        missing = [f for f in self._data.folders() if not f.exists()]
        try:
            self._data.ensure()
        finally:
            self._created = [f for f in missing if f.exists()]
        try:
            self.log = RotatingActivityLog(self._data, max_bytes=max_bytes, started=started)
        except OSError as exc:
            path = self._data.activity_log_path(started)
            raise DataDirError(f"cannot create the activity log {path}: {exc}") from exc
        self._log_file = cast(TextIO, self.log)  # a TextIO-like sink
        self._log_path = self.log.path
        console.replace_sink(early_lines, self._log_file)

    def close(self, console: Console, *, keep: bool) -> None:
        """Close the activity log; without ``keep`` (a failed start) remove what was created."""
        if self._log_file is not None:
            console.remove_sink(self._log_file)
            # a full disk: the console already said the activity log stopped; drop its buffer
            with contextlib.suppress(OSError):
                self._log_file.close()
        if keep:
            return
        if self._log_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._log_path.unlink()
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):  # not empty: someone else wrote in it
                folder.rmdir()


def report_found(
    console: Console,
    manager: SignerManager,
    profiles: ProfileStore,
    backends: Sequence[SignerBackend],
) -> None:
    """After the first scan: how many signer modules were found, and which cannot be used.

    A warning when there is none at all, and one for each module without a signer profile
    (the server would refuse its requests).
    """
    modules = manager.modules()
    names = ", ".join(b.name for b in backends) or "none"
    if not modules:
        console.warning(
            f"No signer module or token found (back-ends: {names}); requests are refused "
            "until one is plugged in."
        )
        return
    locked = sum(1 for m in modules if not m.ready)
    plural = "s" if len(modules) != 1 else ""
    waiting = f", {locked} waiting for a password" if locked else ""
    console.info(f"Found {len(modules)} signer module{plural} (back-ends: {names}){waiting}.")
    for managed in modules:
        try:
            profiles.get(managed.identity.key_id)
        except ProfileError as exc:
            console.warning(
                f"{managed.label} has no usable profile, its requests are refused: {exc}"
            )


def _install_signal_handlers(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, console: Console
) -> list[signal.Signals]:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP (terminal window closed) all stop the server.

    A SIGHUP the server was started with ignored (``nohup provserver``) stays ignored.
    """
    installed: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            console.info(f"{sig.name} received, stopping...")
        stop.set()

    wanted = [signal.SIGINT, signal.SIGTERM]
    hangup = getattr(signal, "SIGHUP", None)  # POSIX only
    if hangup is not None and signal.getsignal(hangup) is not signal.SIG_IGN:
        wanted.append(hangup)  # ignored on purpose (nohup): leave it ignored
    for sig in wanted:
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError):
            continue  # Windows: Ctrl-C arrives as KeyboardInterrupt (handled in main)
        installed.append(sig)
    return installed


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _split_names(values: Sequence[str]) -> list[str]:
    names: list[str] = []
    for value in values:
        names.extend(n.strip() for n in value.split(",") if n.strip())
    known = set(available_backends())
    for name in names:
        if name not in known:
            raise click.BadParameter(
                f"unknown back-end {name!r}; known: {', '.join(sorted(known))}",
                param_hint="--signers",
            )
    return names


_PATH = click.Path(path_type=Path)
_FILE = click.Path(path_type=Path, exists=True, dir_okay=False)


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Without a command, runs the server. `provserver signer --help` for signer set-up.",
)
@click.version_option(atcaprov.__version__, "--version", prog_name="provserver")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0: any free port).",
)
@click.option(
    "--data-dir",
    type=_PATH,
    default=None,
    help="Data folder (logs/, certs/, signers/). Default: per-user folder, see docs/server.md.",
)
@click.option(
    "--signers",
    "signers",
    multiple=True,
    metavar="BACKEND[,BACKEND]",
    help="Signer back-ends to use (sim, hid, pkcs11, pem); repeatable or comma list. "
    "Default: hid plus every back-end whose options are given.",
)
@click_options("serve")
@click.option(
    "--profiles",
    type=_PATH,
    multiple=True,
    help="Extra folder of signer profiles (besides DATA_DIR/signers); repeatable.",
)
@click.option(
    "--rescan-interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between scans for plugged/unplugged signer modules.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Stations connected at once.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    help="Seconds a station may stay silent between requests.",
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    help="Seconds a station has to finish a message once it started it.",
)
@click.option(
    "--max-body-size",
    type=click.IntRange(1, MAX_BODY_SIZE),
    default=MAX_BODY_SIZE,
    show_default=True,
    help="Largest message body accepted (bytes).",
)
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds requests in progress get to finish at shutdown.",
)
@click.option("--tls-cert", type=_FILE, default=None, help="TLS: server certificate (PEM).")
@click.option("--tls-key", type=_FILE, default=None, help="TLS: server private key (PEM).")
@click.option(
    "--tls-client-ca",
    type=_FILE,
    default=None,
    help="TLS: CA of the station certificates; stations without one it signed are refused.",
)
@click.option(
    "--password-env",
    default=None,
    metavar="VAR",
    help="Read signer module passwords from this environment variable instead of prompting.",
)
@click.option(
    "--ledger",
    default=None,
    metavar="URL",
    help="Issuance ledger: postgresql://user@host/db (shared by several servers) or "
    "sqlite:PATH. Default: DATA_DIR/ledger.sqlite3. See docs/ledger.md.",
)
@click.option(
    "--allow-reprovision",
    is_flag=True,
    default=False,
    help="Sign a new key for a device the ledger has as installed (else refused with "
    "DEVICE_ALREADY_PROVISIONED).",
)
@click.option(
    "--keep-days",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Remove activity and signing logs not written for N days (checked at start and "
    "hourly). The ledger is never pruned. Default: keep everything.",
)
@click.option(
    "--log-max-size",
    type=click.IntRange(min=1),
    default=None,
    metavar="MB",
    help="Start a new activity log and a new signing log when the current one would pass MB "
    "megabytes (new ones start every day anyway).",
)
@click.option(
    "--metrics",
    "metrics_address",
    default=None,
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at /metrics and a health check at /healthz on this address "
    "only (e.g. 127.0.0.1:9464). Default: off. See docs/server.md.",
)
@click.option(
    "--event-loop",
    type=click.Choice(EVENT_LOOPS),
    default="auto",
    show_default=True,
    help="The event loop of the server and its commit writer. auto: uvloop where it is "
    "installed (not on Windows) and the server does not speak TLS, else asyncio's own; the "
    "same behaviour, less CPU per signing (see docs/server.md).",
)
@click.option(
    "--commit-writer",
    type=click.Choice(WRITER_CHOICES),
    default="auto",
    show_default=True,
    help="Where ledger commits, the signing log and certs/ files are written: worker threads "
    "of the server process, or a process of their own (uses a second CPU core; see "
    "docs/ledger.md). auto: process on POSIX systems, thread on Windows.",
)
@click.pass_context
def main(
    ctx: click.Context,
    /,
    host: str,
    port: int,
    data_dir: Path | None,
    signers: tuple[str, ...],
    profiles: tuple[Path, ...],
    rescan_interval: float,
    max_connections: int,
    idle_timeout: float,
    read_timeout: float,
    max_body_size: int,
    shutdown_grace: float,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    password_env: str | None,
    ledger: str | None,
    allow_reprovision: bool,
    keep_days: int | None,
    log_max_size: int | None,
    metrics_address: str | None,
    event_loop: str,
    commit_writer: str,
    **backend_values: Any,
) -> None:
    """Provisioning Server: signs device certificates for provisioning stations."""
    if ctx.invoked_subcommand is not None:
        return  # `provserver signer ...`: the server options do not apply
    metrics = None
    if metrics_address is not None:
        from .metrics import MetricsAddressError, parse_listen_address

        try:
            metrics = parse_listen_address(metrics_address)
        except MetricsAddressError as exc:
            raise click.BadParameter(str(exc), param_hint="--metrics") from None
    settings = Settings(
        host=host,
        port=port,
        data_dir=data_dir if data_dir is not None else default_data_dir(),
        signers=_split_names(signers),
        profiles=list(profiles),
        rescan_interval=rescan_interval,
        limits=ServerLimits(
            max_connections=max_connections,
            max_body_size=max_body_size,
            idle_timeout=idle_timeout,
            read_timeout=read_timeout,
            shutdown_grace=shutdown_grace,
        ),
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        password_env=password_env,
        ledger=ledger,
        allow_reprovision=allow_reprovision,
        keep_days=keep_days,
        log_max_bytes=None if log_max_size is None else log_max_size << 20,
        metrics=metrics,
        commit_writer=resolve_writer(commit_writer),
        event_loop=_event_loop(event_loop, tls=tls_cert is not None),
        **backend_values,
    )
    console = Console(sys.stdout)
    interactive = sys.stdin.isatty()
    lock = DataFolderLock(settings.data_dir)
    started_ok = True  # False: the start failed, the lock file (if new) is removed again
    try:  # first of all: a second server on this folder says so in one line, touches nothing
        lock.acquire()
    except (DataFolderInUseError, DataFolderLockError) as exc:
        console.error(f"Server cannot run: {exc}")
        raise SystemExit(2 if isinstance(exc, DataFolderInUseError) else 1) from exc
    if interactive:
        console.plain("Press ESC to quit.")
    try:
        run_event_loop(_main_async(settings, console, interactive, lock), settings.event_loop)
    except KeyboardInterrupt:
        # Windows (no SIGINT handler in the loop): asyncio.run cancelled run(), which has
        # already shut down and printed "Server stopped."; exit normally.
        return
    except AtcaprovError as exc:  # already logged by run()
        started_ok = isinstance(exc, ShutdownError)
        raise SystemExit(1) from exc
    finally:
        lock.release(remove_if_created=not started_ok)
        if console.screen_lost:
            _detach_from_lost_terminal()


def _event_loop(name: str, *, tls: bool) -> str:
    try:
        return resolve_event_loop(name, tls=tls)
    except EventLoopError as exc:
        raise click.BadParameter(str(exc), param_hint="--event-loop") from None


def _detach_from_lost_terminal() -> None:
    """The terminal is gone (window closed): point stdout/stderr at the null device, so that
    the interpreter's last flush cannot fail and turn a clean stop into an error exit."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            os.dup2(null, fd)
    os.close(null)


async def _main_async(
    settings: Settings, console: Console, interactive: bool, lock: DataFolderLock
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    terminal: TerminalKeys | None = None
    if interactive:

        def on_escape() -> None:
            loop.call_soon_threadsafe(_escape_pressed, console, stop)

        terminal = TerminalKeys(sys.stdin.fileno(), console, on_escape)
    with contextlib.suppress(asyncio.CancelledError):
        await run(
            settings,
            console=console,
            stop=stop,
            terminal=terminal,
            install_signal_handlers=True,
            folder_lock=lock,
        )


def _escape_pressed(console: Console, stop: asyncio.Event) -> None:
    if not stop.is_set():
        console.info("ESC pressed, stopping...")
    stop.set()


main.add_command(signer_group, name="signer")
main.add_command(records_group, name="records")

if __name__ == "__main__":
    main()
