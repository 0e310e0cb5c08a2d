"""Certificate requests on the server: checking what a station sent, building and signing.

:func:`check_request` checks the parts of a request the server relies on (config zone, serial
number, device public key) and returns the facts taken from them; every refusal is a
:class:`RequestRefused` carrying the wire return code and a message saying what was received
and what was expected. The signing service that builds certificates lives below it; it also
answers readiness requests (:meth:`SigningService.ready`) from the state of the signer manager,
the profile store and the record store, without signing or recording anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from atcaprov.atcacert.build import CertBase, get_element, prepare, prepare_base
from atcaprov.atcacert.certdef import CertDef
from atcaprov.atcacert.errors import CertError
from atcaprov.crypto import CryptoFormatError, is_p256_point, public_key_from_xy, verify_digest
from atcaprov.datasheet import (
    ATECC508A,
    ATECC508A_CONFIG_MAP,
    LOCKED,
    SN_LAST,
    SN_PREFIX,
    UNLOCKED,
    serial_number,
)
from atcaprov.protocol import (
    CertReply,
    CertRequest,
    CertRequest2,
    DeviceReport,
    ErrorReply,
    ReadyReply,
    ReadyRequest,
    RecordedState,
    ReportAck,
    ReportOutcome,
)
from atcaprov.return_codes import ReturnCode, ReturnCodeError
from atcaprov.stages import ProvStage

from .console import Console
from .ledger.model import EventKind, IssueOp, RefusalOp, ReportOp
from .manager import SignerManager, SignerRequestError, signer_label
from .paths import DataDir
from .peer import Peer, clip_message, station_text
from .profile import ProfileError, ProfileStore
from .records import (
    RecordStore,
    RecordStoreError,
    utc_timestamp,
)
from .signers.base import SignerIdentity

CONFIG_ZONE_SIZE = ATECC508A.config_size
PUBLIC_KEY_SIZE = 64
LOCK_UNLOCKED = UNLOCKED
LOCK_LOCKED = LOCKED
_MAP = ATECC508A_CONFIG_MAP
MAX_CERT_BASES = 16  # certificate bases kept (one per signer, profile and issue hour)


class RequestRefused(ReturnCodeError):
    """The server will not sign this request; ``code`` goes on the wire, ``message`` too."""


@dataclass(frozen=True)
class CheckedRequest:
    """What the checks extracted from a request."""

    serial_number: bytes  # 9 bytes: config[0:4] + config[8:13]
    config_zone: bytes
    public_key: bytes  # 64 bytes X || Y
    data_zone_locked: bool


def check_config_zone(config_zone: bytes) -> bytes:
    """Check a config zone read from a device; return its 9-byte serial number."""
    if len(config_zone) != CONFIG_ZONE_SIZE:
        raise RequestRefused(
            ReturnCode.BAD_CONFIG_ZONE,
            f"config zone is {len(config_zone)} bytes, expected {CONFIG_ZONE_SIZE}",
        )
    sn = serial_number(config_zone)
    if sn in (bytes(9), b"\xff" * 9):
        raise RequestRefused(
            ReturnCode.MISSING_SERIAL_NUMBER,
            f"config zone carries no serial number (SN bytes are all {sn[0]:02X})",
        )
    if sn[0:2] != SN_PREFIX or sn[8] != SN_LAST:
        raise RequestRefused(
            ReturnCode.BAD_CONFIG_ZONE,
            f"serial number {sn.hex().upper()} is not an ATECC one: expected SN[0:2]=0123 "
            f"and SN[8]=EE, got SN[0:2]={sn[0:2].hex().upper()} and SN[8]={sn[8]:02X}",
        )
    lock_value, lock_config = config_zone[_MAP.lock_value], config_zone[_MAP.lock_config]
    if lock_config != LOCK_LOCKED:
        state = "unlocked" if lock_config == LOCK_UNLOCKED else "invalid"
        raise RequestRefused(
            ReturnCode.BAD_CONFIG_ZONE,
            f"config zone byte 87 (LockConfig) is 0x{lock_config:02X} ({state}); the config "
            "zone must be locked (0x00) before a key is generated and a certificate requested",
        )
    if lock_value not in (LOCK_LOCKED, LOCK_UNLOCKED):
        raise RequestRefused(
            ReturnCode.BAD_CONFIG_ZONE,
            f"config zone byte 86 (LockValue) is 0x{lock_value:02X}, expected 0x55 or 0x00",
        )
    if config_zone[90:92] != b"\x00\x00":
        raise RequestRefused(
            ReturnCode.BAD_CONFIG_ZONE,
            f"config zone bytes 90-91 (RFU) are {bytes(config_zone[90:92]).hex().upper()}, "
            "expected 0000",
        )
    return sn


def check_public_key(public_key: bytes) -> ec.EllipticCurvePublicKey:
    """Check a raw 64-byte X||Y public key is a point on P-256; return it as a key object."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise RequestRefused(
            ReturnCode.BAD_PUBLIC_KEY,
            f"device public key is {len(public_key)} bytes, expected {PUBLIC_KEY_SIZE} (X || Y)",
        )
    try:
        return public_key_from_xy(public_key)
    except CryptoFormatError:
        raise RequestRefused(
            ReturnCode.BAD_PUBLIC_KEY,
            f"device public key {bytes(public_key[:8]).hex().upper()}... is not a point on P-256",
        ) from None


