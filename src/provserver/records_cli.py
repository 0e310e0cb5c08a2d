"""``provserver records``: reading the issuance ledger from the command line.

* ``records list``: issuances matching filters (a table, or JSON lines with ``--json``);
* ``records show SERIAL``: one device's whole history (device, issuances, events);
* ``records export --format csv|jsonl|pem|manifest -o FILE``: issuances to a file, streamed
  (one ledger page at a time, nothing kept per device: flat memory for a million devices),
  written to ``FILE.partial`` and renamed at the end, so a failed export leaves no half file;
  progress on stderr when it is a terminal;
* ``records verify-manifest FILE``: checks every entry of a secure-element manifest.

Every command opens the ledger read-only (:func:`provserver.ledger.open_ledger`): SQLite in
``--data-dir`` or the database of ``--ledger URL``; a running server is never blocked. The
manifest itself is :mod:`provserver.manifest`. Text from the ledger (station ids, signer
labels, messages) is escaped before it reaches the terminal.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from atcaprov.errors import AtcaprovError
from atcaprov.text import printable

from .ledger import (
    DeviceHistory,
    Event,
    Issuance,
    IssuanceState,
    Ledger,
    LedgerError,
    RecordFilter,
    ledger_time,
    open_ledger,
)
from .manifest import (
    DEFAULT_MODEL,
    ManifestError,
    ManifestFields,
    ManifestSigner,
    ManifestVerifier,
    iter_manifest,
    load_certificate,
    organization,
    secure_element,
    write_manifest,
)
from .paths import default_data_dir
from .records import der_to_pem, sanitize_field

F = TypeVar("F", bound=Callable[..., Any])
PROGRESS_INTERVAL_S = 0.5
FORMATS = ("csv", "jsonl", "pem", "manifest")
CSV_COLUMNS = (
    "device_sn", "state", "issued_at", "updated_at", "cert_sn", "public_key", "signer_id",
    "issuer_key_id", "signer", "station", "run_id", "issuance_id", "device_cert",
    "device_type",  # added last: a reader that counts columns finds the others where they were
)  # fmt: skip
# The issuances a manifest holds when no --state is given: the ones a chip may carry.
MANIFEST_DEFAULT_STATES = (IssuanceState.SIGNED, IssuanceState.INSTALLED)
_TIME_EXPECTED = "an ISO 8601 time with a zone (2026-11-21T05:13:23Z) or a date (2026-11-21)"
_MAX_PROBLEMS_SHOWN = 20


class RecordsError(AtcaprovError):
    """A records command cannot do what it was asked (already one line for the user)."""


# ---------------------------------------------------------------------------- options
def _ledger_options(func: F) -> F:
    func = click.option(
        "--ledger", default=None, metavar="URL",
        help="postgresql://... or sqlite:PATH. Default: DATA_DIR/ledger.sqlite3.",
    )(func)  # fmt: skip
    return click.option(
        "--data-dir", type=click.Path(path_type=Path), default=None,
        help="The server's data folder (its SQLite ledger). Default: see docs/server.md.",
    )(func)  # fmt: skip


def _check_time(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return ledger_time(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{printable(value)!s} is not {_TIME_EXPECTED} ({exc})", ctx, param
        ) from exc


def _check_part_numbers(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """``--part-number`` values as (model, part number) pairs; model "" for every entry."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        model, sep, number = value.rpartition("=")
        model, number = model.strip(), number.strip()
        if not number or (sep and not model):
            raise click.BadParameter(
                f"{printable(value)} is not a part number nor MODEL=PART_NUMBER", ctx, param
            )
        if model in dict(pairs):
            what = f"model {printable(model)}" if model else "every entry"
            raise click.BadParameter(f"two part numbers for {what}", ctx, param)
        pairs.append((model, number))
    return tuple(pairs)


