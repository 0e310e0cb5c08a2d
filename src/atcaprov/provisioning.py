"""The ten-stage provisioning flow (``atcaprov_provision()`` of the C library).

:func:`provision` drives one chip through CONFIG_WRITE, CONFIG_LOCK, CONFIG_READ, GEN_KEY,
CERTS_REQUEST, CERTS_WRITE, DATA_WRITE, DATA_LOCK, SLOTS_LOCK and VALIDATE_CERTS, reporting each
stage through ``hooks.notify`` (START or SKIPPED, then DONE or ERROR) and raising
:class:`ProvisioningError` right after an ERROR.

Beyond the C flow:

* resume: a part whose config is already locked with the wanted config continues (CONFIG_WRITE
  and CONFIG_LOCK SKIPPED); a locked config that differs is refused naming the first differing
  byte; a part whose data zone is locked is reported as already provisioned, never rewritten;
* check before the point of no return: before DATA_LOCK the certificates are rebuilt from the
  exact records written, the chip's public key and its serial number, byte-compared with what
  the server sent and chain-verified (the 508A refuses data-zone reads until the data lock, so
  the records cannot be read back yet; VALIDATE_CERTS reads them back after the lock);
* the outcome of a run that got a device key goes to the optional ``report_outcome`` hook
  (installed / failed / abandoned, for the server's ledger; see :mod:`atcaprov.hooks`).
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
from .certinfo import CertInfo
from .certreq import exchange
from .config import (
    DEFAULT_CONFIG,
    LOCK_CONFIG_OFFSET,
    LOCK_VALUE_OFFSET,
    LOCKED,
    ConfigError,
    check_config_for_flow,
)
from .datasheet import ATECC508A, key_config, serial_number, slot_size
from .device import ZONE_DATA, ZONE_OTP, Device, lock_crc
from .errors import AtcaprovError, ChipStatusError, CommError
from .hooks import ProvisioningHooks
from .protocol import (
    MAX_REPORT_MESSAGE_BYTES,
    CertReply,
    CertRequest,
    DeviceReport,
    ProtocolError,
    ReportOutcome,
    ReportPartState,
    ServerError,
)
from .return_codes import ReturnCode, ReturnCodeError
from .stages import ProvStage, ProvStatus
from .validation import (
    ValidationError,
    cert_public_key,
    first_config_difference,
    key_challenge,
    rebuild_and_check,
    verify_chain,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


class PartState(Enum):
    """What a part holds after a run stopped, for the operator."""

    UNLOCKED = "untouched (config zone unlocked; can be provisioned again)"
    CONFIG_LOCKED = "config zone locked, data zone unlocked (can be provisioned again)"
    PROVISIONED = "data zone locked (provisioned; cannot be rewritten)"


class ProvisioningError(ReturnCodeError):
    """A stage failed. ``stage`` says which, ``part_state`` what the part now holds."""

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


class _Run:
    """State of one provisioning run (which stages are done, what the part holds)."""

    def __init__(self, device: Device, hooks: ProvisioningHooks, cert_info: CertInfo,
                 config: bytes, lock_slots: tuple[int, ...], validate: bool) -> None:
        self.device = device
        self.hooks = hooks
        self.cert_info = cert_info
        self.config = config
        self.lock_slots = lock_slots
        self.validate = validate
        self.part_state = PartState.UNLOCKED
        self.skipped: list[ProvStage] = []
        self.written_config = b""  # config zone as read back by CONFIG_WRITE
        self.device_sn = b""
        self.public_key: bytes | None = None  # once GEN_KEY is done: outcomes are reported

    # ---- stage plumbing --------------------------------------------------------------------
    def stage(self, stage: ProvStage, body: Callable[[], T]) -> T:
        self.hooks.notify(stage, ProvStatus.START)
        try:
            result = body()
        except ProvisioningError as exc:
            exc.stage = stage
            exc.part_state = self.part_state
            self.hooks.notify(stage, ProvStatus.ERROR)
            self.report_failure(exc, None)
            raise
        except Exception as exc:  # any failure of the stage (incl. user hooks) ends the run
            self.hooks.notify(stage, ProvStatus.ERROR)
            message = str(exc) if isinstance(exc, AtcaprovError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, ReturnCodeError):
                message = exc.message
            error = ProvisioningError(stage, _code_for(exc), message, self.part_state)
            self.report_failure(error, exc)
            raise error from exc
        self.hooks.notify(stage, ProvStatus.DONE)
        return result

    def report_failure(self, error: ProvisioningError, cause: BaseException | None) -> None:
        """Report a failed stage (not a refusal by the server: it has recorded that itself)."""
        if isinstance(cause, ServerError):
            return
        outcome = ReportOutcome.ABANDONED if isinstance(cause, CommError) else ReportOutcome.FAILED
        self.report(outcome, error.stage, error.code, error.message)

    def report(self, outcome: ReportOutcome, stage: ProvStage | None, code: ReturnCode,
               message: str) -> None:
        """Give the ``report_outcome`` hook (if any) this run's outcome; never raises."""
        hook = getattr(self.hooks, "report_outcome", None)
        if hook is None or self.public_key is None:
            return
        text = message.encode("utf-8")[:MAX_REPORT_MESSAGE_BYTES].decode("utf-8", "ignore")
        try:
            hook(DeviceReport(
                outcome=outcome, stage=int(stage or 0),
                part_state=ReportPartState[self.part_state.name], code=code,
                device_sn=self.device_sn, device_public_key=self.public_key,
                station_id=getattr(self.hooks, "station_id", None), message=text,
            ))
        except Exception as exc:  # the part's outcome stands whatever the report does
            log.warning("outcome of part %s not reported: %s", self.device_sn.hex().upper(), exc)

    def skip(self, stage: ProvStage) -> None:
        self.skipped.append(stage)
        self.hooks.notify(stage, ProvStatus.SKIPPED)

    def fail(self, code: ReturnCode, message: str) -> ProvisioningError:
        return ProvisioningError(None, code, message, self.part_state)

    # ---- stages ----------------------------------------------------------------------------
    def write_config(self) -> None:
        self.device.write_config_zone(self.config)
        written = self.device.read_config_zone()
        self.written_config = written  # what CONFIG_LOCK's summary CRC covers
        diff = first_config_difference(written, self.config, include_slot_locks=True)
        if diff is not None:
            raise self.fail(
                ReturnCode.CONFIG_MISMATCH,
                f"config byte {diff} reads back 0x{written[diff]:02X} after writing"
                f" 0x{self.config[diff]:02X}",
            )

    def lock_config(self) -> None:
        # The chip checks the CRC against its own 128 bytes: a stale copy cannot lock wrongly.
        self.device.lock_config_zone(lock_crc(self.written_config))
        self.part_state = PartState.CONFIG_LOCKED

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
        return exchange(self.hooks, request)

    def write_certs(self, reply: CertReply, device_sn: bytes, public_key: bytes) -> None:
        """Compress, write, and check the certificates before the point of no return."""
        info = self.cert_info
        if cert_public_key(reply.device_cert) != public_key:
            raise self.fail(ReturnCode.CERT_MISMATCH,
                            "the server's device certificate is not for this chip's public key")
        signer_pub = cert_public_key(reply.signer_cert)
        images = _SlotImages()
        signer_def, device_def = info.signer_cert_def, info.device_cert_def
        signer_comp = compress(signer_def, reply.signer_cert)
        device_comp = compress(device_def, reply.device_cert)
        _place_cert(images, signer_def, signer_comp, reply.signer_cert, signer_pub)
        _place_cert(images, device_def, device_comp, reply.device_cert, None)
        images.write(self.device)
        # Check before the data lock: rebuild from exactly what was written.
        rebuilt_signer = rebuild(
            signer_def,
            images.read(signer_def.comp_cert_dev_loc.zone, signer_def.comp_cert_dev_loc.slot,
                        signer_def.comp_cert_dev_loc.offset, 72),
            signer_pub, device_sn, ca_public_key=info.root_public_key,
            cert_sn=_stored_sn(images, signer_def),
        )
        rebuilt_device = rebuild(
            device_def,
            images.read(device_def.comp_cert_dev_loc.zone, device_def.comp_cert_dev_loc.slot,
                        device_def.comp_cert_dev_loc.offset, 72),
            public_key, device_sn, ca_public_key=signer_pub,
            cert_sn=_stored_sn(images, device_def),
        )
        for what, rebuilt, sent in (("signer", rebuilt_signer, reply.signer_cert),
                                    ("device", rebuilt_device, reply.device_cert)):
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

    def lock_data(self) -> None:
        self.device.lock_data_zone()
        self.part_state = PartState.PROVISIONED

    def lock_slots_stage(self) -> None:
        for slot in self.lock_slots:
            if not self.device.is_slot_locked(slot):
                self.device.lock_data_slot(slot)

    def validate_certs(self, device_sn: bytes) -> None:
        certs = rebuild_and_check(self.device, self.cert_info, device_sn)
        key_challenge(self.device, self.cert_info.device_cert_def.private_key_slot,
                      cert_public_key(certs.device_cert))


