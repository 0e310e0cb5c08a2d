"""``provclient-cdc``: the command line of the operator's console client.

Options and their ``--help`` text follow app note 8971A section 3.4 (``--help``, ``--certinfo``,
``--config``, ``--host``, ``--port``) in the app note's layout (option column of 28, text wrapped
at 49), followed by the options a real line needs (board URL, slot locks, TLS, station id,
non-interactive mode, verification, station log, version) and the exit codes. :func:`main` is
the entry point; it builds a :class:`~provclient_cdc.session.Station` (one board) or a
:class:`~provclient_cdc.gang.Gang` (several ``--board``, or ``--board all``), runs it, and
always gives the terminal back.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import click

from atcaprov import __version__
from atcaprov.protocol import MAX_STATION_ID_BYTES
from atcaprov.terminal import ConsoleError

from .console import open_keys
from .failover import ServerListError, parse_servers
from .gang import ALL_BOARDS, Gang, board_urls
from .output import Output, OutputLogHandler
from .server_link import ServerLink, TlsOptions, TlsSetupError, make_client_tls
from .session import ExitCode, Station, StationOptions, default_station_id
from .station_log import default_log_dir

HELP_OPTION_COLUMN = 28
HELP_TEXT_WIDTH = 49

# (option as shown, description): the app note's table first, then the added options.
SEED_HELP: list[tuple[str, str]] = [
    ("--help", "Show help."),
    (
        "--certinfo filename (=atcaprov_cert_info_0.c)",
        "Path and file name for the provisioning configuration file. This is the "
        "atcaprov_cert_info_X.c file output by the Signing Module Utility when configuring "
        "a signer module. It contains information needed when requesting certificates from "
        "the Provisioning Server.",
    ),
    (
        "--config filename",
        "Path and file name for the ATECC508A device configuration zone data. If omitted, a "
        "default configuration will be used.",
    ),
    (
        "--host name/ip (=localhost)",
        "Provisioning server host name or IP address. If omitted, localhost is used, which "
        "assumes the Provisioning Server is running on the same computer.",
    ),
    ("--port num (=11235)", "Provisioning server port number. If omitted, 11235 is used."),
]

ADDED_HELP: list[tuple[str, str]] = [
    (
        "--server host:port",
        "A provisioning server; repeat it (or give a comma list) for several: the station "
        "uses the first one reachable and ready, and moves to the next between boards when "
        "it drops or is not ready (replaces --host/--port). --host also takes a comma list.",
    ),
    (
        "--board URL",
        "Use this board instead of scanning serial ports for kits: any pyserial URL or port, "
        "e.g. COM5, /dev/ttyACM0, a pty path, or socket://127.0.0.1:PORT for the virtual "
        "board (atcaprov sim board). Several (repeated, or a comma list) or 'all' (every kit "
        "found, and every kit plugged in while it runs): gang mode, every board provisioned "
        "at once.",
    ),
    (
        "--lock-slots LIST",
        "Slots to lock after the data zone lock, e.g. 0,2-4 (each must be Lockable in the "
        "config). Default: none (Locking slots...skipped).",
    ),
    ("--no-validate", "Skip the certificate validation stage after the data lock."),
    (
        "--no-data-lock-crc",
        "Lock the data zone without the summary CRC: only the certificate blocks are written "
        "(less chip time); the certificates are still rebuilt and compared before the lock "
        "and read back after it, but a Write the chip acknowledged without storing it is "
        "then found only after the lock (docs/library.md).",
    ),
    ("--station-id text", "Station name sent with each request (=host name)."),
    ("--tls-ca file", "TLS: CA certificate (PEM) the server's certificate must chain to."),
    ("--tls-cert file", "TLS: this station's certificate (PEM), for servers that require one."),
    ("--tls-key file", "TLS: the private key (PEM) of --tls-cert."),
    (
        "--tls-server-name name",
        "TLS: name to check in the server certificate (=--host).",
    ),
    ("--yes", "Do not wait for ENTER: provision each board as soon as it is found."),
    (
        "--verify",
        "Verify each board's part instead of provisioning it (locks, certificates rebuilt "
        "from the chip, chain, device key challenge); nothing is written and the server is "
        "not used.",
    ),
    ("--count N", "Stop after N boards, ok or not (=run until ESC)."),
    (
        "--json",
        "Print one JSON result line per board on stdout (operator lines go to stderr).",
    ),
    (
        "--connect-retries N (=12)",
        "Connection attempts to the server at start after the first one fails.",
    ),
    ("--retry-interval s (=5)", "Seconds between connection attempts (with a countdown)."),
    (
        "--wait-timeout s",
        "Give up when no board shows up, or a done board is not removed, within s seconds"
        " (=wait forever).",
    ),
    ("--kit-timeout s (=3)", "Seconds a kit has to answer one message."),
    ("--server-timeout s (=30)", "Seconds the server has to answer a request."),
    ("--verbose", "Show the library's diagnostic messages (kit and chip retries...)."),
    (
        "--log-dir folder",
        "Station log folder: one row per board (time, serial number, result, stage, error), "
        "one file per day (=per-user data folder, see docs/client.md).",
    ),
    ("-h", "Same as --help."),
    ("--version", "Show the version and exit."),
]

EXIT_CODES_HELP: list[tuple[int, str]] = [
    (ExitCode.OK, "every board provisioned or verified (--count reached, all ok)"),
    (ExitCode.BAD_INPUT, "bad arguments, unreadable input files, no station log"),
    (ExitCode.SERVER_UNREACHABLE, "server unreachable or unusable at start (TLS mismatch...)"),
    (ExitCode.BOARD_FAILED, "a board failed, failed verification, or was already provisioned"),
    (ExitCode.OPERATOR_QUIT, "operator quit (ESC) with no board failed"),
    (ExitCode.NO_BOARD, "no board (or no removal) within --wait-timeout"),
    (ExitCode.INTERRUPTED, "interrupted (Ctrl-C, SIGTERM)"),
]


def format_option_table(rows: Sequence[tuple[str, str]]) -> list[str]:
    """Rows in the app note's layout: two-space indent, option column 28, text width 49; an
    option longer than its column gets a line of its own."""
    lines: list[str] = []
    pad = " " * (2 + HELP_OPTION_COLUMN)
    for name, text in rows:
        wrapped = textwrap.wrap(text, HELP_TEXT_WIDTH) or [""]
        if len(name) < HELP_OPTION_COLUMN:
            lines.append(f"  {name:<{HELP_OPTION_COLUMN}}{wrapped[0]}")
            rest = wrapped[1:]
        else:
            lines.append(f"  {name}")
            rest = wrapped
        lines.extend(pad + w for w in rest)
    return lines


def help_text() -> str:
    """The whole --help output."""
    lines = [
        "Options:",
        *format_option_table(SEED_HELP),
        "",
        "Added options:",
        *format_option_table(ADDED_HELP),
        "",
        "Exit codes:",
    ]
    lines += [f"  {int(code):<4}{text}" for code, text in EXIT_CODES_HELP]
    lines += [
        "",
        "Keys: ENTER provisions the board shown, ESC quits at any prompt,",
        "      V verifies a part that is already provisioned.",
    ]
    return "\n".join(lines) + "\n"


class SeedHelpCommand(click.Command):
    """A click command whose --help is the app note's table (click's layout replaced)."""

    def get_help(self, ctx: click.Context) -> str:
        return help_text().rstrip("\n")

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write(help_text())


def parse_slot_list(value: str) -> tuple[int, ...]:
    """``0,2-4`` -> (0, 2, 3, 4); slots must be 0..15."""
    slots: set[int] = set()
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        lo_text, sep, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if sep else lo
        except ValueError:
            raise click.BadParameter(
                f"{value!r}: {part!r} is not a slot number or range (e.g. 0,2-4)"
            ) from None
        if not (0 <= lo <= 15 and 0 <= hi <= 15) or hi < lo:
            raise click.BadParameter(f"{value!r}: {part!r} is outside slots 0..15")
        slots.update(range(lo, hi + 1))
    return tuple(sorted(slots))


def _slot_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...]:
    return parse_slot_list(value) if value else ()


def _station_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    if value is None:
        return default_station_id()
    if len(value.encode("utf-8")) > MAX_STATION_ID_BYTES:
        raise click.BadParameter(
            f"{len(value.encode('utf-8'))} bytes; at most {MAX_STATION_ID_BYTES} bytes (UTF-8)"
        )
    return value


_FILE = click.Path(path_type=Path, dir_okay=False)


@click.command(cls=SeedHelpCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="provclient-cdc")
@click.option("--certinfo", type=_FILE, default=Path("atcaprov_cert_info_0.c"))
@click.option("--config", "config", type=_FILE, default=None)
@click.option("--host", default="localhost")
@click.option("--port", type=click.IntRange(1, 65535), default=11235)
@click.option("--server", "servers", multiple=True)
@click.option("--board", "boards", multiple=True)
@click.option("--lock-slots", callback=_slot_list, default=None)
@click.option("--no-validate", is_flag=True)
@click.option("--no-data-lock-crc", is_flag=True)
@click.option("--station-id", callback=_station_id, default=None)
@click.option("--tls-ca", type=_FILE, default=None)
@click.option("--tls-cert", type=_FILE, default=None)
@click.option("--tls-key", type=_FILE, default=None)
@click.option("--tls-server-name", default=None)
@click.option("--yes", is_flag=True)
@click.option("--verify", "verify_only", is_flag=True)
@click.option("--count", type=click.IntRange(min=1), default=None)
@click.option("--json", "json_lines", is_flag=True)
@click.option("--connect-retries", type=click.IntRange(min=0), default=12)
@click.option("--retry-interval", type=click.FloatRange(min=0), default=5.0)
@click.option("--wait-timeout", type=click.FloatRange(min=0), default=None)
@click.option("--kit-timeout", type=click.FloatRange(min=0.1), default=3.0)
@click.option("--server-timeout", type=click.FloatRange(min=0.1), default=30.0)
@click.option("--verbose", is_flag=True)
@click.option("--log-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
def main(
    certinfo: Path,
    config: Path | None,
    host: str,
    port: int,
    servers: tuple[str, ...],
    boards: tuple[str, ...],
    lock_slots: tuple[int, ...],
    no_validate: bool,
    no_data_lock_crc: bool,
    station_id: str,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_server_name: str | None,
    yes: bool,
    count: int | None,
    json_lines: bool,
    connect_retries: int,
    retry_interval: float,
    wait_timeout: float | None,
    kit_timeout: float,
    server_timeout: float,
    verbose: bool,
    verify_only: bool,
    log_dir: Path | None,
) -> None:
    """Provisioning Client CDC Example: provision ATECC508A boards with provserver."""
    _stacks_on_sigusr1()
    human = sys.stderr if json_lines else sys.stdout
    output = Output(human, sys.stdout if json_lines else None, live=human.isatty())
    _route_library_logs(output, verbose)
    try:
        tls = make_client_tls(TlsOptions(tls_ca, tls_cert, tls_key, tls_server_name))
    except TlsSetupError as exc:
        output.line(f"Error: {exc}")
        sys.exit(ExitCode.BAD_INPUT)
    try:
        addresses = parse_servers(host, port, servers)
    except ServerListError as exc:
        output.line(f"Error: --host/--server: {exc}")
        sys.exit(ExitCode.BAD_INPUT)
    host, port = addresses[0]
    urls = board_urls(boards)
    gang = len(urls) > 1 or urls == [ALL_BOARDS]
    if gang and ALL_BOARDS in urls:
        output.line("Error: --board all takes every kit found; give it alone")
        sys.exit(ExitCode.BAD_INPUT)
    options = StationOptions(
        certinfo=certinfo,
        host=host,
        port=port,
        config=config,
        board=urls[0] if urls and not gang else None,
        lock_slots=lock_slots,
        validate=not no_validate,
        data_lock_crc=not no_data_lock_crc,
        station_id=station_id,
        yes=yes,
        count=count,
        connect_retries=connect_retries,
        retry_interval=retry_interval,
        wait_timeout=wait_timeout,
        kit_timeout=kit_timeout,
        io_timeout=server_timeout,
        verify_only=verify_only,
        log_dir=log_dir if log_dir is not None else default_log_dir(),
    )

    def new_links() -> list[ServerLink]:
        """The station's servers in order (the first is used until it fails: failover.py)."""
        return [
            ServerLink(h, p, tls=tls, server_name=tls_server_name, io_timeout=server_timeout)
            for h, p in addresses
        ]

    if gang:
        sys.exit(run_gang(options, urls, output, new_links, live=human.isatty()))
    links = new_links()
    sys.exit(run_station(options, output, links[0], links[1:]))


