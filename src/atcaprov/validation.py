"""Certificate validation: rebuild certificates from a chip, verify the chain, prove the key.

Used by the VALIDATE_CERTS stage, by the check before the data lock, and by :func:`verify`,
which a line test system can call on any part (provisioned by atcaprov or not) to get a
:class:`VerifyReport` of locks, config, slot locks, certificates and the device-key challenge.

What is safe to run again is run again before a part is called bad (:func:`validate_part`):
the certificate reads after a chip or transport error, the key challenge (a fresh random
challenge, a fresh Nonce + Sign) after any failure, up to :data:`VALIDATION_ATTEMPTS` times.
A part whose chip does not wake is not retried.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from .atcacert import CertDef, DevZone, rebuild
from .atcacert.keys import public_key_object, unpad_public_key
from .atcacert.sn import SnSource
from .certinfo import CertInfo
from .config import LOCK_CONFIG_OFFSET, LOCK_VALUE_OFFSET, LOCKED
from .crypto import CryptoFormatError, certificate_public_key, public_key_xy, verify_digest
from .datasheet import serial_number, slot_locked
from .device import ZONE_CONFIG, ZONE_DATA, ZONE_OTP, Device
from .errors import AtcaprovError, ChipStatusError, CommError, WakeFailedError
from .return_codes import ReturnCode, ReturnCodeError

log = logging.getLogger(__name__)
T = TypeVar("T")

VALIDATION_ATTEMPTS = 3
"""Tries of the certificate reads and of the key challenge before a part is called bad."""


class ValidationError(ReturnCodeError):
    """A certificate or key check failed (code VALIDATION_FAILED or CERT_MISMATCH)."""

    def __init__(self, message: str, code: ReturnCode = ReturnCode.VALIDATION_FAILED) -> None:
        super().__init__(code, message)


_ZONE_OF = {DevZone.CONFIG: ZONE_CONFIG, DevZone.OTP: ZONE_OTP, DevZone.DATA: ZONE_DATA}


def _read_loc(device: Device, zone: DevZone, slot: int, offset: int, count: int) -> bytes:
    """``count`` bytes at ``offset`` of an atcacert device location."""
    return device.read_bytes_zone(_ZONE_OF[zone], slot, offset, count)


def read_public_key(device: Device, cert_def: CertDef) -> bytes:
    """The certificate's public key as the chip holds it (GenKey public mode or a slot read)."""
    loc = cert_def.public_key_dev_loc
    if loc.is_genkey:
        return device.get_pubkey(loc.slot)
    raw = _read_loc(device, loc.zone, loc.slot, loc.offset, loc.count)
    return unpad_public_key(raw) if loc.count == 72 else raw


@dataclass
class CertRecords:
    """What a certificate is rebuilt from, as read from the chip."""

    comp: bytes
    public_key: bytes
    cert_sn: bytes | None
    elements: dict[str, bytes]


def read_records(device: Device, cert_def: CertDef, public_key: bytes | None = None) -> CertRecords:
    """The chip's records of ``cert_def`` (its public key given as ``public_key`` when already
    known in this session)."""
    comp_loc = cert_def.comp_cert_dev_loc
    comp = _read_loc(device, comp_loc.zone, comp_loc.slot, comp_loc.offset, 72)
    if public_key is None:
        public_key = read_public_key(device, cert_def)
    cert_sn = None
    if cert_def.sn_source in (SnSource.STORED, SnSource.STORED_DYNAMIC):
        sn_loc = cert_def.cert_sn_dev_loc
        cert_sn = _read_loc(device, sn_loc.zone, sn_loc.slot, sn_loc.offset, sn_loc.count)
    elements = {
        e.id: _read_loc(
            device, e.device_loc.zone, e.device_loc.slot, e.device_loc.offset, e.device_loc.count
        )
        for e in cert_def.cert_elements
        if e.device_loc.present
    }
    return CertRecords(comp, public_key, cert_sn, elements)


