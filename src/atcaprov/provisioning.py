"""The ten-stage provisioning flow (``atcaprov_provision()`` of the C library).

:func:`provision` drives one chip through CONFIG_WRITE, CONFIG_LOCK, CONFIG_READ, GEN_KEY,
CERTS_REQUEST, CERTS_WRITE, DATA_WRITE, DATA_LOCK, SLOTS_LOCK and VALIDATE_CERTS, reporting each
stage through ``hooks.notify`` (START or SKIPPED, then DONE or ERROR) and raising
:class:`ProvisioningError` right after an ERROR. Every failure is a ProvisioningError, the
first config read included; its ``part_state`` is read from the chip's lock bytes on a fresh
wake after the failure (UNKNOWN when they cannot be read: the board was removed).

Beyond the C flow:

* readiness first: ``hooks.check_ready`` is called right before the first command that writes
  or locks; if it raises, :class:`ServerNotReadyError` is raised and the part is as it was;
* resume: a part whose config is already locked with the wanted config continues (CONFIG_WRITE
  and CONFIG_LOCK SKIPPED); a locked config that differs is refused naming the first differing
  byte; a part whose data zone is locked is reported as already provisioned and never
  rewritten, unless slot locks asked for are not done on it yet: once its certificates verify
  against the cert info, those are finished;
* only the config words that differ from the zone as first read are written, and not read
  back: the config Lock carries the summary CRC of the zone the run expects, so the chip
  refuses it if any Write did not land; only then is the zone read back, to name the byte.
  CONFIG_READ reports the known bytes with the lock word read from the chip;
* the data lock carries the summary CRC: CERTS_WRITE writes every slot the CRC covers (the
  slots whose KeyConfig.Private is 0) and the OTP zone whole, with known bytes where no
  certificate goes, and records what ``write_data_zone`` writes, so the chip itself refuses the
  lock if any Write it acknowledged did not land (docs/library.md, "The data lock CRC");
  ``data_lock_crc=False`` writes the certificate blocks only and locks without the CRC (less
  chip time; such a Write is then found only by VALIDATE_CERTS, after the lock);
* check before the point of no return: before DATA_LOCK the certificates are rebuilt from the
  exact records written, the chip's public key and its serial number, byte-compared with what
  the server sent and chain-verified (the 508A refuses data-zone reads until the data lock, so
  the records cannot be read back yet; VALIDATE_CERTS reads them back after the lock);
* every Lock is confirmed from the lock bytes, so an acknowledged lock that did not happen
  fails the run instead of passing it;
* the part's model is read (Info) first: the default config is that model's, a ``config`` for
  another model's map is refused before any write, and the certificate request tells a
  version-2 server the device type (:class:`~atcaprov.protocol.CertRequest2`, when the hooks'
  optional ``server_protocol_version`` is 2);
* the outcome of a run that got a device key goes to the optional ``report_outcome`` hook
  (installed / failed / abandoned, for the server's ledger; see :mod:`atcaprov.hooks`);
* host time kept off the chip's path: wakes are planned within half the watchdog
  (``Device.planned_session``, ``Device.wake_groups``); with the CRC, the image blocks no
  certificate can touch are written while the certificate request is out (a helper thread),
  and the checks before the data lock are done while the chip executes the first certificate
  Write (``Device.during``; :mod:`atcaprov.beside`; both are collected before the flow goes
  on). docs/library.md, "Wall time per device".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from .atcacert import CertDef, DevZone, compress, rebuild
from .atcacert.keys import pad_public_key
from .atcacert.sn import SnSource
from .beside import Beside
from .certinfo import CertInfo
from .certreq import exchange, ready_request
from .config import DEFAULT_CONFIG, ConfigError, check_config_for_flow
from .config_models import check_config_model, default_config
from .datasheet import (
    ATECC508A,
    ATECC508A_CONFIG_MAP,
    BLOCK_SIZE,
    WORD_SIZE,
    ChipModel,
    key_config,
    serial_number,
    slot_size,
)
from .device import (
    LOCK_ZONE_DATA,
    ZONE_CONFIG,
    ZONE_DATA,
    ZONE_OTP,
    ZONE_READWRITE_32,
    Device,
    LockState,
    lock_crc,
    zone_position,
)
from .errors import AtcaprovError, ChipStatusError, CommError, ExecutionError
from .hooks import ProvisioningHooks
from .packet import Opcode
from .protocol import (
    MAX_REPORT_MESSAGE_BYTES,
    CertReply,
    CertRequest,
    CertRequest2,
    DeviceReport,
    DeviceType,
    ProtocolError,
    ReportOutcome,
    ReportPartState,
    ServerError,
)
from .return_codes import ReturnCode, ReturnCodeError
from .stages import ProvStage, ProvStatus
from .validation import (
    ValidatedCerts,
    ValidationError,
    cert_public_key,
    first_config_difference,
    validate_part,
    verify_chain,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

_WRITABLE_CONFIG = tuple(
    i
    for i in range(ATECC508A.config_map.read_only.stop, ATECC508A.config_size)
    if i not in ATECC508A.config_map.not_by_write.offsets
)
"""Config bytes a Write sets (16..83, 88..127): the rest are as the part holds them."""


_SLOT_LOCK_READS = (Opcode.READ,) * 4
"""SLOTS_LOCK reads the lock bytes (two 4-byte Reads) before and after its Locks."""
_VALIDATION_PLAN = (Opcode.READ,) * 16 + (Opcode.RANDOM, Opcode.NONCE, Opcode.SIGN)
"""What VALIDATE_CERTS sends at most when nothing fails: the certificate records (two
compressed certificates of 72 bytes, the signer's public key, stored serial numbers: fewer
than 16 Reads) and the key challenge (Random, Nonce, Sign)."""


class PartState(Enum):
    """What a part holds after a run stopped, for the operator (read from the chip)."""

    UNLOCKED = "untouched (config zone unlocked; can be provisioned again)"
    CONFIG_LOCKED = "config zone locked, data zone unlocked (can be provisioned again)"
    PROVISIONED = "data zone locked (provisioned; cannot be rewritten)"
    UNKNOWN = "unknown: plug the part in again to check"

    @classmethod
    def of(cls, locks: LockState) -> PartState:
        if locks.data_locked:
            return cls.PROVISIONED
        return cls.CONFIG_LOCKED if locks.config_locked else cls.UNLOCKED


class ProvisioningError(ReturnCodeError):
    """A stage failed. ``stage`` says which, ``part_state`` what the part now holds (read from
    the chip after the failure; ``PartState.UNKNOWN`` if it could not be read)."""

    def __init__(
        self,
        stage: ProvStage | None,
        code: ReturnCode,
        message: str,
        part_state: PartState,
    ) -> None:
        self.stage = stage
        self.part_state = part_state
        super().__init__(code, message)


class AlreadyProvisionedError(ProvisioningError):
    """The data zone is locked: the part was provisioned before and is left as it is."""


class ConfigMismatchError(ProvisioningError):
    """The config zone is locked with a config other than the wanted one."""


class ServerNotReadyError(ProvisioningError):
    """``hooks.check_ready`` said the server cannot sign now (``code``: its reason); no write or
    lock command was sent. ``stage`` is None: no stage started."""


@dataclass
class ProvisionResult:
    """What a successful run produced."""

    serial_number: bytes
    config_zone: bytes
    public_key: bytes
    device_cert: bytes
    signer_cert: bytes
    skipped: list[ProvStage] = field(default_factory=list)


def _code_for(exc: BaseException) -> ReturnCode:
    if isinstance(exc, ReturnCodeError):
        return exc.code
    if isinstance(exc, (ChipStatusError, CommError)):
        return ReturnCode.DEVICE_ERROR
    if isinstance(exc, ConfigError):
        return ReturnCode.BAD_PARAM
    if isinstance(exc, OSError):  # the user's server connection (socket errors, timeouts)
        return ReturnCode.COMM_ERROR
    if isinstance(exc, AtcaprovError):
        return ReturnCode.GENERAL_ERROR
    return ReturnCode.INTERNAL_ERROR


def _message_for(exc: BaseException) -> str:
    if isinstance(exc, ReturnCodeError):
        return exc.message
    if isinstance(exc, AtcaprovError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _slot_list(slots: Iterable[int]) -> str:
    return ", ".join(str(s) for s in slots)


class _Run:
    """State of one provisioning run (which stages were skipped, what was written)."""

    def __init__(
        self,
        device: Device,
        hooks: ProvisioningHooks,
        cert_info: CertInfo,
        config: bytes,
        lock_slots: tuple[int, ...],
        validate: bool,
        data_lock_crc: bool = True,
    ) -> None:
        self.device = device
        self.hooks = hooks
        self.cert_info = cert_info
        self.config = config
        self.lock_slots = lock_slots
        self.validate = validate
        self.data_lock_crc = data_lock_crc
        self.skipped: list[ProvStage] = []
        self.expected_config = b""  # config zone as CONFIG_WRITE leaves it (CONFIG_LOCK's CRC)
        self.image: _DataImage | None = None  # data + OTP zones as CERTS_WRITE left them
        self.filler: Beside[None] | None = None  # the fill-only Writes beside CERTS_REQUEST
        self.locks: LockState | None = None  # the lock bytes the last probe read
        self.device_sn = b""
        self.public_key: bytes | None = None  # once GEN_KEY is done: outcomes are reported

    # ---- stage plumbing --------------------------------------------------------------------
    def stage(self, stage: ProvStage, body: Callable[[], T]) -> T:
        self.hooks.notify(stage, ProvStatus.START)
        try:
            result = body()
        except Exception as exc:  # any failure of the stage (incl. user hooks) ends the run
            error = self.failed(stage, exc)
            if error is exc:
                raise
            raise error from exc
        self.hooks.notify(stage, ProvStatus.DONE)
        return result

    def failed(self, stage: ProvStage, exc: Exception) -> ProvisioningError:
        """Notify ``stage`` ERROR and make the ProvisioningError for ``exc`` (``exc`` itself if
        it is one), with the part state read from the chip now."""
        state = self.probe()
        self.hooks.notify(stage, ProvStatus.ERROR)
        not_ours = _code_for(exc) in (ReturnCode.VALIDATION_FAILED, ReturnCode.CERT_MISMATCH)
        note = self._pending_locks_note() if state is PartState.PROVISIONED and not not_ours else ""
        if isinstance(exc, ProvisioningError):
            exc.stage, exc.part_state = stage, state
            if note:
                exc.message += note
                exc.args = (f"{exc.code.c_name}: {exc.message}",)
            error = exc
        else:
            error = ProvisioningError(stage, _code_for(exc), _message_for(exc) + note, state)
        self.report_failure(error, exc)
        return error

    def probe(self) -> PartState:
        """The part's state from its lock bytes, read on a fresh wake (UNKNOWN if unreadable)."""
        try:
            self.locks = self.device.read_lock_state(wake_retries=1)
        except (AtcaprovError, OSError) as exc:
            self.locks = None
            log.info("part state after the failure cannot be read: %s", exc)
            return PartState.UNKNOWN
        return PartState.of(self.locks)

    def _pending_locks_note(self) -> str:
        if self.locks is None:
            return ""
        pending = [s for s in self.lock_slots if not self.locks.slot_locked(s)]
        if not pending:
            return ""
        return (
            f"; slot lock {_slot_list(pending)} not done yet: provision the part again to finish it"
        )

    def report_failure(self, error: ProvisioningError, cause: BaseException | None) -> None:
        """Report a failed stage (not a refusal by the server: it has recorded that itself)."""
        if isinstance(cause, ServerError):
            return
        abandoned = isinstance(cause, CommError) or error.part_state is PartState.UNKNOWN
        outcome = ReportOutcome.ABANDONED if abandoned else ReportOutcome.FAILED
        self.report(outcome, error.stage, error.code, error.message, error.part_state)

    def report(
        self,
        outcome: ReportOutcome,
        stage: ProvStage | None,
        code: ReturnCode,
        message: str,
        state: PartState = PartState.PROVISIONED,
    ) -> None:
        """Give the ``report_outcome`` hook (if any) this run's outcome; never raises."""
        hook = getattr(self.hooks, "report_outcome", None)
        if hook is None or self.public_key is None:
            return
        text = message.encode("utf-8")[:MAX_REPORT_MESSAGE_BYTES].decode("utf-8", "ignore")
        try:
            hook(
                DeviceReport(
                    outcome=outcome,
                    stage=int(stage or 0),
                    part_state=ReportPartState[state.name],
                    code=code,
                    device_sn=self.device_sn,
                    device_public_key=self.public_key,
                    station_id=getattr(self.hooks, "station_id", None),
                    message=text,
                )
            )
        except Exception as exc:  # the part's outcome stands whatever the report does
            log.warning("outcome of part %s not reported: %s", self.device_sn.hex().upper(), exc)

    def skip(self, stage: ProvStage) -> None:
        self.skipped.append(stage)
        self.hooks.notify(stage, ProvStatus.SKIPPED)

    def fail(self, code: ReturnCode, message: str) -> ProvisioningError:
        return ProvisioningError(None, code, message, PartState.UNKNOWN)

    def check_ready(self, state: PartState) -> None:
        """The readiness hook, right before the first command that writes or locks."""
        request = ready_request(self.cert_info, getattr(self.hooks, "station_id", None))
        try:
            self.hooks.check_ready(request)
        except Exception as exc:  # any failure of the hook: the server is not known ready
            message = (
                exc.message
                if isinstance(exc, ReturnCodeError)
                else (
                    str(exc) if isinstance(exc, AtcaprovError) else f"{type(exc).__name__}: {exc}"
                )
            )
            raise ServerNotReadyError(None, _code_for(exc), message, state) from exc

    # ---- stages ----------------------------------------------------------------------------
    def write_config(self, current: bytes) -> None:
        """Write the config words that differ from ``current`` (the zone as read first). Not
        read back: CONFIG_LOCK's summary CRC, over the zone this run expects, makes the chip
        refuse the lock if any of them did not land."""
        expected = bytearray(current)
        for i in _WRITABLE_CONFIG:
            expected[i] = self.config[i]
        self.expected_config = bytes(expected)
        self.device.write_config_changes(current, self.expected_config)

    def lock_config(self) -> None:
        # The chip checks the CRC against its own 128 bytes: a Write that did not land, or a
        # stale first read, makes it refuse the lock. Only then is the zone read back.
        try:
            self.device.lock_config_zone(lock_crc(self.expected_config))
        except ExecutionError as exc:
            written = self.device.read_config_zone()
            diff = first_config_difference(written, self.config, include_slot_locks=True)
            if diff is not None:
                raise self.fail(
                    ReturnCode.CONFIG_MISMATCH,
                    f"the chip refused the config lock ({exc}): config byte {diff} reads back"
                    f" 0x{written[diff]:02X} after writing 0x{self.config[diff]:02X}; config"
                    " zone left unlocked",
                ) from exc
            raise self.fail(
                ReturnCode.DEVICE_ERROR,
                f"the chip refused the config lock ({exc}) although its writable bytes read"
                " back as written; config zone left unlocked",
            ) from exc

    def read_config(self, known: bytes, confirm: bool) -> bytes:
        """The config zone: the bytes already known (read first, or written and covered by the
        lock's CRC); with ``confirm``, its lock bytes (84..87) read from the chip, the config
        lock byte required locked."""
        if not confirm:
            return known
        at = ATECC508A.config_map.user_extra
        word = self.device.read_bytes_zone(ZONE_CONFIG, 0, at, WORD_SIZE)
        config = known[:at] + word + known[at + WORD_SIZE :]
        if not LockState.from_config(config).config_locked:
            raise self.fail(
                ReturnCode.DEVICE_ERROR,
                "the config lock was acknowledged but the config zone reads unlocked",
            )
        return config

    def request_certs(self, config: bytes, public_key: bytes) -> CertReply:
        info = self.cert_info
        request = CertRequest(
            signer_id=info.signer_id,
            signer_key_id=info.signer_key_id,
            device_template_id=info.device_cert_def.template_id,
            signer_template_id=info.signer_cert_def.template_id,
            chain_id=info.device_cert_def.chain_id,
            config_zone=config,
            device_public_key=public_key,
            station_id=getattr(self.hooks, "station_id", None),
        )
        if getattr(self.hooks, "server_protocol_version", 1) >= 2:  # it reads the device type
            request = with_device_type(request, self.device.model)
        if self.data_lock_crc:
            self.start_filler(config)
        try:
            return exchange(self.hooks, request)
        finally:
            if self.filler is not None:
                self.filler.wait()  # nothing runs on past the stage (its error: CERTS_WRITE's)
                if self.filler.error is not None:
                    log.info("fill-only Writes beside the request failed: %s", self.filler.error)

    def start_filler(self, config: bytes) -> None:
        """While the certificate request is out, write the blocks of the data image no
        certificate can touch (fill bytes only: they do not depend on the server's answer) on
        a helper thread. Reversible Writes, after the server was found ready."""
        image = _DataImage(config)
        image.reserve(_cert_locations(self.cert_info))
        self.image = image
        device = self.device
        self.filler = Beside(lambda: image.write(device, free_only=True), "atcaprov-fill")

    def write_certs(self, reply: CertReply, config: bytes, public_key: bytes) -> None:
        """Compress, write (with every slot the data-lock CRC covers), and check the
        certificates before the point of no return."""
        info = self.cert_info
        device_sn = serial_number(config)
        if cert_public_key(reply.device_cert, "the server's device certificate") != public_key:
            raise self.fail(
                ReturnCode.CERT_MISMATCH,
                "the server's device certificate is not for this chip's public key",
            )
        signer_pub = cert_public_key(reply.signer_cert, "the server's signer certificate")
        if self.filler is not None:
            self.filler.result()  # a fill Write that failed fails this stage
            assert self.image is not None, "the filler made the image"
            image = self.image
        else:
            image = _DataImage(config, whole=self.data_lock_crc)
        signer_def, device_def = info.signer_cert_def, info.device_cert_def
        signer_comp = compress(signer_def, reply.signer_cert)
        device_comp = compress(device_def, reply.device_cert)
        _place_cert(image, signer_def, signer_comp, reply.signer_cert, signer_pub)
        _place_cert(image, device_def, device_comp, reply.device_cert, None)
        self.image = image
        # The checks before the data lock: host work, done while the chip executes the first
        # Write (collected after the Writes, before anything else)
        with self.device.during(
            lambda: self.check_certs(reply, image, signer_pub, device_sn, public_key)
        ) as check:
            image.write(self.device)
        check.result()

    def check_certs(
        self,
        reply: CertReply,
        image: _DataImage,
        signer_pub: bytes,
        device_sn: bytes,
        public_key: bytes,
    ) -> None:
        """Rebuild both certificates from exactly the records written, byte-compare them with
        what the server sent, verify the chain (before the point of no return)."""
        info = self.cert_info
        signer_def, device_def = info.signer_cert_def, info.device_cert_def
        rebuilt_signer = rebuild(
            signer_def,
            image.read(
                signer_def.comp_cert_dev_loc.zone,
                signer_def.comp_cert_dev_loc.slot,
                signer_def.comp_cert_dev_loc.offset,
                72,
            ),
            signer_pub,
            device_sn,
            ca_public_key=info.root_public_key,
            cert_sn=_stored_sn(image, signer_def),
        )
        rebuilt_device = rebuild(
            device_def,
            image.read(
                device_def.comp_cert_dev_loc.zone,
                device_def.comp_cert_dev_loc.slot,
                device_def.comp_cert_dev_loc.offset,
                72,
            ),
            public_key,
            device_sn,
            ca_public_key=signer_pub,
            cert_sn=_stored_sn(image, device_def),
        )
        for what, rebuilt, sent in (
            ("signer", rebuilt_signer, reply.signer_cert),
            ("device", rebuilt_device, reply.device_cert),
        ):
            if rebuilt != sent:
                pairs = enumerate(zip(rebuilt, sent, strict=False))
                at = next((i for i, (a, b) in pairs if a != b), min(len(rebuilt), len(sent)))
                raise self.fail(
                    ReturnCode.CERT_MISMATCH,
                    f"the {what} certificate rebuilt from the written record differs from the"
                    f" one the server sent (first difference at byte {at}); data zone left"
                    " unlocked",
                )
        verify_chain(reply.device_cert, reply.signer_cert, info.root_cert_der)

    def write_data(self) -> None:
        """The user's ``write_data_zone``, with every Write it makes recorded in the image."""
        image = self.image
        assert image is not None, "CERTS_WRITE runs first"
        self.device.on_write = image.record
        try:
            self.hooks.write_data_zone(self.device)
        finally:
            self.device.on_write = None
        if image.problem is not None:  # raised in the hook too, unless the hook swallowed it
            raise self.fail(ReturnCode.CERT_MISMATCH, image.problem)

    def lock_data(self) -> None:
        image = self.image
        assert image is not None, "CERTS_WRITE runs first"
        crc = image.crc() if self.data_lock_crc else None
        try:
            self.device.lock_data_zone(crc)
        except ExecutionError as exc:
            if crc is None:
                raise
            raise self.fail(
                ReturnCode.DEVICE_ERROR,
                f"the chip refused the data lock ({exc}): its data and OTP zones do not hold"
                f" what this run wrote (summary CRC 0x{crc:04X}); data zone left unlocked",
            ) from exc
        if not self.device.is_locked(LOCK_ZONE_DATA):  # one Read: the word with LockValue
            raise self.fail(
                ReturnCode.DEVICE_ERROR,
                "the data lock was acknowledged but the data zone reads unlocked",
            )

    def lock_slots_stage(self) -> None:
        locks = self.device.read_lock_state(fresh=False)
        for slot in self.lock_slots:
            if not locks.slot_locked(slot):
                self.device.lock_data_slot(slot)
        locks = self.device.read_lock_state(fresh=False)
        missing = [s for s in self.lock_slots if not locks.slot_locked(s)]
        if missing:
            raise self.fail(
                ReturnCode.DEVICE_ERROR,
                f"slot lock {_slot_list(missing)} acknowledged but the slot reads unlocked",
            )

    def validate_certs(self, device_sn: bytes) -> ValidatedCerts:
        # The device key as GEN_KEY returned it in this run (no GenKey public mode again):
        # the key challenge proves the chip holds its private key.
        return validate_part(
            self.device, self.cert_info, device_sn, device_public_key=self.public_key
        )

    def finish_slot_locks(self, device_sn: bytes) -> ValidatedCerts:
        """SLOTS_LOCK of a part found data-locked: lock only a part that is ours."""
        try:
            certs = validate_part(self.device, self.cert_info, device_sn)
        except ValidationError as exc:
            raise ValidationError(
                f"the part is provisioned but its certificates do not check against this cert"
                f" info ({exc.message}); its slots are left unlocked",
                exc.code,
            ) from exc
        self.lock_slots_stage()
        return certs