# ---- slot images: what CERTS_WRITE writes, as 32-byte blocks --------------------------------
class _SlotImages:
    """Bytes to write per (zone, slot), written as whole 32-byte blocks (data zone unlocked)."""

    def __init__(self) -> None:
        self.slots: dict[tuple[int, int], bytearray] = {}
        self.touched: dict[tuple[int, int], set[int]] = {}

    def put(self, zone: DevZone, slot: int, offset: int, data: bytes) -> None:
        hw_zone = ZONE_DATA if zone == DevZone.DATA else ZONE_OTP
        if zone not in (DevZone.DATA, DevZone.OTP):
            raise ValidationError(f"cannot write certificate data to zone {zone.name}",
                                  ReturnCode.BAD_PARAM)
        size = slot_size(slot) if hw_zone == ZONE_DATA else ATECC508A.otp_size
        if offset + len(data) > size:
            raise ValidationError(
                f"{len(data)} bytes at offset {offset} do not fit slot {slot} ({size} bytes)",
                ReturnCode.BAD_PARAM)
        key = (hw_zone, slot if hw_zone == ZONE_DATA else 0)
        image = self.slots.setdefault(key, bytearray((size + 31) // 32 * 32))
        image[offset : offset + len(data)] = data
        blocks = self.touched.setdefault(key, set())
        blocks.update(range(offset // 32, (offset + len(data) - 1) // 32 + 1))

    def read(self, zone: DevZone, slot: int, offset: int, count: int) -> bytes:
        hw_zone = ZONE_DATA if zone == DevZone.DATA else ZONE_OTP
        image = self.slots[(hw_zone, slot if hw_zone == ZONE_DATA else 0)]
        return bytes(image[offset : offset + count])

    def write(self, device: Device) -> None:
        with device.session():
            for (zone, slot), image in sorted(self.slots.items()):
                for block in sorted(self.touched[(zone, slot)]):
                    data = bytes(image[block * 32 : block * 32 + 32])
                    device.write_zone(zone, slot, block, 0, data)


def _place_cert(images: _SlotImages, cert_def: CertDef, comp: bytes, cert_der: bytes,
                public_key: bytes | None) -> None:
    loc = cert_def.comp_cert_dev_loc
    images.put(loc.zone, loc.slot, loc.offset, comp)
    pk_loc = cert_def.public_key_dev_loc
    if public_key is not None and pk_loc.present and not pk_loc.is_genkey:
        images.put(pk_loc.zone, pk_loc.slot, pk_loc.offset,
                   pad_public_key(public_key) if pk_loc.count == 72 else public_key)
    if cert_def.sn_source in (SnSource.STORED, SnSource.STORED_DYNAMIC):
        sn_loc, cert_loc = cert_def.cert_sn_dev_loc, cert_def.std_cert_elements.cert_sn
        images.put(sn_loc.zone, sn_loc.slot, sn_loc.offset,
                   cert_der[cert_loc.offset : cert_loc.offset + cert_loc.count])
    for element in cert_def.cert_elements:
        if element.device_loc.present:
            c = element.cert_loc
            images.put(element.device_loc.zone, element.device_loc.slot,
                       element.device_loc.offset, cert_der[c.offset : c.offset + c.count])


def _stored_sn(images: _SlotImages, cert_def: CertDef) -> bytes | None:
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
    for d in (device_def, signer_def):
        for loc in (d.comp_cert_dev_loc, d.public_key_dev_loc, d.cert_sn_dev_loc,
                    *(e.device_loc for e in d.cert_elements)):
            if loc.present and not loc.is_genkey and loc.zone == DevZone.DATA:
                cert_slots[loc.slot] = max(cert_slots.get(loc.slot, 0), loc.offset + loc.count)
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
) -> ProvisionResult:
    """Provision one chip. Returns a :class:`ProvisionResult` or raises ProvisioningError.

    Arguments are checked before the chip is touched (a bad config or lock-slot list raises a
    :class:`~atcaprov.config.ConfigError` and nothing is written).
    """
    wanted = bytes(config) if config is not None else DEFAULT_CONFIG
    slots = tuple(sorted(set(lock_slots)))
    check_arguments(cert_info, wanted, slots)
    run = _Run(device, hooks, cert_info, wanted, slots, validate)

    current = device.read_config_zone()
    if current[LOCK_VALUE_OFFSET] == LOCKED:
        run.part_state = PartState.PROVISIONED
        hooks.notify(ProvStage.CONFIG_WRITE, ProvStatus.START)
        hooks.notify(ProvStage.CONFIG_WRITE, ProvStatus.ERROR)
        raise AlreadyProvisionedError(
            ProvStage.CONFIG_WRITE, ReturnCode.ALREADY_PROVISIONED,
            f"part {serial_number(current).hex().upper()} is already provisioned"
            " (data zone locked); it was left untouched",
            PartState.PROVISIONED,
        )
    if current[LOCK_CONFIG_OFFSET] == LOCKED:
        run.part_state = PartState.CONFIG_LOCKED
        diff = first_config_difference(current, wanted, include_slot_locks=True)
        if diff is not None:
            hooks.notify(ProvStage.CONFIG_WRITE, ProvStatus.START)
            hooks.notify(ProvStage.CONFIG_WRITE, ProvStatus.ERROR)
            raise ConfigMismatchError(
                ProvStage.CONFIG_WRITE, ReturnCode.CONFIG_MISMATCH,
                f"config zone is locked with a different config: first difference at byte"
                f" {diff} (part 0x{current[diff]:02X}, wanted 0x{wanted[diff]:02X})",
                PartState.CONFIG_LOCKED,
            )
        run.skip(ProvStage.CONFIG_WRITE)
        run.skip(ProvStage.CONFIG_LOCK)
    else:
        run.stage(ProvStage.CONFIG_WRITE, run.write_config)
        run.stage(ProvStage.CONFIG_LOCK, run.lock_config)

    config_zone = run.stage(ProvStage.CONFIG_READ, device.read_config_zone)
    device_sn = serial_number(config_zone)
    key_slot = cert_info.device_cert_def.private_key_slot
    public_key = run.stage(ProvStage.GEN_KEY, lambda: device.genkey(key_slot))
    run.device_sn, run.public_key = device_sn, public_key
    reply = run.stage(ProvStage.CERTS_REQUEST,
                      lambda: run.request_certs(config_zone, public_key))
    run.stage(ProvStage.CERTS_WRITE, lambda: run.write_certs(reply, device_sn, public_key))
    run.stage(ProvStage.DATA_WRITE, lambda: hooks.write_data_zone(device))
    run.stage(ProvStage.DATA_LOCK, run.lock_data)
    if slots:
        run.stage(ProvStage.SLOTS_LOCK, run.lock_slots_stage)
    else:
        run.skip(ProvStage.SLOTS_LOCK)
    if validate:
        run.stage(ProvStage.VALIDATE_CERTS, lambda: run.validate_certs(device_sn))
        run.report(ReportOutcome.INSTALLED, ProvStage.VALIDATE_CERTS, ReturnCode.SUCCESS, "")
    else:
        run.skip(ProvStage.VALIDATE_CERTS)
        run.report(ReportOutcome.INSTALLED, ProvStage.DATA_LOCK, ReturnCode.SUCCESS,
                   "certificates written and data zone locked; validation skipped")
    return ProvisionResult(
        serial_number=device_sn,
        config_zone=config_zone,
        public_key=public_key,
        device_cert=reply.device_cert,
        signer_cert=reply.signer_cert,
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
    "check_arguments",
    "provision",
]