def rebuild_records(
    cert_def: CertDef, records: CertRecords, *, ca_public_key: bytes, device_sn: bytes
) -> bytes:
    """The full DER certificate of ``cert_def`` from its records (host work only)."""
    return rebuild(
        cert_def,
        records.comp,
        records.public_key,
        device_sn,
        ca_public_key=ca_public_key,
        cert_sn=records.cert_sn,
        element_data=records.elements or None,
    )


def read_cert(
    device: Device,
    cert_def: CertDef,
    *,
    ca_public_key: bytes,
    device_sn: bytes,
    public_key: bytes | None = None,
) -> bytes:
    """Rebuild the full DER certificate of ``cert_def`` from what the chip holds (its public
    key given as ``public_key`` when already known in this session)."""
    return rebuild_records(
        cert_def,
        read_records(device, cert_def, public_key),
        ca_public_key=ca_public_key,
        device_sn=device_sn,
    )


def _verify_signed_by(
    cert: x509.Certificate, issuer_key: ec.EllipticCurvePublicKey, what: str
) -> None:
    algo = cert.signature_hash_algorithm
    if algo is None:
        raise ValidationError(f"{what}: no signature hash algorithm")
    try:
        issuer_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algo))
    except InvalidSignature:
        raise ValidationError(f"{what}: signature does not verify against its issuer") from None


def verify_chain(device_cert_der: bytes, signer_cert_der: bytes, root_cert_der: bytes) -> None:
    """Check root (self-signed) -> signer -> device signatures and issuer/subject names."""
    try:
        root = x509.load_der_x509_certificate(root_cert_der)
        signer = x509.load_der_x509_certificate(signer_cert_der)
        device = x509.load_der_x509_certificate(device_cert_der)
    except ValueError as exc:
        raise ValidationError(f"certificate does not parse as X.509: {exc}") from exc
    try:
        root_key = certificate_public_key(root)
        signer_key = certificate_public_key(signer)
    except ValueError:  # not EC P-256, or not a point on the curve
        raise ValidationError("root and signer keys must be EC P-256 keys") from None
    _verify_signed_by(root, root_key, "root certificate (self-signed)")
    _verify_signed_by(signer, root_key, "signer certificate")
    _verify_signed_by(device, signer_key, "device certificate")
    if signer.issuer != root.subject:
        raise ValidationError("signer certificate issuer differs from the root subject")
    if device.issuer != signer.subject:
        raise ValidationError("device certificate issuer differs from the signer subject")


def key_challenge(
    device: Device, slot: int, public_key: bytes, challenge: bytes | None = None
) -> None:
    """Prove the chip holds the private key of ``public_key``: sign a fresh random challenge."""
    msg = challenge if challenge is not None else os.urandom(32)
    _check_signature(slot, public_key, msg, device.sign(slot, msg))


def _check_signature(
    slot: int, public_key: bytes | ec.EllipticCurvePublicKey, challenge: bytes, signature: bytes
) -> None:
    if isinstance(public_key, bytes):
        public_key = public_key_object(public_key)
    if not verify_digest(public_key, challenge, signature):
        raise ValidationError(
            f"the key in slot {slot} did not sign the challenge for the certificate's public key"
        )