# ---- the data and OTP zones, as CERTS_WRITE writes them ------------------------------------
class _DataImage:
    """The data and OTP zones as this run leaves them for the data lock.

    The lock's summary CRC covers, in order, every slot whose KeyConfig.Private is 0 (whole:
    36, 416 or 72 bytes), then the 64 OTP bytes. All of those are written, as whole 32-byte
    blocks (the only Writes the chip takes before the data lock), so nothing the factory or an
    earlier run left there counts: certificate data where the cert defs put it, zeros in the
    rest of a slot, 0xFF (erased) in the OTP zone. Writes of a ``write_data_zone`` hook are
    recorded (:meth:`record`); one that would change certificate bytes is refused.

    With ``whole`` False (``provision(..., data_lock_crc=False)``: the data lock without the
    CRC) only the blocks holding certificate data are written; the rest of the image is not
    what the chip holds and no CRC is computed from it.
    """

    SLOT_FILL = 0x00
    OTP_FILL = 0xFF

    def __init__(self, config: bytes, *, whole: bool = True) -> None:
        self.whole = whole
        self.covered = [
            slot for slot in range(ATECC508A.slot_count) if not key_config(config, slot).private
        ]
        self.zones: dict[tuple[int, int], bytearray] = {
            (ZONE_DATA, slot): bytearray([self.SLOT_FILL]) * slot_size(slot)
            for slot in self.covered
        }
        self.zones[(ZONE_OTP, 0)] = bytearray([self.OTP_FILL]) * ATECC508A.otp_size
        self.cert_bytes: dict[tuple[int, int], set[int]] = {}
        self.reserved: dict[tuple[int, int], set[int]] = {}  # where certificate data may go
        self.written: dict[tuple[int, int, int], bytes] = {}  # (zone, slot, block) -> bytes
        self.problem: str | None = None

    def reserve(self, locations: Iterable[tuple[DevZone, int, int, int]]) -> None:
        """Mark (zone, slot, offset, count) as where certificate data may go: the blocks they
        touch are not written by ``write(free_only=True)``."""
        for zone, slot, offset, count in locations:
            if zone not in (DevZone.DATA, DevZone.OTP):
                continue
            key = self._key(zone, slot)
            if key in self.zones:
                self.reserved.setdefault(key, set()).update(range(offset, offset + count))

    @staticmethod
    def _key(zone: DevZone, slot: int) -> tuple[int, int]:
        if zone == DevZone.DATA:
            return ZONE_DATA, slot
        if zone == DevZone.OTP:
            return ZONE_OTP, 0
        raise ValidationError(
            f"cannot write certificate data to zone {zone.name}", ReturnCode.BAD_PARAM
        )

    def put(self, zone: DevZone, slot: int, offset: int, data: bytes) -> None:
        key = self._key(zone, slot)
        image = self.zones.get(key)
        if image is None:
            raise ValidationError(
                f"slot {slot} holds a private key: it cannot take certificate data",
                ReturnCode.BAD_PARAM,
            )
        if offset + len(data) > len(image):
            raise ValidationError(
                f"{len(data)} bytes at offset {offset} do not fit slot {slot} ({len(image)} bytes)",
                ReturnCode.BAD_PARAM,
            )
        image[offset : offset + len(data)] = data
        self.cert_bytes.setdefault(key, set()).update(range(offset, offset + len(data)))

    def read(self, zone: DevZone, slot: int, offset: int, count: int) -> bytes:
        return bytes(self.zones[self._key(zone, slot)][offset : offset + count])

    def write(self, device: Device, *, free_only: bool = False) -> None:
        # As few wakes as the watchdog allows (Device.wake_groups): the 46 Writes of a whole
        # image take longer than the chip's watchdog period (~1.3 s), which would put it to
        # sleep in the middle of a single wake.
        # ``free_only``: only the blocks no reserved byte falls in (their bytes cannot depend
        # on the certificates). A block already written with the same bytes is not sent again.
        writes: list[tuple[int, int, int, bytes]] = []  # (zone, slot, block, 32 bytes)
        for (zone, slot), image in sorted(self.zones.items(), key=lambda kv: -kv[0][0]):
            cert = self.cert_bytes.get((zone, slot), set())
            reserved = self.reserved.get((zone, slot), set()) if free_only else set()
            for b in range((len(image) + BLOCK_SIZE - 1) // BLOCK_SIZE):
                span = range(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE)
                if not (self.whole or not cert.isdisjoint(span)):
                    continue
                if not reserved.isdisjoint(span):
                    continue
                chunk = bytes(image[b * BLOCK_SIZE : (b + 1) * BLOCK_SIZE])
                chunk = chunk.ljust(BLOCK_SIZE, b"\0")
                if self.written.get((zone, slot, b)) != chunk:
                    writes.append((zone, slot, b, chunk))
        for group in device.wake_groups(Opcode.WRITE, len(writes)):
            with device.planned_session((Opcode.WRITE,) * len(group)):
                for zone, slot, block, chunk in writes[group.start : group.stop]:
                    device.write_zone(zone, slot, block, 0, chunk)
                    self.written[(zone, slot, block)] = chunk

    def record(self, param1: int, param2: int, data: bytes) -> None:
        """A Write the chip acknowledged during DATA_WRITE (``Device.on_write``)."""
        zone = param1 & 0x03
        if zone not in (ZONE_DATA, ZONE_OTP):
            return  # config writes are refused once the config zone is locked
        length = BLOCK_SIZE if param1 & ZONE_READWRITE_32 else len(data)
        slot, offset = zone_position(zone, param2, length)
        key = (zone, slot)
        image = self.zones.get(key)
        if image is None:
            return  # a private-key slot: not covered by the summary CRC
        end = min(offset + length, len(image))
        new = data[: end - offset]
        cert = self.cert_bytes.get(key, set())
        clash = next(
            (i for i in range(offset, end) if i in cert and image[i] != new[i - offset]), None
        )
        if clash is not None:
            where = f"slot {slot}" if zone == ZONE_DATA else "the OTP zone"
            self.problem = (
                f"write_data_zone overwrote certificate data in {where} (byte"
                f" {clash}); data zone left unlocked"
            )
            raise ValidationError(self.problem, ReturnCode.CERT_MISMATCH)
        image[offset:end] = new

    def crc(self) -> int:
        """The data-lock summary CRC of this image (``whole`` images only)."""
        assert self.whole, "only a whole image is what the chip holds"
        slots = b"".join(bytes(self.zones[(ZONE_DATA, s)]) for s in self.covered)
        return lock_crc(slots + bytes(self.zones[(ZONE_OTP, 0)]))


def _place_cert(
    images: _DataImage, cert_def: CertDef, comp: bytes, cert_der: bytes, public_key: bytes | None
) -> None:
    loc = cert_def.comp_cert_dev_loc
    images.put(loc.zone, loc.slot, loc.offset, comp)
    pk_loc = cert_def.public_key_dev_loc
    if public_key is not None and pk_loc.present and not pk_loc.is_genkey:
        images.put(
            pk_loc.zone,
            pk_loc.slot,
            pk_loc.offset,
            pad_public_key(public_key) if pk_loc.count == 72 else public_key,
        )
    if cert_def.sn_source in (SnSource.STORED, SnSource.STORED_DYNAMIC):
        sn_loc, cert_loc = cert_def.cert_sn_dev_loc, cert_def.std_cert_elements.cert_sn
        images.put(
            sn_loc.zone,
            sn_loc.slot,
            sn_loc.offset,
            cert_der[cert_loc.offset : cert_loc.offset + cert_loc.count],
        )
    for element in cert_def.cert_elements:
        if element.device_loc.present:
            c = element.cert_loc
            images.put(
                element.device_loc.zone,
                element.device_loc.slot,
                element.device_loc.offset,
                cert_der[c.offset : c.offset + c.count],
            )


def _cert_locations(cert_info: CertInfo) -> list[tuple[DevZone, int, int, int]]:
    """(zone, slot, offset, count) of everything the cert defs may place on the chip (the
    reserved blocks of the fill-only Writes; the certificate slots :func:`check_arguments`
    checks the config against)."""
    out: list[tuple[DevZone, int, int, int]] = []
    for d in (cert_info.device_cert_def, cert_info.signer_cert_def):
        for loc in (
            d.comp_cert_dev_loc,
            d.public_key_dev_loc,
            d.cert_sn_dev_loc,
            *(e.device_loc for e in d.cert_elements),
        ):
            if loc.present and not loc.is_genkey:
                out.append((loc.zone, loc.slot, loc.offset, loc.count))
    return out


def _stored_sn(images: _DataImage, cert_def: CertDef) -> bytes | None:
    if cert_def.sn_source not in (SnSource.STORED, SnSource.STORED_DYNAMIC):
        return None
    loc = cert_def.cert_sn_dev_loc
    return images.read(loc.zone, loc.slot, loc.offset, loc.count)


def check_arguments(
    cert_info: CertInfo, config: bytes | None = None, lock_slots: Iterable[int] = ()
) -> None:
    """Raise ConfigError if :func:`provision` could not run with these arguments on any part.

    ``config`` None means the default config. Clients call it at start-up, so that a bad
    ``--config`` or lock-slot list is reported before the first board.
    """
    config = bytes(config) if config is not None else DEFAULT_CONFIG
    device_def, signer_def = cert_info.device_cert_def, cert_info.signer_cert_def
    cert_slots: dict[int, int] = {}
    for zone, slot, offset, count in _cert_locations(cert_info):
        if zone == DevZone.DATA:
            cert_slots[slot] = max(cert_slots.get(slot, 0), offset + count)
    pk = signer_def.public_key_dev_loc
    check_config_for_flow(
        config,
        device_key_slot=device_def.private_key_slot,
        cert_slots=cert_slots,
        signer_pubkey_slot=pk.slot if pk.present and not pk.is_genkey else None,
    )
    for slot in lock_slots:
        if not 0 <= slot < ATECC508A.slot_count:
            raise ConfigError(f"lock_slots: slot {slot} does not exist (slots are 0..15)")
        if not key_config(config, slot).lockable:
            at = ATECC508A.config_map.key_config_offset(slot)
            raise ConfigError(
                f"lock_slots: slot {slot} is not lockable (KeyConfig[{slot}].Lockable = 0,"
                f" config bytes {at}..{at + 1})",
                offset=at,
            )


def provision(
    device: Device,
    hooks: ProvisioningHooks,
    cert_info: CertInfo,
    *,
    config: bytes | None = None,
    lock_slots: Iterable[int] = (),
    validate: bool = True,
    data_lock_crc: bool = True,
) -> ProvisionResult:
    """Provision one chip. Returns a :class:`ProvisionResult` or raises ProvisioningError.

    Arguments are checked before the chip is touched (a bad config or lock-slot list raises a
    :class:`~atcaprov.config.ConfigError` and nothing is written). The part's model is read
    (Info) unless ``device`` knows it already; ``config`` None means that model's default
    config, and a config for a model whose config map differs raises
    :class:`~atcaprov.config_models.ConfigModelError` before the first write.
    """
    slots = tuple(sorted(set(lock_slots)))
    check_arguments(cert_info, config, slots)
    run = _Run(device, hooks, cert_info, DEFAULT_CONFIG, slots, validate, data_lock_crc)
    try:
        return _provision(run, config)
    finally:
        device.end_linger()  # a run that stopped while the chip was left awake idles it


def _provision(run: _Run, config: bytes | None) -> ProvisionResult:
    """:func:`provision` once its arguments are checked."""
    device, hooks, cert_info = run.device, run.hooks, run.cert_info
    slots, validate = run.lock_slots, run.validate
    try:
        detect = not device.model_detected
        # Info only: the ChipMode byte comes with the config zone read next
        model = device.detect_model(read_chip_mode=False) if detect else device.model
        # The chip stays awake after the read (linger): the config lock and GenKey go on in
        # the same wake when it has time enough left after the readiness question
        with device.planned_session((Opcode.READ,) * 4, linger=True):
            current = device.read_config_zone()
        if detect:
            device.chip_mode = current[ATECC508A_CONFIG_MAP.chip_mode]
    except Exception as exc:  # no stage has started: report it as CONFIG_WRITE's
        hooks.notify(ProvStage.CONFIG_WRITE, ProvStatus.START)
        raise run.failed(ProvStage.CONFIG_WRITE, exc) from exc
    wanted = run.config = _config_for(model, config)
    locks = LockState.from_config(current)
    if locks.data_locked:
        pending = [s for s in slots if not locks.slot_locked(s)]
        if pending and first_config_difference(current, wanted) is None:
            return _finish(run, pending, current)
        hooks.notify(ProvStage.CONFIG_WRITE, ProvStatus.START)
        hooks.notify(ProvStage.CONFIG_WRITE, ProvStatus.ERROR)
        raise AlreadyProvisionedError(
            ProvStage.CONFIG_WRITE,
            ReturnCode.ALREADY_PROVISIONED,
            f"part {serial_number(current).hex().upper()} is already provisioned"
            " (data zone locked); it was left untouched",
            PartState.PROVISIONED,
        )
    if locks.config_locked:
        diff = first_config_difference(current, wanted, include_slot_locks=True)
        if diff is not None:
            hooks.notify(ProvStage.CONFIG_WRITE, ProvStatus.START)
            hooks.notify(ProvStage.CONFIG_WRITE, ProvStatus.ERROR)
            raise ConfigMismatchError(
                ProvStage.CONFIG_WRITE,
                ReturnCode.CONFIG_MISMATCH,
                f"config zone is locked with a different config: first difference at byte"
                f" {diff} (part 0x{current[diff]:02X}, wanted 0x{wanted[diff]:02X})",
                PartState.CONFIG_LOCKED,
            )
        run.check_ready(PartState.CONFIG_LOCKED)
        run.skip(ProvStage.CONFIG_WRITE)
        run.skip(ProvStage.CONFIG_LOCK)
    else:
        run.check_ready(PartState.UNLOCKED)
        run.stage(ProvStage.CONFIG_WRITE, lambda: run.write_config(current))

    # One wake for the config lock, its confirmation and the key (no server talk in between).
    # ... and after GenKey, across the certificate request, for the certificate Writes
    with device.planned_session((Opcode.LOCK, Opcode.READ, Opcode.GENKEY), linger=True):
        if not locks.config_locked:
            run.stage(ProvStage.CONFIG_LOCK, run.lock_config)
        config_zone = run.stage(
            ProvStage.CONFIG_READ,
            lambda: run.read_config(run.expected_config or current, not locks.config_locked),
        )
        device_sn = serial_number(config_zone)
        key_slot = cert_info.device_cert_def.private_key_slot
        public_key = run.stage(ProvStage.GEN_KEY, lambda: device.genkey(key_slot))
    run.device_sn, run.public_key = device_sn, public_key
    reply = run.stage(ProvStage.CERTS_REQUEST, lambda: run.request_certs(config_zone, public_key))
    run.stage(ProvStage.CERTS_WRITE, lambda: run.write_certs(reply, config_zone, public_key))
    run.stage(ProvStage.DATA_WRITE, run.write_data)
    # The lock and its confirmation; without slot locks, the validation in the same wake when
    # it fits (no host wait in between: one wake and one idle fewer).
    lock_plan = (Opcode.LOCK, Opcode.READ)
    joined = validate and not slots and device.fits_one_wake(lock_plan + _VALIDATION_PLAN)
    with device.planned_session(lock_plan + (_VALIDATION_PLAN if joined else ())):
        run.stage(ProvStage.DATA_LOCK, run.lock_data)
        if joined:
            run.skip(ProvStage.SLOTS_LOCK)
            run.stage(ProvStage.VALIDATE_CERTS, lambda: run.validate_certs(device_sn))
    if not joined:
        _slots_and_validation(run, slots, device_sn)
    if validate:
        run.report(ReportOutcome.INSTALLED, ProvStage.VALIDATE_CERTS, ReturnCode.SUCCESS, "")
    else:
        run.report(
            ReportOutcome.INSTALLED,
            ProvStage.DATA_LOCK,
            ReturnCode.SUCCESS,
            "certificates written and data zone locked; validation skipped",
        )
    return ProvisionResult(
        serial_number=device_sn,
        config_zone=config_zone,
        public_key=public_key,
        device_cert=reply.device_cert,
        signer_cert=reply.signer_cert,
        skipped=run.skipped,
    )


def _slots_and_validation(run: _Run, slots: tuple[int, ...], device_sn: bytes) -> None:
    """SLOTS_LOCK and VALIDATE_CERTS after the data lock, each in its own planned wake."""
    device = run.device
    if slots:
        with device.planned_session(_SLOT_LOCK_READS + (Opcode.LOCK,) * len(slots)):
            run.stage(ProvStage.SLOTS_LOCK, run.lock_slots_stage)
    else:
        run.skip(ProvStage.SLOTS_LOCK)
    if run.validate:
        with device.planned_session(_VALIDATION_PLAN):
            run.stage(ProvStage.VALIDATE_CERTS, lambda: run.validate_certs(device_sn))
    else:
        run.skip(ProvStage.VALIDATE_CERTS)


def with_device_type(request: CertRequest, model: ChipModel) -> CertRequest2:
    """``request`` as a :class:`~atcaprov.protocol.CertRequest2` carrying ``model``."""
    return CertRequest2(
        request.signer_id,
        request.signer_key_id,
        request.device_template_id,
        request.signer_template_id,
        request.chain_id,
        request.config_zone,
        request.device_public_key,
        request.station_id,
        device_type=DeviceType[model.name],
    )


def _config_for(model: ChipModel, config: bytes | None) -> bytes:
    """The config to write on a part of ``model``: its default, or ``config`` once checked to
    be for that model (:class:`~atcaprov.config_models.ConfigModelError` if not: nothing has
    been written)."""
    if config is None:
        return default_config(model)
    check_config_model(bytes(config), model)
    return bytes(config)


def _finish(run: _Run, pending: list[int], current: bytes) -> ProvisionResult:
    """A data-locked part with the wanted config whose asked-for slot locks are not all done
    (a run stopped between the data lock and the slot locks): check it is ours, finish them."""
    run.skip(ProvStage.CONFIG_WRITE)
    run.skip(ProvStage.CONFIG_LOCK)
    config_zone = run.stage(ProvStage.CONFIG_READ, lambda: run.read_config(current, False))
    device_sn = serial_number(config_zone)
    for stage in (
        ProvStage.GEN_KEY,
        ProvStage.CERTS_REQUEST,
        ProvStage.CERTS_WRITE,
        ProvStage.DATA_WRITE,
        ProvStage.DATA_LOCK,
    ):
        run.skip(stage)
    certs = run.stage(ProvStage.SLOTS_LOCK, lambda: run.finish_slot_locks(device_sn))
    if run.validate:
        certs = run.stage(ProvStage.VALIDATE_CERTS, lambda: run.validate_certs(device_sn))
    else:
        run.skip(ProvStage.VALIDATE_CERTS)
    return ProvisionResult(
        serial_number=device_sn,
        config_zone=config_zone,
        public_key=cert_public_key(certs.device_cert),
        device_cert=certs.device_cert,
        signer_cert=certs.signer_cert,
        skipped=run.skipped,
    )


__all__ = [
    "AlreadyProvisionedError",
    "ConfigMismatchError",
    "PartState",
    "ProtocolError",
    "ProvisionResult",
    "ProvisioningError",
    "ServerError",
    "ServerNotReadyError",
    "check_arguments",
    "provision",
]