def _route_library_logs(output: Output, verbose: bool) -> None:
    """Library diagnostics go to the operator lines with --verbose; without it they are not
    shown (every failure they accompany is reported by the exception that ends the stage)."""
    root = logging.getLogger()
    if verbose:
        root.addHandler(OutputLogHandler(output))
        root.setLevel(logging.DEBUG)
    else:
        root.addHandler(logging.NullHandler())


def run_station(
    options: StationOptions, output: Output, link: ServerLink, fallbacks: Sequence[ServerLink] = ()
) -> int:
    """Run a station with the process's terminal, restoring it whatever happens; ``fallbacks``:
    the servers after ``link`` in the list (see :mod:`.failover`)."""
    try:
        keys = open_keys(sys.stdin, want_input=not options.yes)
    except ConsoleError as exc:
        output.line(f"Error: {exc}")
        return ExitCode.BAD_INPUT
    restore = _terminate_on_signals()
    try:
        return Station(options, output, keys, link=link, fallbacks=fallbacks).run()
    except KeyboardInterrupt:
        output.line("")
        output.line("Interrupted.")
        return ExitCode.INTERRUPTED
    finally:
        keys.close()
        restore()


def run_gang(
    options: StationOptions,
    urls: list[str],
    output: Output,
    link_factory: Callable[[], list[ServerLink]],
    *,
    live: bool,
) -> int:
    """Run a gang of boards (:mod:`.gang`) with the process's terminal, restored whatever
    happens."""
    try:
        keys = open_keys(sys.stdin, want_input=not options.yes)
    except ConsoleError as exc:
        output.line(f"Error: {exc}")
        return ExitCode.BAD_INPUT
    restore = _terminate_on_signals()
    try:
        return Gang(options, urls, output, keys, link_factory=link_factory, live=live).run()
    except KeyboardInterrupt:  # during the start, before the boards run
        output.line("")
        output.line("Interrupted.")
        return ExitCode.INTERRUPTED
    finally:
        keys.close()
        restore()


def _stacks_on_sigusr1() -> None:
    """``kill -USR1 PID`` prints every thread's Python stack to the standard error (a station
    that seems stuck says where it is; the run goes on). Not on Windows (no SIGUSR1)."""
    sigusr1 = getattr(signal, "SIGUSR1", None)
    if sigusr1 is None:
        return
    try:
        sys.stderr.fileno()
    except (OSError, ValueError, AttributeError):  # no file behind it (a test runner's capture)
        return
    faulthandler.register(sigusr1, all_threads=True)


def _terminate_on_signals() -> Callable[[], None]:
    """SIGTERM/SIGHUP raise KeyboardInterrupt so that ``finally`` blocks restore the terminal."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous: dict[int, Any] = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


if __name__ == "__main__":  # pragma: no cover
    main()