def cert_public_key(cert_der: bytes, what: str = "certificate") -> bytes:
    """X||Y of a certificate's EC public key; ValidationError if ``cert_der`` is not an X.509
    certificate (DER that does not parse as one) or its key is not P-256."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        raise ValidationError(
            f"{what} ({len(cert_der)} bytes) is not an X.509 certificate: it does not parse"
        ) from None
    try:
        key = certificate_public_key(cert)
    except (CryptoFormatError, ValueError):
        raise ValidationError(f"{what} key is not an EC P-256 key") from None
    return public_key_xy(key)


@dataclass
class ValidatedCerts:
    """Certificates rebuilt from a chip and checked."""

    device_cert: bytes
    signer_cert: bytes


def read_both(
    device: Device, cert_info: CertInfo, device_public_key: bytes | None = None
) -> tuple[CertRecords, CertRecords]:
    """The signer's and the device's certificate records, read from the chip.

    ``device_public_key``: the device key as the chip returned it in this session (GenKey),
    used instead of asking it again when the device cert def takes the key from GenKey."""
    signer = read_records(device, cert_info.signer_cert_def)
    device_def = cert_info.device_cert_def
    known = device_public_key if device_def.public_key_dev_loc.is_genkey else None
    return signer, read_records(device, device_def, known)


def check_records(
    cert_info: CertInfo, device_sn: bytes, signer: CertRecords, device: CertRecords
) -> ValidatedCerts:
    """Rebuild both certificates from their records and verify the chain up to the cert
    info's root (host work only)."""
    signer_cert = rebuild_records(
        cert_info.signer_cert_def,
        signer,
        ca_public_key=cert_info.root_public_key,
        device_sn=device_sn,
    )
    signer_pub = cert_public_key(signer_cert)
    device_cert = rebuild_records(
        cert_info.device_cert_def, device, ca_public_key=signer_pub, device_sn=device_sn
    )
    verify_chain(device_cert, signer_cert, cert_info.root_cert_der)
    return ValidatedCerts(device_cert, signer_cert)


def rebuild_and_check(
    device: Device, cert_info: CertInfo, device_sn: bytes, device_public_key: bytes | None = None
) -> ValidatedCerts:
    """Rebuild both certificates from the chip and verify the chain up to the cert-info root
    (``device_public_key``: see :func:`read_both`)."""
    return check_records(cert_info, device_sn, *read_both(device, cert_info, device_public_key))


def _retrying(
    what: str,
    body: Callable[[], T],
    retry_on: tuple[type[Exception], ...],
    *,
    first: int = 1,
) -> T:
    """``body()``, tried again on ``retry_on`` up to attempt :data:`VALIDATION_ATTEMPTS`
    (``first``: the number of this first call, when an earlier attempt was made elsewhere)."""
    for attempt in range(first, VALIDATION_ATTEMPTS + 1):
        try:
            return body()
        except retry_on as exc:
            if attempt == VALIDATION_ATTEMPTS or isinstance(exc, WakeFailedError):
                raise
            _log_retry(what, attempt, exc)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _log_retry(what: str, attempt: int, exc: BaseException) -> None:
    log.info(
        "%s: attempt %d of %d failed (%s); trying again", what, attempt, VALIDATION_ATTEMPTS, exc
    )


_CHIP_FAULTS: tuple[type[Exception], ...] = (CommError, ChipStatusError)


def _check_with_key(
    cert_info: CertInfo, device_sn: bytes, records: tuple[CertRecords, CertRecords]
) -> tuple[ValidatedCerts, bytes, ec.EllipticCurvePublicKey]:
    """:func:`check_records`, and the device certificate's key (X||Y and as a key object)."""
    certs = check_records(cert_info, device_sn, *records)
    public_key = cert_public_key(certs.device_cert)
    return certs, public_key, public_key_object(public_key)


def validate_part(
    device: Device, cert_info: CertInfo, device_sn: bytes, *, device_public_key: bytes | None = None
) -> ValidatedCerts:
    """What VALIDATE_CERTS checks: both certificates rebuilt from the chip and verified up to
    the cert info's root, and the device key's challenge; each retried as the module says.

    The rebuild and the chain check are host work: they are done while the chip executes the
    first command of the first challenge (``Device.during``), whose signature is checked
    against the rebuilt device certificate's key once both are done (a challenge that fails
    is tried again as before, with the key known).

    ``device_public_key``: see :func:`read_both` (the challenge still proves the chip holds
    its private key)."""
    records = _retrying(
        "certificate reads",
        lambda: read_both(device, cert_info, device_public_key),
        _CHIP_FAULTS,
    )
    slot = cert_info.device_cert_def.private_key_slot
    challenge = os.urandom(32)
    signature: bytes | None = None
    failure: Exception | None = None
    with device.during(lambda: _check_with_key(cert_info, device_sn, records)) as check:
        try:
            signature = device.sign(slot, challenge)
        except _CHIP_FAULTS as exc:
            failure = exc
    # a certificate that does not check fails first, as it comes first
    certs, public_key, key = check.result()
    if signature is not None:
        try:
            _check_signature(slot, key, challenge, signature)
        except ValidationError as exc:
            failure = exc
        else:
            return certs
    assert failure is not None, "a challenge that was not signed failed"
    if VALIDATION_ATTEMPTS == 1 or isinstance(failure, WakeFailedError):
        raise failure
    _log_retry("device key challenge", 1, failure)
    _retrying(
        "device key challenge",
        lambda: key_challenge(device, slot, public_key),
        (*_CHIP_FAULTS, ValidationError),
        first=2,
    )
    return certs


