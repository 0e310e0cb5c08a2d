"""The ``atcaprov`` command line: a click group that other modules extend with subcommands.

Layout: ``atcaprov <group> <command>``. :data:`main` is the entry point; :data:`sim` groups the
simulated hardware (``atcaprov sim board`` runs a virtual kit board); ``cert`` the certificate
tools (:mod:`atcaprov.cli.cert`), ``sim chip`` the saved emulated parts
(:mod:`atcaprov.cli.chip`). To add a command, define
it next to its code and attach it here with ``main.add_command(...)`` or ``sim.add_command(...)``
(keep heavy imports inside the command function so ``atcaprov --help`` stays fast).
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from .. import __version__
from ..errors import AtcaprovError
from .cert import cert
from .chip import chip

if TYPE_CHECKING:
    from ..emulator.kit_board import VirtualKitBoard


@click.group()
@click.version_option(__version__, prog_name="atcaprov")
def main() -> None:
    """atcaprov: production provisioning of ATECC508A and ATECC608A/B secure elements."""


main.add_command(cert)


@main.group()
def sim() -> None:
    """Simulated hardware: virtual kit boards with emulated chips."""


sim.add_command(chip)


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:0")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise click.BadParameter(f"{value!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise click.BadParameter(f"{value!r}: port {port} out of range 0..65535")
    return host, port


BOARD_HELP_COMMANDS = "commands: unplug | replug | next | status | quit"
BOARD_HELP_GANG = (
    "with --count: a command applies to every board, or to board N alone as"
    " 'unplug N' (boards numbered from 1)"
)


def parse_chip_types(value: str) -> tuple[str, ...]:
    """``atecc608b,atecc508a`` -> the model names, in order; refuses unknown or empty names."""
    from ..emulator import CHIP_TYPES

    names = tuple(part.strip().lower() for part in value.split(","))
    bad = [name for name in names if name not in CHIP_TYPES]
    if not names or bad:
        shown = ", ".join(repr(name) for name in bad) or repr(value)
        raise click.BadParameter(
            f"{shown}: expected chip types from {', '.join(CHIP_TYPES)},"
            " comma-separated (e.g. atecc608b,atecc508a)"
        )
    return tuple(name.upper() for name in names)


def _chip_types_option(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    return parse_chip_types(value)


@sim.command("board")
@click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the chip files (chip-000.json, ...); created if missing.",
)
@click.option(
    "--chips",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Create blank chips until the folder holds at least this many.",
)
@click.option(
    "--listen",
    "listen",
    default=None,
    metavar="HOST:PORT",
    help="Serve over TCP (port 0 = any free port). Default 127.0.0.1:0.",
)
@click.option("--pty", "use_pty", is_flag=True, help="Serve over a pseudo-terminal instead.")
@click.option(
    "--link",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="With --pty: keep a stable symlink at PATH to the current pty.",
)
@click.option(
    "--auto-swap",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Once the chip is provisioned (data zone locked) and the host has been "
    "silent for SECONDS, swap in the next blank chip.",
)
@click.option(
    "--timing-scale",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Emulate execution times: max time x this factor (0 = instant).",
)
@click.option(
    "--chip-type",
    "chip_types",
    default="atecc508a",
    show_default=True,
    metavar="TYPE[,TYPE...]",
    callback=_chip_types_option,
    help="Model of the blank chips made: atecc508a, atecc608a or atecc608b; a comma list "
    "alternates (atecc608b,atecc508a). Saved chips keep their own model.",
)
@click.option(
    "--count",
    "board_count",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Boards to run (a gang): each has its own chips in STATE/board-NN and its own "
    "port (--listen HOST:0 only); one 'Board ready: URL' line each, in order.",
)
def board_command(
    state_dir: Path,
    chips: int,
    listen: str | None,
    use_pty: bool,
    link: Path | None,
    auto_swap: float | None,
    timing_scale: float,
    chip_types: tuple[str, ...],
    board_count: int,
) -> None:
    """Run a virtual kit board serving emulated ATECC508A/608A/608B chips over the kit protocol.

    Prints "Board ready: <url>" once serving (socket://HOST:PORT, or the pty path); a kit-cdc
    client opens that URL. Control lines on stdin: unplug, replug (same chip), next (next chip
    not yet provisioned), status, quit. Chip files are saved on every unplug and on exit.
    With --count N: N boards, each with its own chips (STATE/board-01...) and URL; a control
    line applies to every board, or to one as "unplug 2"; event lines are prefixed
    "[board N] " (the "Board ready" lines are not).
    """
    from ..emulator.kit_board import VirtualKitBoard

    if use_pty and listen is not None:
        raise click.UsageError("--pty and --listen are exclusive")
    if link is not None and not use_pty:
        raise click.UsageError("--link needs --pty")
    address = None if use_pty else _parse_listen(listen or "127.0.0.1:0")
    if board_count > 1 and (use_pty or (address is not None and address[1] != 0)):
        raise click.UsageError("--count > 1 needs --listen HOST:0 (each board takes a free port)")

    def echo(text: str) -> None:
        print(text, flush=True)

    def echo_for(number: int) -> Callable[[str], None]:
        if board_count == 1:
            return echo
        return lambda text: echo(
            text if text.startswith("Board ready: ") else f"[board {number}] {text}"
        )

    boards: list[VirtualKitBoard] = []
    try:
        for number in range(1, board_count + 1):
            folder = state_dir if board_count == 1 else state_dir / f"board-{number:02d}"
            board = VirtualKitBoard(
                folder,
                chips=chips,
                listen=address,
                pty=use_pty,
                link=link,
                auto_swap=auto_swap,
                timing_scale=timing_scale,
                chip_types=chip_types,
                on_event=echo_for(number),
            )
            boards.append(board)
            board.start()
    except AtcaprovError as exc:
        for started in boards:
            started.stop()
        raise click.ClickException(str(exc)) from exc

    commands: queue.Queue[str | None] = queue.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            commands.put(line.strip().lower())
        commands.put(None)  # EOF: keep serving until a signal

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        commands.put("quit")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    threading.Thread(target=read_stdin, name="board-stdin", daemon=True).start()
    try:
        while True:
            try:
                cmd = commands.get(timeout=0.5)
            except queue.Empty:
                continue
            if cmd is None or cmd == "":
                continue
            if cmd in ("quit", "exit", "q"):
                break
            name, _, which = cmd.partition(" ")
            targets = _board_targets(boards, which.strip())
            if targets is None:
                echo(f"No board {which.strip()!r}; boards are numbered 1..{len(boards)}")
                continue
            for number in targets:
                _board_control(boards[number - 1], name, echo_for(number))
    except KeyboardInterrupt:
        echo("Interrupted")
    finally:
        signal.signal(signal.SIGTERM, previous)
        for board in boards:
            board.stop()
        echo(
            ("Board stopped" if len(boards) == 1 else f"{len(boards)} boards stopped")
            + "; chips saved in "
            + str(state_dir)
        )


def _board_targets(boards: list[VirtualKitBoard], which: str) -> list[int] | None:
    """The numbers (1-based) of the boards a control line names: all, or board ``which``."""
    if not which:
        return list(range(1, len(boards) + 1))
    try:
        number = int(which)
    except ValueError:
        return None
    return [number] if 1 <= number <= len(boards) else None


def _board_control(board: VirtualKitBoard, cmd: str, echo: Callable[[str], None]) -> None:
    """One control command for one board."""
    try:
        if cmd == "unplug":
            board.unplug()
        elif cmd == "replug":
            if board.plugged:
                board.unplug()
            board.replug(next_chip=False)
        elif cmd == "next":
            board.replug(next_chip=True)
        elif cmd == "status":
            echo(f"Status: {board.status()}")
        elif cmd in ("help", "?"):
            echo(f"{BOARD_HELP_COMMANDS}; {BOARD_HELP_GANG}")
        else:
            echo(f"Unknown command {cmd!r}; {BOARD_HELP_COMMANDS}")
    except AtcaprovError as exc:
        echo(f"Error: {exc}")
