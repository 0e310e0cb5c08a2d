"""The on-chip layout of a signer module (an ATECC508A holding a signer CA key) and its set-up.

Layout version 2 (docs/signers.md has the full table):

=======  =====  ============================================================================
slot     size   content
=======  =====  ============================================================================
0        36     signer private key, P-256, made by GenKey inside the chip, external Sign only,
                never readable; with a password KeyConfig.ReqAuth=1, AuthKey = slot 1
1        36     password key (32 bytes at offset 0): PBKDF2-HMAC-SHA256 of the password;
                secret, never readable, never writable after the data lock (random when no
                password)
8        416    signer certificate: 2-byte big-endian length L (1..774) + the first
                min(L, 414) bytes of the DER, zero padded
9        72     signer name: 1-byte length + UTF-8 (at most 63 bytes), zero padded
10       72     module info: ``SGNR``, layout version (2), password scheme (0 none, 1 PBKDF2-
                HMAC-SHA256), iterations (u32 BE), salt (32 bytes), zero padded
11-15    72     the rest of the certificate DER (bytes 414.., 72 per slot, in slot order),
                zero padded; all five are written (zeros past the end of the certificate)
=======  =====  ============================================================================

Layout version 1 (modules made before) is the same but for the certificate: slot 8 only (at
most 414 bytes of DER) and slots 11-15 unused. :func:`read_module` reads both versions; the
version comes from slot 10. Every other slot is an unused data slot; slots 8-15 and the unused
ones are readable and never writable after the data lock. Both zones are locked when the module
is made.

Sans-IO encoders/decoders for the config and the slots, :func:`worst_case_cert_size`, plus
:func:`create_module` and :func:`read_module` which drive an :class:`atcaprov.device.Device`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from atcaprov.atcacert.dates import COMP_EXPIRE_YEARS_MAX
from atcaprov.crypto import public_key_from_xy
from atcaprov.datasheet import ATECC508A, ATECC508A_CONFIG_MAP, serial_number
from atcaprov.packet import crc16_value

from . import password as pw
from .base import (
    SIGNER_ID_SIZE,
    SignerConfigError,
    SignerError,
    SignerFormatError,
    SignerIdentity,
    SignerIdentityError,
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
CERT_MORE_SLOTS = (11, 12, 13, 14, 15)  # layout 2: where the certificate continues, in order
BLOCK = 32
CERT_SLOT_SIZE = ATECC508A.slot_sizes[CERT_SLOT]  # 416
MORE_SLOT_SIZE = ATECC508A.slot_sizes[CERT_MORE_SLOTS[0]]  # 72, as all of slots 11-15
CERT_LENGTH_SIZE = 2
CERT_MAX_V1 = CERT_SLOT_SIZE - CERT_LENGTH_SIZE  # 414: layout 1 keeps it all in slot 8
CERT_MAX = CERT_MAX_V1 + len(CERT_MORE_SLOTS) * MORE_SLOT_SIZE  # 774: what a module holds
NAME_AREA = 64  # two blocks of the 72-byte slot are written
NAME_MAX = NAME_AREA - 1
INFO_AREA = 64
INFO_MAGIC = b"SGNR"
LAYOUT_VERSION = 2  # written by create_module
LAYOUT_VERSIONS = (1, 2)  # read by read_module
SCHEME_NONE = 0
DEFAULT_VALIDITY_YEARS = 20

# Config words (little-endian in the config zone).
SLOTCFG_SIGNER_KEY = 0x2081  # ext Sign (bit0), IsSecret (bit7), WriteConfig 0010 = GenKey only
SLOTCFG_PASSWORD_KEY = 0x8080  # IsSecret, no EncryptRead (never readable), WriteConfig never
SLOTCFG_DATA = 0x8000  # clear reads, WriteConfig 1000 = never
KEYCFG_SIGNER_KEY = 0x0013  # Private, PubInfo, KeyType P256
KEYCFG_REQ_AUTH = 0x0080
KEYCFG_DATA = 0x001C  # KeyType 7 (not an ECC key), not lockable
CFG_I2C_ADDRESS = ATECC508A_CONFIG_MAP.i2c_address
CFG_OTP_MODE = ATECC508A_CONFIG_MAP.otp_mode
CFG_CHIP_MODE = ATECC508A_CONFIG_MAP.chip_mode
CFG_SLOT_CONFIG = ATECC508A_CONFIG_MAP.slot_config.offset
CFG_KEY_CONFIG = ATECC508A_CONFIG_MAP.key_config.offset
CFG_LOCK_VALUE = ATECC508A_CONFIG_MAP.lock_value
CFG_LOCK_CONFIG = ATECC508A_CONFIG_MAP.lock_config
CFG_SLOT_LOCKED = ATECC508A_CONFIG_MAP.slot_locked.offset
CONFIG_SIZE = ATECC508A.config_size
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
    if len(base) != CONFIG_SIZE:
        raise ValueError(f"config must be 128 bytes, got {len(base)}")
    cfg = bytearray(base)
    cfg[CFG_OTP_MODE] = OTP_MODE_READ_ONLY
    cfg[CFG_CHIP_MODE] = 0x00
    for slot in range(ATECC508A.slot_count):
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
    if len(config) != CONFIG_SIZE:
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
def cert_capacity(version: int = LAYOUT_VERSION) -> int:
    """The largest certificate DER (bytes) a module of layout ``version`` holds."""
    if version not in LAYOUT_VERSIONS:
        raise ValueError(f"layout version {version}; known: {LAYOUT_VERSIONS}")
    return CERT_MAX_V1 if version == 1 else CERT_MAX


def cert_extents(length: int) -> tuple[tuple[int, int, int], ...]:
    """Where the ``length`` bytes of certificate DER lie: (slot, byte offset, byte count), in
    order. Slot 8 first (after the 2-byte length), then slots 11-15 (layout 2)."""
    if not 0 < length <= CERT_MAX:
        raise ValueError(f"certificate length {length}, expected 1..{CERT_MAX}")
    extents = [(CERT_SLOT, CERT_LENGTH_SIZE, min(length, CERT_MAX_V1))]
    left = length - CERT_MAX_V1
    for slot in CERT_MORE_SLOTS:
        if left <= 0:
            break
        extents.append((slot, 0, min(left, MORE_SLOT_SIZE)))
        left -= MORE_SLOT_SIZE
    return tuple(extents)


def encode_cert_slots(cert_der: bytes) -> dict[int, bytes]:
    """The certificate slots of layout 2, in write order: slot 8 (416 bytes: 2-byte BE length +
    the first 414 bytes of DER, zero padded), then slots 11-15 (72 bytes each: the rest of the
    DER, zero padded; all zeros past its end)."""
    if not 0 < len(cert_der) <= CERT_MAX:
        raise SignerError(
            f"signer certificate is {len(cert_der)} bytes; a signer module holds at most "
            f"{CERT_MAX} (slot {CERT_SLOT}: {CERT_MAX_V1}, slots {CERT_MORE_SLOTS[0]}-"
            f"{CERT_MORE_SLOTS[-1]}: {MORE_SLOT_SIZE} each)"
        )
    images = {CERT_SLOT: bytearray(CERT_SLOT_SIZE)}
    images.update({slot: bytearray(MORE_SLOT_SIZE) for slot in CERT_MORE_SLOTS})
    struct.pack_into(">H", images[CERT_SLOT], 0, len(cert_der))
    pos = 0
    for slot, offset, count in cert_extents(len(cert_der)):
        images[slot][offset : offset + count] = cert_der[pos : pos + count]
        pos += count
    return {slot: bytes(image) for slot, image in images.items()}


def cert_length(head: bytes, version: int = LAYOUT_VERSION) -> int:
    """The certificate length from the first bytes of slot 8, checked against what a module of
    layout ``version`` holds."""
    if len(head) < CERT_LENGTH_SIZE:
        raise SignerFormatError(f"slot {CERT_SLOT}: {len(head)} bytes read, need 2 for the length")
    length = int(struct.unpack_from(">H", head, 0)[0])
    capacity = cert_capacity(version)
    if not 0 < length <= capacity:
        raise SignerFormatError(
            f"slot {CERT_SLOT}: certificate length {length} (bytes {head[:2].hex()}), expected "
            f"1..{capacity} (layout {version})"
        )
    return length


def decode_cert_slots(images: Mapping[int, bytes], version: int = LAYOUT_VERSION) -> bytes:
    """The certificate DER from the slot contents of a module of layout ``version``.

    ``images`` maps slot numbers to their contents from byte 0; each needs only as many bytes as
    the certificate occupies in it (slot 8 first: it holds the length).
    """
    if CERT_SLOT not in images:
        raise SignerFormatError(f"slot {CERT_SLOT} (certificate length) not given")
    length = cert_length(images[CERT_SLOT], version)
    der = bytearray()
    for slot, offset, count in cert_extents(length):
        raw = images.get(slot, b"")
        if len(raw) < offset + count:
            raise SignerFormatError(
                f"slot {slot}: {len(raw)} bytes read, need {offset + count} for certificate "
                f"bytes {len(der)}..{len(der) + count} of {length}"
            )
        der += raw[offset : offset + count]
    return bytes(der)


# DER sizes, for the worst case of a certificate signed again.
_ECDSA_SIGNATURE_ARC = "1.2.840.10045.4."  # ecdsa-with-SHA1/SHA224/SHA256/SHA384/SHA512
_EC_ORDER_BYTES = (32, 48, 66)  # P-256, P-384, P-521


def _der_tlv_size(content: int) -> int:
    """Size of a DER element (tag + length + content) with ``content`` bytes of content."""
    length_size = 1 if content < 0x80 else 1 + (content.bit_length() + 7) // 8
    return 1 + length_size + content


def worst_case_cert_size(cert_der: bytes) -> int:
    """The largest a certificate like ``cert_der`` can be when issued again over another key of
    the same type: same fields, but an ECDSA signature at its longest (r and s each with a
    leading zero byte). The size of ECDSA signatures varies from one signing to the next; other
    signatures do not, so the size of the certificate is returned for them.
    """
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise SignerIdentityError(
            f"not a DER X.509 certificate ({len(cert_der)} bytes starting "
            f"{cert_der[:8].hex()}): {exc}"
        ) from exc
    if not cert.signature_algorithm_oid.dotted_string.startswith(_ECDSA_SIGNATURE_ARC):
        return len(cert_der)
    try:
        r, s = decode_dss_signature(cert.signature)
    except ValueError as exc:
        raise SignerIdentityError(f"ECDSA signature of the certificate is not DER: {exc}") from exc
    used = max((r.bit_length() + 7) // 8, (s.bit_length() + 7) // 8)
    order = next((size for size in _EC_ORDER_BYTES if size >= used), used)
    longest_signature = _der_tlv_size(2 * _der_tlv_size(order + 1))  # SEQUENCE { r, s }
    grow = _der_tlv_size(1 + longest_signature) - _der_tlv_size(1 + len(cert.signature))
    header = 2 if cert_der[1] < 0x80 else 2 + (cert_der[1] & 0x7F)
    return _der_tlv_size(len(cert_der) - header + grow)


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


@dataclasses.dataclass(frozen=True)
class ModuleInfo:
    """Slot 10: the layout version and the password scheme of the module."""

    scheme: int  # SCHEME_NONE or password.KDF_PBKDF2_SHA256
    iterations: int = 0
    salt: bytes = bytes(pw.SALT_SIZE)
    version: int = LAYOUT_VERSION  # 1: certificate in slot 8 only; 2: continued in 11-15

    def encode(self) -> bytes:
        if (
            self.scheme not in (SCHEME_NONE, pw.KDF_PBKDF2_SHA256)
            or len(self.salt) != 32
            or self.version not in LAYOUT_VERSIONS
        ):
            raise ValueError(f"bad module info {self!r}")
        body = INFO_MAGIC + bytes((self.version, self.scheme))
        body += struct.pack(">I", self.iterations) + self.salt
        return body.ljust(INFO_AREA, b"\x00")

    @classmethod
    def decode(cls, raw: bytes) -> ModuleInfo:
        if len(raw) < 42:
            raise SignerFormatError(f"slot {INFO_SLOT}: {len(raw)} bytes read, need 42")
        if raw[0:4] != INFO_MAGIC:
            raise SignerFormatError(
                f"not a signer module: slot {INFO_SLOT} starts {raw[0:4].hex()}, expected "
                f"{INFO_MAGIC.hex()} ({INFO_MAGIC.decode()})"
            )
        if raw[4] not in LAYOUT_VERSIONS:
            raise SignerFormatError(
                f"slot {INFO_SLOT}: layout version {raw[4]}, this code reads "
                f"{', '.join(map(str, LAYOUT_VERSIONS))}"
            )
        scheme = raw[5]
        (iterations,) = struct.unpack_from(">I", raw, 6)
        if scheme not in (SCHEME_NONE, pw.KDF_PBKDF2_SHA256):
            raise SignerFormatError(f"slot {INFO_SLOT}: unknown password scheme {scheme}")
        if scheme == pw.KDF_PBKDF2_SHA256 and iterations < 1:
            raise SignerFormatError(f"slot {INFO_SLOT}: PBKDF2 with {iterations} iterations")
        return cls(scheme, int(iterations), bytes(raw[10:42]), raw[4])


@dataclasses.dataclass(frozen=True)
class ModuleContents:
    """What :func:`read_module` found on a signer module chip."""

    identity: SignerIdentity
    serial: bytes  # 9-byte chip serial number
    info: ModuleInfo
    auth_slot: int  # AuthKey slot of the signer key (meaningful when protected)

    @property
    def protected(self) -> bool:
        return self.info.scheme != SCHEME_NONE

    @property
    def layout_version(self) -> int:
        return self.info.version


# --------------------------------------------------------------------------------------------
# Signer certificate issuing
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
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
    are the dates the atcacert compressed format can carry (hour precision, 0..127 years).
    """
    start = not_before or dt.datetime.now(dt.timezone.utc)
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.timezone.utc)
    start = start.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    if not 0 <= validity_years <= COMP_EXPIRE_YEARS_MAX:
        raise SignerError(
            f"validity_years must be 0..{COMP_EXPIRE_YEARS_MAX} (atcacert), got {validity_years}"
        )
    if validity_years == 0:
        return start, dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
    day = min(start.day, 28) if start.month == 2 else start.day
    return start, start.replace(year=start.year + validity_years, day=day)