def _filter_options(func: F) -> F:
    options = [
        click.option("--since", callback=_check_time, metavar="TIME",
                     help="Issued at or after TIME (ISO 8601 with a zone, or a date: UTC)."),
        click.option("--until", callback=_check_time, metavar="TIME",
                     help="Issued before TIME."),
        click.option("--signer", metavar="ID",
                     help="Signer: issuer key id, 4-hex signer id or a piece of its label."),
        click.option("--station", metavar="S", help="A piece of the station text."),
        click.option("--state", type=click.Choice([s.value for s in IssuanceState]),
                     help="Issuances in this state."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _record_filter(
    since: str | None, until: str | None, signer: str | None, station: str | None, state: str | None
) -> RecordFilter:
    if since is not None and until is not None and since >= until:
        raise click.BadParameter(
            f"--since {since} is not before --until {until}: nothing would match",
            param_hint="--since/--until",
        )
    return RecordFilter(
        since=since,
        until=until,
        signer=signer or None,
        station=station or None,
        state=IssuanceState(state) if state else None,
    )


def _open(data_dir: Path | None, ledger: str | None) -> Ledger:
    """The ledger, opened read-only; a RecordsError in one line if it cannot be.

    ``--data-dir`` / ``--ledger`` given before ``records`` (``provserver --data-dir D records
    list``) count too.
    """
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().params if ctx is not None else {}
    data_dir = data_dir if data_dir is not None else root.get("data_dir")
    ledger = ledger if ledger is not None else root.get("ledger")
    if ledger is None or ledger.split(":", 1)[0].lower() == "sqlite":
        folder = data_dir if data_dir is not None else default_data_dir()
        rest = "" if ledger is None else ledger.split(":", 1)[1] if ":" in ledger else ""
        if not rest and not (folder / "ledger.sqlite3").exists():
            raise RecordsError(
                f"no ledger in {folder} (no ledger.sqlite3: has a server run "
                "with this --data-dir? or give --ledger)"
            )
    try:
        opened = open_ledger(
            ledger, data_dir if data_dir is not None else default_data_dir(), read_only=True
        )
        opened.open()
    except LedgerError as exc:
        raise RecordsError(f"cannot open the ledger: {exc}") from exc
    return opened


def _fail(exc: AtcaprovError) -> None:
    click.echo(f"Error: {printable(str(exc))}", err=True)
    raise SystemExit(1) from exc


def _handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (RecordsError, LedgerError, ManifestError) as exc:
            _fail(exc)
        except BrokenPipeError:  # `records list | head`
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(0) from None
        return None

    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------------------- the group
@click.group(name="records")
def records() -> None:
    """Read the issuance ledger: list, show, export, verify a manifest (see docs/ledger.md)."""


# ---------------------------------------------------------------------------- list
def issuance_summary(issuance: Issuance) -> dict[str, Any]:
    """An issuance as JSON-ready values (no certificates); ``device_type`` is the chip model
    the request stated (``ATECC608B``), None if it stated none (a protocol v1 client)."""
    return {
        "id": issuance.id, "device_sn": issuance.device_sn,
        "device_type": issuance.device_type or None, "state": issuance.state.value,
        "issued_at": issuance.issued_at, "updated_at": issuance.updated_at,
        "cert_sn": issuance.cert_sn, "public_key": issuance.public_key,
        "signer_id": issuance.signer_id, "issuer_key_id": issuance.issuer_key_id,
        "signer": issuance.signer, "station": issuance.station, "run_id": issuance.run_id,
    }  # fmt: skip


def _device_type_text(issuance: Issuance) -> str:
    """The device type for a table or a line: ``-`` if the request stated none."""
    return sanitize_field(issuance.device_type) if issuance.device_type else "-"


def _table_row(issuance: Issuance) -> str:
    return (
        f"{issuance.issued_at}  {issuance.device_sn:<18}  {_device_type_text(issuance):<9}  "
        f"{issuance.state.value:<10}  "
        f"{issuance.cert_sn:<32}  {issuance.signer_id:<4}  "
        f"{sanitize_field(issuance.station)}"
    )


@records.command(name="list")
@_ledger_options
@_filter_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_handle_errors
def list_command(
    data_dir: Path | None,
    ledger: str | None,
    since: str | None,
    until: str | None,
    signer: str | None,
    station: str | None,
    state: str | None,
    as_json: bool,
) -> None:
    """Issuances (certificates issued), oldest first."""
    where = _record_filter(since, until, signer, station, state)
    with _open(data_dir, ledger) as opened:
        count = 0
        for issuance in opened.iter_issuances(where):
            if as_json:
                click.echo(json.dumps(issuance_summary(issuance)))
            else:
                if count == 0:
                    click.echo(
                        f"{'ISSUED AT':<27}  {'DEVICE SN':<18}  {'TYPE':<9}  {'STATE':<10}  "
                        f"{'CERT SN':<32}  {'SGNR':<4}  STATION"
                    )
                click.echo(_table_row(issuance))
            count += 1
        if not as_json:
            click.echo(f"{count} issuance(s).")


# ---------------------------------------------------------------------------- show
def _event_dict(event: Event) -> dict[str, Any]:
    return {
        "id": event.id, "time": event.time, "kind": event.kind.value,
        "issuance_id": event.issuance_id, "run_id": event.run_id, "station": event.station,
        "signer": event.signer, "public_key": event.public_key, "cert_sn": event.cert_sn,
        "code": event.code, "stage": event.stage, "part_state": event.part_state,
        "detail": event.detail,
    }  # fmt: skip


def history_dict(history: DeviceHistory) -> dict[str, Any]:
    device = history.device
    return {
        "device_sn": history.device_sn,
        "device": None if device is None else {
            "state": device.state.value, "current_issuance": device.current_issuance,
            "first_seen": device.first_seen, "updated_at": device.updated_at},
        "issuances": [{**issuance_summary(i), "device_cert": der_to_pem(i.device_cert)}
                      for i in history.issuances],
        "events": [_event_dict(e) for e in history.events],
    }  # fmt: skip


def _normalize_sn(serial: str) -> str:
    text = serial.strip().replace(":", "").replace(" ", "")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 9:
        raise click.BadParameter(
            f"{printable(serial)} is not a chip serial number (9 bytes, 18 hex digits, "
            "e.g. 01231E6CD82C0001EE)",
            param_hint="SERIAL",
        )
    return raw.hex().upper()


@records.command(name="show")
@click.argument("serial")
@_ledger_options
@click.option("--json", "as_json", is_flag=True, help="The history as one JSON object.")
@_handle_errors
def show_command(serial: str, data_dir: Path | None, ledger: str | None, as_json: bool) -> None:
    """One device's whole history: its state, every certificate issued, every event."""
    device_sn = _normalize_sn(serial)
    with _open(data_dir, ledger) as opened:
        history = opened.device_history(device_sn)
    if as_json:
        click.echo(json.dumps(history_dict(history), indent=2))
        return
    if history.device is None and not history.events:
        raise RecordsError(f"device {device_sn} is not in the ledger")
    if history.device is not None:
        d = history.device
        click.echo(
            f"Device {device_sn}: {d.state.value} (issuance {d.current_issuance}); "
            f"first seen {d.first_seen}, updated {d.updated_at}"
        )
    else:
        click.echo(f"Device {device_sn}: no certificate issued")
    click.echo(f"Issuances ({len(history.issuances)}):")
    for i in history.issuances:
        click.echo(
            f"  #{i.id}  {i.state.value:<10}  issued {i.issued_at}  cert sn {i.cert_sn}"
            f"  type {_device_type_text(i)}  signer {sanitize_field(i.signer)}"
            f"  station {sanitize_field(i.station)}"
        )
        click.echo(f"        public key {i.public_key}")
    click.echo(f"Events ({len(history.events)}):")
    for e in history.events:
        extra = "  ".join(
            f"{name} {sanitize_field(value)}" for name, value in (
                ("code", e.code), ("stage", e.stage), ("part", e.part_state),
                ("detail", e.detail)) if value)  # fmt: skip
        issuance = f"#{e.issuance_id}" if e.issuance_id is not None else "-"
        click.echo(
            f"  {e.time}  {e.kind.value:<10}  {issuance:<6}  run {e.run_id}  "
            f"station {sanitize_field(e.station)}  {extra}".rstrip()
        )


# ---------------------------------------------------------------------------- export
class Progress:
    """``Exported N devices`` on stderr, at most every PROGRESS_INTERVAL_S, on a terminal only."""

    def __init__(
        self, stream: IO[str] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self.enabled = self._stream.isatty()
        self._start = clock()
        self._next = self._start + PROGRESS_INTERVAL_S
        self.count = 0
        self._shown = False

    def step(self) -> None:
        self.count += 1
        if self.enabled and self._clock() >= self._next:
            self._next = self._clock() + PROGRESS_INTERVAL_S
            rate = self.count / max(self._clock() - self._start, 1e-9)
            self._stream.write(f"\rExported {self.count} device(s) ({rate:.0f}/s)...")
            self._stream.flush()
            self._shown = True

    def done(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def _csv_rows(issuances: Iterator[Issuance], progress: Progress, out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for i in issuances:
        writer.writerow([
            i.device_sn, i.state.value, i.issued_at, i.updated_at, i.cert_sn, i.public_key,
            i.signer_id, i.issuer_key_id, sanitize_field(i.signer), sanitize_field(i.station),
            i.run_id, i.id, base64.b64encode(i.device_cert).decode("ascii"),
            sanitize_field(i.device_type),
        ])  # fmt: skip
        progress.step()
    return progress.count


def _jsonl_rows(issuances: Iterator[Issuance], progress: Progress, out: IO[str]) -> int:
    for i in issuances:
        record = issuance_summary(i)
        record["device_cert"] = der_to_pem(i.device_cert)
        record["signer_cert"] = der_to_pem(i.signer_cert)
        record["root_cert"] = der_to_pem(i.root_cert) if i.root_cert is not None else None
        out.write(json.dumps(record) + "\n")
        progress.step()
    return progress.count


def _pem_rows(issuances: Iterator[Issuance], progress: Progress, out: IO[str]) -> int:
    for i in issuances:
        out.write(
            f"Device {i.device_sn} ({i.state.value}, issued {i.issued_at}, cert sn {i.cert_sn})\n"
        )
        out.write(der_to_pem(i.device_cert))
        progress.step()
    return progress.count


def _manifest_rows(
    signer: ManifestSigner,
    fields: ManifestFields,
) -> Callable[[Iterator[Issuance], Progress, IO[str]], int]:
    def write(issuances: Iterator[Issuance], progress: Progress, out: IO[str]) -> int:
        def entries() -> Iterator[dict[str, Any]]:
            for i in issuances:
                yield signer.entry(secure_element(i, fields))
                progress.step()

        return write_manifest(out, entries())

    return write


@records.command(name="export")
@_ledger_options
@_filter_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    required=True,
    help="csv, jsonl (with PEM certificates), pem (device certificates), manifest "
    "(Microchip secure-element manifest, signed).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="File to write ('-': standard output).",
)
@click.option(
    "--manifest-key",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="manifest: the manifest signer's private key (PEM, EC P-256).",
)
@click.option(
    "--manifest-cert",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="manifest: the manifest signer's certificate (PEM).",
)
@click.option(
    "--model",
    default=DEFAULT_MODEL,
    show_default=True,
    help="manifest: the model of issuances stored without a device type (protocol v1 "
    "clients); the others carry the model their request stated.",
)
@click.option(
    "--part-number",
    "part_numbers",
    multiple=True,
    metavar="[MODEL=]P",
    callback=_check_part_numbers,
    help="manifest: part number of MODEL's entries (MODEL=P, repeatable) or of every "
    "entry (P). Default: the entry's model.",
)
@click.option(
    "--provisioner",
    default="",
    metavar="ORG[/UNIT]",
    help="manifest: the provisioner's organization (and unit).",
)
@click.option(
    "--distributor",
    default=None,
    metavar="ORG[/UNIT]",
    help="manifest: the distributor (default: the provisioner).",
)
@click.option("--group-id", default="", help="manifest: groupId.")
@_handle_errors
def export_command(
    data_dir: Path | None,
    ledger: str | None,
    since: str | None,
    until: str | None,
    signer: str | None,
    station: str | None,
    state: str | None,
    fmt: str,
    output: Path,
    manifest_key: Path | None,
    manifest_cert: Path | None,
    model: str,
    part_numbers: tuple[tuple[str, str], ...],
    provisioner: str,
    distributor: str | None,
    group_id: str,
) -> None:
    """Write the issuances matching the filters to a file, streaming (flat memory).

    A manifest holds, without --state, the issuances a chip may carry (signed, installed):
    superseded, failed and abandoned certificates are left out.
    """
    where = _record_filter(since, until, signer, station, state)
    if fmt == "manifest":
        if manifest_key is None or manifest_cert is None:
            raise click.UsageError(
                "--format manifest needs --manifest-key KEY.pem and "
                "--manifest-cert CERT.pem (the manifest signer)"
            )
        manifest_signer = ManifestSigner.load(manifest_key, manifest_cert)
        fields = ManifestFields(
            model=model,
            part_number=dict(part_numbers).get(""),
            part_numbers={m: p for m, p in part_numbers if m},
            provisioner=organization(provisioner),
            distributor=organization(provisioner if distributor is None else distributor),
            group_id=group_id,
        )
        writer = _manifest_rows(manifest_signer, fields)
    elif manifest_key is not None or manifest_cert is not None:
        raise click.UsageError("--manifest-key / --manifest-cert apply to --format manifest only")
    else:
        writer = {"csv": _csv_rows, "jsonl": _jsonl_rows, "pem": _pem_rows}[fmt]
    with _open(data_dir, ledger) as opened:
        issuances = opened.iter_issuances(where)
        if fmt == "manifest" and state is None:
            issuances = (i for i in issuances if i.state in MANIFEST_DEFAULT_STATES)
        progress = Progress()
        count = _write_output(output, lambda out: writer(issuances, progress, out))
        progress.done()
    where_to = "standard output" if str(output) == "-" else str(output)
    click.echo(f"Exported {count} device(s) ({fmt}) to {printable(where_to)}.", err=True)


def _write_output(output: Path, write: Callable[[IO[str]], int]) -> int:
    """``write`` to stdout, or to ``OUTPUT.partial`` renamed to OUTPUT once complete."""
    if str(output) == "-":
        return write(sys.stdout)
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as out:
            count = write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, output)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise RecordsError(f"cannot write {output}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return count


# ---------------------------------------------------------------------------- verify-manifest
@records.command(name="verify-manifest")
@click.argument("manifest", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--manifest-cert",
    "manifest_certs",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A manifest signer certificate the entries may be signed by; repeatable.",
)
@click.option(
    "--root-ca",
    "root_cas",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Also check that each entry's signer certificate was issued by one of these; repeatable.",
)
@_handle_errors
def verify_manifest_command(
    manifest: Path, manifest_certs: tuple[Path, ...], root_cas: tuple[Path, ...]
) -> None:
    """Check every entry of a secure-element manifest and report the counts.

    Each entry: its JWS signature (ES256) by a manifest signer given with --manifest-cert
    (found by the x5t#S256 thumbprint; kid must be its key id), the payload's uniqueId equal to
    the header's, key 0's x/y equal to the device certificate's key, the device certificate
    signed by the signer certificate of x5c (and that one by a --root-ca if given).
    Exit status 0: every entry verified; 1: some did not; 2: not a manifest.
    """
    verifier = ManifestVerifier(
        [load_certificate(p, "manifest certificate") for p in manifest_certs],
        [load_certificate(p, "root CA certificate") for p in root_cas],
    )
    total = failed = 0
    try:
        with manifest.open(encoding="utf-8") as stream:
            for entry in iter_manifest(stream):
                total += 1
                check = verifier.check(entry)
                if check.problems:
                    failed += 1
                    if failed <= _MAX_PROBLEMS_SHOWN:
                        click.echo(
                            f"Entry {total} ({printable(check.unique_id)}): "
                            f"{printable('; '.join(check.problems))}"
                        )
    except ManifestError as exc:
        click.echo(f"Error: {manifest}: {printable(str(exc))}", err=True)
        raise SystemExit(2) from exc
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"Error: cannot read {manifest}: {exc}", err=True)
        raise SystemExit(2) from exc
    if failed > _MAX_PROBLEMS_SHOWN:
        click.echo(f"... and {failed - _MAX_PROBLEMS_SHOWN} more entries that failed")
    click.echo(f"{total} entries: {total - failed} verified, {failed} failed.")
    if failed:
        raise SystemExit(1)