def check_request(config_zone: bytes, public_key: bytes) -> CheckedRequest:
    """Run all request checks; return the extracted facts or raise :class:`RequestRefused`."""
    sn = check_config_zone(config_zone)
    if not is_p256_point(public_key):  # the cheap check; the full one says what is wrong
        check_public_key(public_key)
    return CheckedRequest(
        serial_number=sn,
        config_zone=bytes(config_zone),
        public_key=bytes(public_key),
        data_zone_locked=config_zone[_MAP.lock_value] == LOCK_LOCKED,
    )


# --------------------------------------------------------------------------------------------
# The signing service: request -> checks -> certificate -> signature -> record -> reply
# --------------------------------------------------------------------------------------------
def _hour_floor_utc(now: datetime) -> datetime:
    return now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Signed:
    """A signed request before it is recorded."""

    reply: CertReply
    signer: SignerIdentity
    module: str
    cert_sn: bytes  # the device certificate's serial number, minimal big-endian


class SigningService:
    """Serves one CertRequest: checks, builds the device certificate, signs, records, replies.

    No certificate leaves before :meth:`RecordStore.issue` has returned (the record durable);
    what goes out is what the store answers (a resumed device gets its earlier certificate
    again, the ledger may refuse); every refusal is recorded too. While the store cannot write
    (:attr:`RecordStore.failure`) nothing is signed. :meth:`handle_report` records a client's
    outcome report (protocol version 2).
    """

    def __init__(
        self,
        manager: SignerManager,
        profiles: ProfileStore,
        records: RecordStore,
        console: Console,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._manager = manager
        self._profiles = profiles
        self._records = records
        self._console = console
        self._clock = clock
        # The template with the per-signer, per-hour parts written (a handful of entries).
        self._bases: dict[tuple[int, datetime, bytes, bytes], CertBase] = {}

    async def open(self) -> None:
        await self._records.open()

    async def close(self) -> None:
        await self._records.close()

    async def handle(self, request: CertRequest, peer: Peer) -> CertReply | ErrorReply:
        """Answer one request (a refusal becomes an ErrorReply; nothing is raised for it)."""
        when = self._clock()
        station = station_text(peer, request.station_id)
        failure = self._records.failure
        if failure is not None:  # nothing signed, nothing recorded: the store cannot write
            message = f"the server cannot record signings now, so it signs nothing: {failure}"
            self._console.warning(
                f"Request from station {station} for device "
                f"{request.device_serial_number.hex().upper()} refused: "
                f"{ReturnCode.SERVER_ERROR.c_name}: records cannot be written."
            )
            return ErrorReply(ReturnCode.SERVER_ERROR, clip_message(message))
        try:
            signed = await self._sign(request, when)
        except (RequestRefused, SignerRequestError) as exc:
            return await self._refuse(request, station, when, exc.code, exc.message)
        except ProfileError as exc:
            return await self._refuse(request, station, when, ReturnCode.SERVER_ERROR, str(exc))
        except CertError as exc:
            return await self._refuse(
                request,
                station,
                when,
                ReturnCode.SERVER_ERROR,
                f"the signer's device cert def cannot build this certificate: {exc}",
            )
        sn = request.device_serial_number
        serial = signed.cert_sn
        op = IssueOp(
            time=utc_timestamp(when),
            station=station,
            device_sn=sn.hex().upper(),
            public_key=request.device_public_key.hex().upper(),
            issuer_key_id=signed.signer.key_id.hex().upper(),
            signer_id=signed.signer.signer_id.hex().upper(),
            signer=f"{signed.signer.name} ({signed.signer.module_sn}, {signed.module})",
            cert_sn=serial.hex().upper(),
            device_cert=signed.reply.device_cert,
            signer_cert=signed.reply.signer_cert,
            root_cert=signed.reply.root_cert,
            device_type=(request.device_type.name if isinstance(request, CertRequest2) else ""),
        )
        try:
            result = await self._records.issue(op)
        except RecordStoreError as exc:
            self._console.error(
                f"Device {sn.hex().upper()}: signing record not saved: {exc.message}"
            )
            return ErrorReply(
                ReturnCode.SERVER_ERROR,
                clip_message(
                    f"certificate signed but the server could not record it, so it is not "
                    f"sent: {exc.message}"
                ),
            )
        if result.action == "refused":
            assert result.code is not None
            self._console.warning(
                f"Request from station {station} for device {sn.hex().upper()} refused: "
                f"{result.code.c_name}: {result.message}"
            )
            return ErrorReply(result.code, clip_message(result.message))
        issuance = result.issuance
        assert issuance is not None
        if result.action != "reissued":
            self._console.info(
                f"Device {sn.hex().upper()} signed by {signer_label(signed.signer)} "
                f"for station {station}."
            )
            return signed.reply  # a new issuance holds the certificates just built and checked
        self._console.info(
            f"Device {sn.hex().upper()}: certificate of issuance {issuance.id} sent again "
            f"(same key, resumed) for station {station}."
        )
        return CertReply(issuance.device_cert, issuance.signer_cert, issuance.root_cert)

    async def handle_report(self, report: DeviceReport, peer: Peer) -> ReportAck | ErrorReply:
        """Record a client's outcome report; answer with the issuance's state afterwards."""
        station = station_text(peer, report.station_id)
        sn = report.device_sn.hex().upper()
        outcome = _REPORT_KINDS[report.outcome]
        stage = _stage_name(report.stage)
        op = ReportOp(
            time=utc_timestamp(self._clock()),
            station=station,
            device_sn=sn,
            public_key=report.device_public_key.hex().upper(),
            outcome=outcome,
            stage=stage,
            part_state=report.part_state.name,
            code="" if report.code is ReturnCode.SUCCESS else report.code.name,
            message=report.message,
        )
        try:
            result = await self._records.report(op)
        except RecordStoreError as exc:
            self._console.error(f"Report for device {sn} not recorded: {exc}")
            return ErrorReply(
                ReturnCode.SERVER_ERROR, clip_message(f"report not recorded: {exc.message}")
            )
        state = RecordedState.UNKNOWN if result.state is None else RecordedState[result.state.name]
        if outcome is EventKind.INSTALLED:
            self._console.info(f"Device {sn} installed (reported by station {station}).")
        else:
            self._console.warning(
                f"Device {sn} {outcome.value} at {stage or 'an unknown stage'} "
                f"(part {report.part_state.name.lower()}), reported by station {station}: "
                f"{report.message or report.code.c_name}"
            )
        return ReportAck(state)

    async def ready(self, request: ReadyRequest, peer: Peer) -> ReadyReply:
        """Could a CertRequest for this cert info be signed now? Ready, or the first reason
        not: SIGNER_NOT_FOUND, NO_PROFILE, TEMPLATE_MISMATCH, SIGNER_LOCKED,
        RECORDS_UNAVAILABLE. Nothing is signed or recorded; a not-ready answer is logged."""
        await self._manager.wait_first_scan()
        signer = request.signer_id.hex().upper()
        try:
            identity = self._manager.find_identity(request.signer_key_id, request.signer_id)
            try:
                profile = self._profiles.get(identity.key_id)
            except ProfileError as exc:
                raise RequestRefused(ReturnCode.NO_PROFILE, str(exc)) from None
            _check_templates(request, identity, profile.device_cert_def)
            self._manager.ready_identity(request.signer_key_id, request.signer_id)
            problem = self._records.problem()
            if problem is not None:
                raise RequestRefused(
                    ReturnCode.RECORDS_UNAVAILABLE,
                    f"the server cannot record signings: {problem}",
                )
        except (RequestRefused, SignerRequestError) as exc:
            self._console.warning(
                f"Station {station_text(peer, request.station_id)}: signer {signer} not ready:"
                f" {exc.code.c_name}: {exc.message}"
            )
            return ReadyReply(exc.code, clip_message(exc.message))
        return ReadyReply(ReturnCode.SUCCESS, f"signer {signer} ready")

    async def _sign(self, request: CertRequest, when: datetime) -> Signed:
        checked = check_request(request.config_zone, request.device_public_key)
        await self._manager.wait_first_scan()
        identity = self._manager.find_identity(request.signer_key_id, request.signer_id)
        profile = self._profiles.get(identity.key_id)
        cert_def = profile.device_cert_def
        _check_templates(request, identity, cert_def)
        issue_date = _hour_floor_utc(when)
        unsigned = prepare(
            cert_def,
            public_key=checked.public_key,
            issue_date=issue_date,
            signer_id=identity.signer_id,
            device_sn=checked.serial_number,
            ca_public_key=identity.public_key,
            element_data=profile.element_data(checked.serial_number),
            base=self._base(cert_def, issue_date, identity),
        )
        result = await self._manager.sign(identity.key_id, identity.signer_id, unsigned.tbs_digest)
        if not result.key_checked:  # hardware modules: every signature; pem: once, at load
            _check_signature(result.identity, unsigned.tbs_digest, result.signature)
        built = unsigned.finish(result.signature)
        reply = CertReply(
            device_cert=built.cert_der,
            signer_cert=result.identity.signer_cert_der,
            root_cert=profile.root_cert,
        )
        loc = cert_def.std_cert_elements.cert_sn
        number = (  # where the cert def places it; else (a fixed one) from the certificate
            int.from_bytes(get_element(built.cert_der, loc, "cert_sn"), "big")
            if loc.count
            else x509.load_der_x509_certificate(built.cert_der).serial_number
        )
        return Signed(
            reply,
            result.identity,
            f"{result.module_key[0]}:{result.module_key[1]}",
            number.to_bytes((number.bit_length() + 7) // 8 or 1, "big"),
        )

    def _base(self, cert_def: CertDef, issue_date: datetime, identity: SignerIdentity) -> CertBase:
        """The template with this signer's and this hour's parts written, made once per hour."""
        key = (id(cert_def), issue_date, identity.signer_id, identity.public_key)
        base = self._bases.get(key)
        if base is None or base.cert_def is not cert_def:
            if len(self._bases) >= MAX_CERT_BASES:  # bounded: a new hour, profiles reloaded
                self._bases.clear()
            base = prepare_base(
                cert_def,
                issue_date=issue_date,
                signer_id=identity.signer_id,
                ca_public_key=identity.public_key,
            )
            self._bases[key] = base
        return base

    async def _refuse(
        self,
        request: CertRequest,
        station: str,
        when: datetime,
        code: ReturnCode,
        message: str,
    ) -> ErrorReply:
        sn = request.device_serial_number
        self._console.warning(
            f"Request from station {station} for device {sn.hex().upper()} refused: "
            f"{code.c_name}: {message}"
        )
        op = RefusalOp(
            time=utc_timestamp(when),
            station=station,
            device_sn=sn.hex().upper(),
            public_key=request.device_public_key.hex().upper(),
            signer=f"{request.signer_id.hex().upper()}/{request.signer_key_id.hex().upper()}",
            code=code,
            message=message,
        )
        try:
            await self._records.refuse(op)
        except RecordStoreError as exc:
            self._console.error(f"Refusal of device {sn.hex().upper()} not recorded: {exc}")
        return ErrorReply(code, clip_message(message))


def _check_templates(
    request: CertRequest | ReadyRequest, identity: SignerIdentity, cert_def: CertDef
) -> None:
    """The request's device template and chain ids must be those of the signer's profile."""
    if (request.device_template_id, request.chain_id) != (cert_def.template_id, cert_def.chain_id):
        raise RequestRefused(
            ReturnCode.TEMPLATE_MISMATCH,
            f"request names device template {request.device_template_id} chain "
            f"{request.chain_id}; signer {identity.signer_id.hex().upper()} issues device "
            f"template {cert_def.template_id} chain {cert_def.chain_id}",
        )


_REPORT_KINDS: dict[
    ReportOutcome, Literal[EventKind.INSTALLED, EventKind.FAILED, EventKind.ABANDONED]
] = {
    ReportOutcome.INSTALLED: EventKind.INSTALLED,
    ReportOutcome.FAILED: EventKind.FAILED,
    ReportOutcome.ABANDONED: EventKind.ABANDONED,
}


def _stage_name(number: int) -> str:
    try:
        return ProvStage(number).name
    except ValueError:
        return "" if number == 0 else f"stage {number}"


def _check_signature(identity: SignerIdentity, digest: bytes, signature: bytes) -> None:
    """A module's signature must verify with its certificate's key before it is used."""
    if len(signature) != 64:
        raise RequestRefused(
            ReturnCode.SIGNING_FAILED,
            f"{signer_label(identity)} returned {len(signature)} signature bytes, expected 64",
        )
    if not verify_digest(identity.verify_key, digest, signature):
        raise RequestRefused(
            ReturnCode.SIGNING_FAILED,
            f"{signer_label(identity)} returned a signature that does not verify with its "
            "signer certificate (wrong key in the module?)",
        )


def build_signing_service(
    *,
    manager: SignerManager,
    console: Console,
    profile_dirs: list[Path],
    records: RecordStore,
) -> SigningService:
    """The service the CLI runs: profiles from ``profile_dirs``, records in ``records`` (the
    CLI's :func:`open_ledger_record_store`, or a store a test gives)."""
    return SigningService(manager, ProfileStore(profile_dirs), records, console)


def open_ledger_record_store(
    data_dir: DataDir,
    ledger: str | None = None,
    *,
    console: Console | None = None,
    allow_reprovision: bool = False,
    writer: str = "thread",
    inherit_fds: Sequence[int] = (),
    log_max_bytes: int | None = None,
) -> RecordStore:
    """The server's records: the ledger (``--ledger``) plus the signing log and certs folder
    (the signing log rotates daily and past ``log_max_bytes``, ``--log-max-size``).

    ``writer``: ``thread`` commits in this process's worker threads; ``process`` in a child
    process (:mod:`provserver.ledger.writer_process`), which keeps ``inherit_fds`` open.
    """
    from .ledger import open_ledger
    from .ledger.store import LedgerRecordStore

    if writer == "process":
        from .ledger.writer_process import ProcessRecordStore, WriterConfig

        config = WriterConfig(ledger, str(data_dir.root), allow_reprovision, None, log_max_bytes)
        return ProcessRecordStore(config, console=console, inherit_fds=inherit_fds)
    return LedgerRecordStore(
        open_ledger(ledger, data_dir.root),
        data_dir.root,
        console=console,
        allow_reprovision=allow_reprovision,
        log_max_bytes=log_max_bytes,
    )


def open_file_record_store(data_dir: DataDir) -> RecordStore:
    """The app note's record layout (signing log TSV in logs/, certificates in certs/)."""
    from .records_file import FileRecordStore

    return FileRecordStore(data_dir.root)