# --------------------------------------------------------------------------------------------
# Device operations
# --------------------------------------------------------------------------------------------
def _write_slot(device: Device, slot: int, data: bytes) -> None:
    """Write ``data`` from byte 0 of ``slot`` in 32-byte Writes (the only Writes a chip takes
    before its data lock); a partial last block is zero filled (for a 72-byte slot the tail of
    its third block lies past the slot, as in Device.write_pubkey)."""
    data = data.ljust(-(-len(data) // BLOCK) * BLOCK, b"\x00")
    for block in range(len(data) // BLOCK):
        device.write_zone(ZONE_DATA, slot, block, 0, data[block * BLOCK : (block + 1) * BLOCK])


def _read_slot(device: Device, slot: int, length: int) -> bytes:
    """Bytes 0..length of ``slot`` (32-byte Reads, 4-byte ones for a partial last block)."""
    return bytes(device.read_bytes_zone(ZONE_DATA, slot, 0, length))


def _subject(name: str, organization: str | None, common_name: str | None, sid: bytes) -> x509.Name:
    attributes = []
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    cn = common_name if common_name is not None else f"{name} {sid.hex().upper()}"
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attributes)


def check_cert_fits(issuer: IssueSignerCert, trial_request: SignerCertRequest) -> int:
    """Have ``issuer`` sign ``trial_request`` (over a throwaway P-256 key: any P-256 key gives a
    certificate of the same size) and check the certificate fits a module even with the longest
    signature; return that worst-case size.

    Raises :class:`SignerConfigError` naming the size and the maximum if it does not fit.
    """
    trial = issuer(trial_request)
    worst = worst_case_cert_size(trial)
    if worst > CERT_MAX:
        names = trial_request.subject.rfc4514_string()
        issuer_name = x509.load_der_x509_certificate(trial).issuer.rfc4514_string()
        raise SignerConfigError(
            f"the signer certificate would be up to {worst} bytes ({len(trial)} for a trial "
            f"key); a signer module holds at most {CERT_MAX} bytes of certificate. Shorten the "
            f"subject ({names!r}) or use a root CA with a shorter name ({issuer_name!r})"
        )
    return worst


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

    Before writing anything: checks the name, password, signer id and validity, and has
    ``issuer`` (a callable, or a (root key, root certificate) pair) sign the certificate
    request over a throwaway key, so that a certificate too big for the module
    (:data:`CERT_MAX` bytes, counting the longest signature) is refused with
    :class:`SignerConfigError` while the chip is still blank. The issuer is therefore called
    twice, with the same subject, serial number and dates.

    Then writes and locks the config, makes the signer key inside the chip (GenKey: the private
    key never leaves it), has ``issuer`` make the signer certificate over the chip's public
    key, writes certificate, name, module info and password key, and locks the data zone. The
    subject is ``O=organization`` (if given), ``CN=common_name`` (default ``"<name> <signer id
    hex>"``: the signer id as the last 4 hex digits, where atcacert templates expect it); the
    serial number is 0x40 ‖ signer id (atcacert's SNSRC_SIGNER_ID). ``password`` (None =
    unprotected) is never stored: only the key derived from it, inside the chip.
    """
    if isinstance(issuer, tuple):
        issuer = root_ca_issuer(*issuer)
    name_slot = encode_name_slot(name)  # checks the name before touching the chip
    if password is not None and not password:
        raise SignerError("an empty password is not a password: give None for no password")
    if signer_id is not None and len(signer_id) != SIGNER_ID_SIZE:
        raise SignerError(f"signer_id must be {SIGNER_ID_SIZE} bytes, got {len(signer_id)}")
    start, end = signer_validity(not_before, validity_years)
    from atcaprov.device import LOCK_ZONE_CONFIG, LOCK_ZONE_DATA

    if device.is_locked(LOCK_ZONE_CONFIG) or device.is_locked(LOCK_ZONE_DATA):
        raise SignerError("create_module needs a blank chip: its config or data zone is locked")
    serial = bytes(device.read_serial_number())
    sid = signer_id if signer_id is not None else default_signer_id(serial)
    template = SignerCertRequest(
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),  # throwaway
        subject=_subject(name, organization, common_name, sid),
        serial_number=int.from_bytes(b"\x40" + sid, "big"),
        not_before=start,
        not_after=end,
        signer_id=sid,
    )
    worst = check_cert_fits(issuer, template)  # nothing written yet

    config = signer_module_config(bytes(device.read_config_zone()), password=password is not None)
    device.write_config_zone(config)
    written = bytes(device.read_config_zone())
    if written[16:84] != config[16:84] or written[88:128] != config[88:128]:
        raise SignerError("config read back differs from the config written")
    device.lock_config_zone(crc=crc16_value(written))

    public_xy = bytes(device.genkey(SIGNER_KEY_SLOT))
    public_key = public_key_from_xy(public_xy)
    cert_der = issuer(dataclasses.replace(template, public_key=public_key))
    if len(cert_der) > CERT_MAX:
        raise SignerError(
            f"the issuer returned a {len(cert_der)}-byte signer certificate (its trial one was "
            f"at most {worst}); a module holds at most {CERT_MAX}. The chip's config zone is "
            "locked, its data zone is not"
        )
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
    for slot, image in encode_cert_slots(cert_der).items():
        _write_slot(device, slot, image)
    _write_slot(device, NAME_SLOT, name_slot)
    _write_slot(device, INFO_SLOT, info.encode())
    _write_slot(device, PASSWORD_KEY_SLOT, password_key)
    device.lock_data_zone()

    contents = read_module(device)
    if contents.identity != identity or contents.info != info:
        raise SignerError("signer module read back differs from what was written")
    return identity


def read_module(device: Device) -> ModuleContents:
    """Read and check a signer module's identity and password scheme (no key use).

    Reads modules of layout 1 (certificate in slot 8 only) and 2 (continued in slots 11-15).
    """
    config = bytes(device.read_config_zone())
    protected, auth_slot = check_module_config(config)
    serial = serial_number(config)
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
    images = {CERT_SLOT: head}
    for slot, offset, count in cert_extents(cert_length(head, info.version)):
        if offset + count > len(images.get(slot, b"")):
            images[slot] = _read_slot(device, slot, offset + count)
    cert_der = decode_cert_slots(images, info.version)
    name = decode_name_slot(_read_slot(device, NAME_SLOT, NAME_AREA))
    try:
        identity = SignerIdentity(serial.hex().upper(), name, cert_der)
    except SignerError as exc:
        slots = "slot 8" if len(cert_der) <= CERT_MAX_V1 else "slots 8, 11-15"
        raise SignerFormatError(f"certificate in {slots}: {exc}") from exc
    return ModuleContents(identity=identity, serial=serial, info=info, auth_slot=auth_slot)