@dataclass
class Check:
    """One line of a :class:`VerifyReport`."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class VerifyReport:
    """What :func:`verify` found on a part."""

    serial_number: str = ""
    checks: list[Check] = field(default_factory=list)
    device_cert: bytes | None = None
    signer_cert: bytes | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))

    def lines(self) -> list[str]:
        return [
            f"{'ok  ' if c.ok else 'FAIL'} {c.name}{': ' + c.detail if c.detail else ''}"
            for c in self.checks
        ]


def verify(
    device: Device,
    cert_info: CertInfo,
    *,
    expected_config: bytes | None = None,
    lock_slots: Iterable[int] | None = None,
) -> VerifyReport:
    """Check a part: locks, config (if ``expected_config``), slot locks (if ``lock_slots``, the
    slots that must be locked), certificates, device key.

    Never raises for what it finds on the part (a refused read, garbage where a key should be:
    a failed check); chip communication failures raise, after the retries of
    :func:`validate_part`.
    """
    report = VerifyReport()
    config = device.read_config_zone()
    sn = serial_number(config)
    report.serial_number = sn.hex().upper()
    report.add("config zone locked", config[LOCK_CONFIG_OFFSET] == LOCKED)
    report.add("data zone locked", config[LOCK_VALUE_OFFSET] == LOCKED)
    if expected_config is not None:
        diff = first_config_difference(config, expected_config)
        report.add(
            "config zone as expected",
            diff is None,
            "" if diff is None else f"first difference at byte {diff}",
        )
    if lock_slots is not None:
        wanted = sorted(set(lock_slots))
        missing = [s for s in wanted if not slot_locked(config, s)]
        names = ", ".join(str(s) for s in wanted) or "none"
        report.add(
            "slots locked",
            not missing,
            f"slots {names}"
            if not missing
            else f"slot {', '.join(str(s) for s in missing)} not locked",
        )
    if config[LOCK_VALUE_OFFSET] != LOCKED:
        report.add("certificates", False, "data zone unlocked: certificates cannot be read")
        return report
    try:
        certs = _retrying(
            "certificate reads", lambda: rebuild_and_check(device, cert_info, sn), _CHIP_FAULTS
        )
        public_key = cert_public_key(certs.device_cert)
    except CommError:
        raise
    except (AtcaprovError, ValueError) as exc:
        report.add("certificate chain", False, str(exc))
        return report
    report.device_cert, report.signer_cert = certs.device_cert, certs.signer_cert
    report.add("certificate chain", True, "root -> signer -> device verified")
    slot = cert_info.device_cert_def.private_key_slot
    try:
        _retrying(
            "device key challenge",
            lambda: key_challenge(device, slot, public_key),
            (*_CHIP_FAULTS, ValidationError),
        )
    except CommError:
        raise
    except (AtcaprovError, ValueError) as exc:
        report.add("device key challenge", False, str(exc))
    else:
        report.add("device key challenge", True, f"slot {slot} signed a random challenge")
    return report


def first_config_difference(
    actual: bytes, wanted: bytes, *, include_slot_locks: bool = False
) -> int | None:
    """First differing byte among the writable config bytes, or None.

    Compares 16..83 and 90..127; with ``include_slot_locks`` also 88..89 (the SlotLocked bits,
    which change when slots are locked after the data lock).
    """
    tail = range(88, 128) if include_slot_locks else range(90, 128)
    for i in (*range(16, 84), *tail):
        if actual[i] != wanted[i]:
            return int(i)
    return None
