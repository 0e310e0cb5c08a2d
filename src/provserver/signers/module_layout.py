"""The on-chip layout of a signer module (an ATECC508A holding a signer CA key) and its set-up.

Layout (docs/signers.md has the full table):

======  =====  =============================================================================
slot    size   content
======  =====  =============================================================================
0       36     signer private key, P-256, made by GenKey inside the chip, external Sign only,
               never readable; with a password KeyConfig.ReqAuth=1, AuthKey = slot 1
1       36     password key (32 bytes at offset 0): PBKDF2-HMAC-SHA256 of the password; secret,
               never readable, never writable after the data lock (random when no password)
8       416    signer certificate: 2-byte big-endian length + DER, zero padded
9       72     signer name: 1-byte length + UTF-8 (at most 63 bytes), zero padded
10      72     module info: ``SGNR``, layout version 1, password scheme (0 none, 1 PBKDF2-
               HMAC-SHA256), iterations (u32 BE), salt (32 bytes), zero padded
======  =====  =============================================================================

Every other slot is an unused data slot; slots 8-15 and the unused ones are readable and never
writable after the data lock. Both zones are locked when the module is made.

Sans-IO encoders/decoders for the config and the slots, plus :func:`create_module` and
:func:`read_module` which drive an :class:`atcaprov.device.Device`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from atcaprov.packet import crc16_value

from . import password as pw
from .base import (
    SIGNER_ID_SIZE,
    SignerError,
    SignerFormatError,
    SignerIdentity,
    signer_id_from_certificate,
)

if TYPE_CHECKING:
    from atcaprov.device import Device

ZONE_DATA = 2
SIGNER_KEY_SLOT = 0
PASSWORD_KEY_SLOT = 1
CERT_SLOT = 8
NAME_SLOT = 9
INFO_SLOT = 10
BLOCK = 32
CERT_SLOT_SIZE = 416
CERT_MAX = CERT_SLOT_SIZE - 2
NAME_AREA = 64  # two blocks of the 72-byte slot are written
NAME_MAX = NAME_AREA - 1
INFO_AREA = 64
INFO_MAGIC = b"SGNR"
LAYOUT_VERSION = 1
SCHEME_NONE = 0
DEFAULT_VALIDITY_YEARS = 20

# Config words (little-endian in the config zone).
SLOTCFG_SIGNER_KEY = 0x2081  # ext Sign (bit0), IsSecret (bit7), WriteConfig 0010 = GenKey only
SLOTCFG_PASSWORD_KEY = 0x8080  # IsSecret, no EncryptRead (never readable), WriteConfig never
SLOTCFG_DATA = 0x8000  # clear reads, WriteConfig 1000 = never
KEYCFG_SIGNER_KEY = 0x0013  # Private, PubInfo, KeyType P256
KEYCFG_REQ_AUTH = 0x0080
KEYCFG_DATA = 0x001C  # KeyType 7 (not an ECC key), not lockable
CFG_I2C_ADDRESS = 16
CFG_OTP_MODE = 18
CFG_CHIP_MODE = 19
CFG_SLOT_CONFIG = 20
CFG_KEY_CONFIG = 96
CFG_LOCK_VALUE = 86
CFG_LOCK_CONFIG = 87
CFG_SLOT_LOCKED = 88
OTP_MODE_READ_ONLY = 0xAA


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------
def signer_module_config(base: bytes, *, password: bool) -> bytes:
    """The 128 config bytes of a signer module, built over a chip's current config ``base``.

    Bytes 0-17 (serial, revision, I2C settings), the counters, LastKeyUse and 84-87 (changed by
    UpdateExtra/Lock only) are kept from ``base``; OTP mode, ChipMode, SlotConfig, KeyConfig,
    SlotLocked and X509format are set for the layout.
    """
    if len(base) != 128:
        raise ValueError(f"config must be 128 bytes, got {len(base)}")
    cfg = bytearray(base)
    cfg[CFG_OTP_MODE] = OTP_MODE_READ_ONLY
    cfg[CFG_CHIP_MODE] = 0x00
    for slot in range(16):
        if slot == SIGNER_KEY_SLOT:
            slot_word, key_word = SLOTCFG_SIGNER_KEY, KEYCFG_SIGNER_KEY
            if password:
                key_word |= KEYCFG_REQ_AUTH | (PASSWORD_KEY_SLOT << 8)
        elif slot == PASSWORD_KEY_SLOT:
            slot_word, key_word = SLOTCFG_PASSWORD_KEY, KEYCFG_DATA
        else:
            slot_word, key_word = SLOTCFG_DATA, KEYCFG_DATA
        struct.pack_into("<H", cfg, CFG_SLOT_CONFIG + 2 * slot, slot_word)
        struct.pack_into("<H", cfg, CFG_KEY_CONFIG + 2 * slot, key_word)
    cfg[CFG_SLOT_LOCKED : CFG_SLOT_LOCKED + 2] = b"\xff\xff"
    cfg[90:96] = bytes(6)  # RFU, X509format
    return bytes(cfg)


def _word(config: bytes, offset: int) -> int:
    return int(struct.unpack_from("<H", config, offset)[0])


def check_module_config(config: bytes) -> tuple[bool, int]:
    """Check a read config against the layout; return (password protected, AuthKey slot)."""
    if len(config) != 128:
        raise SignerFormatError(f"config must be 128 bytes, got {len(config)}")
    if config[CFG_LOCK_CONFIG] != 0x00 or config[CFG_LOCK_VALUE] != 0x00:
        raise SignerFormatError(
            f"not a signer module: config lock byte 0x{config[CFG_LOCK_CONFIG]:02X}, data lock "
            f"byte 0x{config[CFG_LOCK_VALUE]:02X} (both must be 0x00, locked)"
        )
    slot_word = _word(config, CFG_SLOT_CONFIG + 2 * SIGNER_KEY_SLOT)
    key_word = _word(config, CFG_KEY_CONFIG + 2 * SIGNER_KEY_SLOT)
    if key_word & 0x001D != 0x0011 or not slot_word & 0x0001:
        raise SignerFormatError(
            f"not a signer module: slot {SIGNER_KEY_SLOT} SlotConfig 0x{slot_word:04X} KeyConfig "
            f"0x{key_word:04X} is not a P-256 private key with external Sign"
        )
    protected = bool(key_word & KEYCFG_REQ_AUTH)
    return protected, (key_word >> 8) & 0x0F


# --------------------------------------------------------------------------------------------
# Slot contents (sans-IO)
# --------------------------------------------------------------------------------------------
def encode_cert_slot(cert_der: bytes) -> bytes:
    """Slot 8 contents: 2-byte BE length + DER, zero padded to 416 bytes."""
    if not 0 < len(cert_der) <= CERT_MAX:
        raise SignerError(
            f"signer certificate is {len(cert_der)} bytes; slot {CERT_SLOT} holds at most "
            f"{CERT_MAX}"
        )
    return (struct.pack(">H", len(cert_der)) + cert_der).ljust(CERT_SLOT_SIZE, b"\x00")


def cert_length(head: bytes) -> int:
    """The certificate length from the first bytes of slot 8 (checked against the slot)."""
    length = int(struct.unpack_from(">H", head, 0)[0])
    if not 0 < length <= CERT_MAX:
        raise SignerFormatError(
            f"slot {CERT_SLOT}: certificate length {length} (bytes {head[:2].hex()}), expected "
            f"1..{CERT_MAX}"
        )
    return length


def decode_cert_slot(raw: bytes) -> bytes:
    length = cert_length(raw)
    if len(raw) < 2 + length:
        raise SignerFormatError(f"slot {CERT_SLOT}: {len(raw)} bytes read, need {2 + length}")
    return bytes(raw[2 : 2 + length])


def encode_name_slot(name: str) -> bytes:
    """Slot 9 contents (first 64 bytes): 1-byte length + UTF-8 name, zero padded."""
    data = name.encode("utf-8")
    if not 0 < len(data) <= NAME_MAX:
        raise SignerError(f"signer name {name!r} is {len(data)} UTF-8 bytes; 1..{NAME_MAX} fit")
    return (bytes((len(data),)) + data).ljust(NAME_AREA, b"\x00")


def decode_name_slot(raw: bytes) -> str:
    length = raw[0]
    if not 0 < length <= NAME_MAX or len(raw) < 1 + length:
        raise SignerFormatError(f"slot {NAME_SLOT}: name length {length}, expected 1..{NAME_MAX}")
    try:
        return bytes(raw[1 : 1 + length]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SignerFormatError(f"slot {NAME_SLOT}: name is not UTF-8: {exc}") from exc


@dataclass(frozen=True)
class ModuleInfo:
    """Slot 10: the password scheme of the module."""

    scheme: int  # SCHEME_NONE or password.KDF_PBKDF2_SHA256
    iterations: int = 0
    salt: bytes = bytes(pw.SALT_SIZE)

    def encode(self) -> bytes:
        if self.scheme not in (SCHEME_NONE, pw.KDF_PBKDF2_SHA256) or len(self.salt) != 32:
            raise ValueError(f"bad module info {self!r}")
        body = INFO_MAGIC + bytes((LAYOUT_VERSION, self.scheme))
        body += struct.pack(">I", self.iterations) + self.salt
        return body.ljust(INFO_AREA, b"\x00")

    @classmethod
    def decode(cls, raw: bytes) -> ModuleInfo:
        if raw[0:4] != INFO_MAGIC:
            raise SignerFormatError(
                f"not a signer module: slot {INFO_SLOT} starts {raw[0:4].hex()}, expected "
                f"{INFO_MAGIC.hex()} ({INFO_MAGIC.decode()})"
            )
        if raw[4] != LAYOUT_VERSION:
            raise SignerFormatError(
                f"slot {INFO_SLOT}: layout version {raw[4]}, this code reads {LAYOUT_VERSION}"
            )
        scheme = raw[5]
        (iterations,) = struct.unpack_from(">I", raw, 6)
        if scheme not in (SCHEME_NONE, pw.KDF_PBKDF2_SHA256):
            raise SignerFormatError(f"slot {INFO_SLOT}: unknown password scheme {scheme}")
        if scheme == pw.KDF_PBKDF2_SHA256 and iterations < 1:
            raise SignerFormatError(f"slot {INFO_SLOT}: PBKDF2 with {iterations} iterations")
        return cls(scheme, int(iterations), bytes(raw[10:42]))


@dataclass(frozen=True)
class ModuleContents:
    """What :func:`read_module` found on a signer module chip."""

    identity: SignerIdentity
    serial: bytes  # 9-byte chip serial number
    info: ModuleInfo
    auth_slot: int  # AuthKey slot of the signer key (meaningful when protected)

    @property
    def protected(self) -> bool:
        return self.info.scheme != SCHEME_NONE


# --------------------------------------------------------------------------------------------
# Signer certificate issuing
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignerCertRequest:
    """What the issuer callback gets: the chip's public key and the certificate's fields."""

    public_key: ec.EllipticCurvePublicKey
    subject: x509.Name
    serial_number: int
    not_before: dt.datetime
    not_after: dt.datetime
    signer_id: bytes


IssueSignerCert = Callable[[SignerCertRequest], bytes]
"""Makes the signer certificate (DER) for a request, signed by the root CA key."""


def root_ca_issuer(
    root_key: ec.EllipticCurvePrivateKey, root_cert: x509.Certificate
) -> IssueSignerCert:
    """An issuer signing with a root CA key held here (ecdsa-with-SHA256).

    The certificate is a CA certificate (basicConstraints CA, pathlen 0; keyUsage
    digitalSignature, keyCertSign, cRLSign) with subject and authority key ids.
    """

    def issue(req: SignerCertRequest) -> bytes:
        cert = (
            x509.CertificateBuilder()
            .subject_name(req.subject)
            .issuer_name(root_cert.subject)
            .public_key(req.public_key)
            .serial_number(req.serial_number)
            .not_valid_before(req.not_before)
            .not_valid_after(req.not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(req.public_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
            )
            .sign(root_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.DER)

    return issue


def default_signer_id(serial: bytes) -> bytes:
    """The signer id a module gets when none is given: SHA-256(chip serial)[0:2]."""
    return hashlib.sha256(serial).digest()[:SIGNER_ID_SIZE]


def signer_validity(
    not_before: dt.datetime | None, validity_years: int
) -> tuple[dt.datetime, dt.datetime]:
    """Issue date truncated to the hour (UTC); expiry N years later, same month/day/hour.

    ``validity_years`` 0 means no expiry (9999-12-31 23:59:59), as atcacert encodes it. These
    are the dates the atcacert compressed format can carry (hour precision, 0..31 years).
    """
    start = not_before or dt.datetime.now(dt.timezone.utc)
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.timezone.utc)
    start = start.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    if not 0 <= validity_years <= 31:
        raise SignerError(f"validity_years must be 0..31 (atcacert), got {validity_years}")
    if validity_years == 0:
        return start, dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
    day = min(start.day, 28) if start.month == 2 else start.day
    return start, start.replace(year=start.year + validity_years, day=day)


# --------------------------------------------------------------------------------------------
# Device operations
# --------------------------------------------------------------------------------------------
def _write_slot(device: Device, slot: int, data: bytes) -> None:
    if len(data) % BLOCK:
        raise ValueError(f"slot {slot} data must be whole 32-byte blocks, got {len(data)}")
    for block in range(len(data) // BLOCK):
        device.write_zone(ZONE_DATA, slot, block, 0, data[block * BLOCK : (block + 1) * BLOCK])


def _read_slot(device: Device, slot: int, length: int) -> bytes:
    blocks = -(-length // BLOCK)
    raw = b"".join(device.read_zone(ZONE_DATA, slot, block, 0, BLOCK) for block in range(blocks))
    return raw[:length]


def create_module(
    device: Device,
    *,
    name: str,
    issuer: IssueSignerCert | tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    common_name: str | None = None,
    organization: str | None = None,
    signer_id: bytes | None = None,
    not_before: dt.datetime | None = None,
    validity_years: int = DEFAULT_VALIDITY_YEARS,
    password: str | None = None,
    kdf_iterations: int = pw.DEFAULT_ITERATIONS,
) -> SignerIdentity:
    """Turn a blank chip into a signer module; return its identity.

    Writes and locks the config, makes the signer key inside the chip (GenKey: the private key
    never leaves it), has ``issuer`` (a callable, or a (root key, root certificate) pair) make
    the signer certificate over the chip's public key, writes certificate, name, module info
    and password key, then locks the data zone. The subject is ``O=organization`` (if given),
    ``CN=common_name`` (default ``"<name> <signer id hex>"``: the signer id as the last 4 hex
    digits, where atcacert templates expect it); the serial number is 0x40 ‖ signer id
    (atcacert's SNSRC_SIGNER_ID). ``password`` (None = unprotected) is never stored: only the
    key derived from it, inside the chip.
    """
    if isinstance(issuer, tuple):
        issuer = root_ca_issuer(*issuer)
    name_slot = encode_name_slot(name)  # checks the name before touching the chip
    if password is not None and not password:
        raise SignerError("an empty password is not a password: give None for no password")
    from atcaprov.device import LOCK_ZONE_CONFIG, LOCK_ZONE_DATA

    if device.is_locked(LOCK_ZONE_CONFIG) or device.is_locked(LOCK_ZONE_DATA):
        raise SignerError("create_module needs a blank chip: its config or data zone is locked")
    serial = bytes(device.read_serial_number())
    config = signer_module_config(bytes(device.read_config_zone()), password=password is not None)
    device.write_config_zone(config)
    written = bytes(device.read_config_zone())
    if written[16:84] != config[16:84] or written[88:128] != config[88:128]:
        raise SignerError("config read back differs from the config written")
    device.lock_config_zone(crc=crc16_value(written))

    public_xy = bytes(device.genkey(SIGNER_KEY_SLOT))
    public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + public_xy)
    sid = signer_id if signer_id is not None else default_signer_id(serial)
    if len(sid) != SIGNER_ID_SIZE:
        raise SignerError(f"signer_id must be {SIGNER_ID_SIZE} bytes, got {len(sid)}")
    attributes = []
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    cn = common_name if common_name is not None else f"{name} {sid.hex().upper()}"
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    start, end = signer_validity(not_before, validity_years)
    request = SignerCertRequest(
        public_key=public_key,
        subject=x509.Name(attributes),
        serial_number=int.from_bytes(b"\x40" + sid, "big"),
        not_before=start,
        not_after=end,
        signer_id=sid,
    )
    cert_der = issuer(request)
    identity = SignerIdentity(serial.hex().upper(), name, cert_der)
    if identity.public_key != public_xy:
        raise SignerError("the issuer returned a certificate for another public key")
    found_sid = signer_id_from_certificate(identity.certificate)
    if found_sid is not None and found_sid != sid:
        raise SignerError(
            f"signer certificate CN names signer id {found_sid.hex().upper()}, the module was "
            f"given {sid.hex().upper()}"
        )

    if password is None:
        info = ModuleInfo(SCHEME_NONE)
        password_key = os.urandom(pw.KEY_SIZE)  # unused, but nobody knows it
    else:
        info = ModuleInfo(pw.KDF_PBKDF2_SHA256, kdf_iterations, os.urandom(pw.SALT_SIZE))
        password_key = pw.derive_password_key(password, info.salt, kdf_iterations)
    _write_slot(device, CERT_SLOT, encode_cert_slot(cert_der))
    _write_slot(device, NAME_SLOT, name_slot)
    _write_slot(device, INFO_SLOT, info.encode())
    _write_slot(device, PASSWORD_KEY_SLOT, password_key)
    device.lock_data_zone()

    contents = read_module(device)
    if contents.identity != identity or contents.info != info:
        raise SignerError("signer module read back differs from what was written")
    return identity


def read_module(device: Device) -> ModuleContents:
    """Read and check a signer module's identity and password scheme (no key use)."""
    config = bytes(device.read_config_zone())
    protected, auth_slot = check_module_config(config)
    serial = config[0:4] + config[8:13]
    info = ModuleInfo.decode(_read_slot(device, INFO_SLOT, INFO_AREA))
    if protected != (info.scheme != SCHEME_NONE):
        raise SignerFormatError(
            f"slot {SIGNER_KEY_SLOT} ReqAuth={int(protected)} but slot {INFO_SLOT} says password "
            f"scheme {info.scheme}"
        )
    if protected and auth_slot != PASSWORD_KEY_SLOT:
        raise SignerFormatError(
            f"slot {SIGNER_KEY_SLOT} AuthKey is slot {auth_slot}, layout puts the password key "
            f"in slot {PASSWORD_KEY_SLOT}"
        )
    head = _read_slot(device, CERT_SLOT, BLOCK)
    cert_der = decode_cert_slot(_read_slot(device, CERT_SLOT, 2 + cert_length(head)))
    name = decode_name_slot(_read_slot(device, NAME_SLOT, NAME_AREA))
    try:
        identity = SignerIdentity(serial.hex().upper(), name, cert_der)
    except SignerError as exc:
        raise SignerFormatError(f"slot {CERT_SLOT}: {exc}") from exc
    return ModuleContents(identity=identity, serial=serial, info=info, auth_slot=auth_slot)
