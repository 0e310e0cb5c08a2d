"""The standard pair of cert defs for a new signer, and certificates to seed them.

Layout (the app note's and the Microchip kits'): signer def = SNSRC_SIGNER_ID, signer public
key padded to 72 bytes in data slot 11, compressed signer cert in slot 12; device def =
SNSRC_PUB_KEY_HASH, device key from GenKey on slot 0, compressed device cert in slot 10. The
templates are real certificates made with ``cryptography`` and located with
``cert_def_from_cert``. Nothing here reads clocks or files: pass ``now`` in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..crypto import CryptoFormatError, certificate_public_key, public_key_from_xy
from .certdef import CertDef, DeviceLoc, DevZone
from .dates import CertDate
from .errors import AtcacertCode, CertDefError
from .fromcert import cert_def_from_cert
from .keys import public_key_bytes, raw_public_key
from .sn import SnSource

SIGNER_PUBKEY_SLOT = 11
SIGNER_CERT_SLOT = 12
DEVICE_KEY_SLOT = 0
DEVICE_CERT_SLOT = 10

NO_EXPIRY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


@dataclass(frozen=True)
class StandardCertDefs:
    """The signer and device definitions of one signer, and their C names."""

    signer: CertDef
    device: CertDef
    signer_name: str = "1_signer"
    device_name: str = "2_device"


def hour_floor(now: datetime) -> datetime:
    """``now`` in UTC without minutes and seconds (compressed certs keep whole hours)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _expiry(issue: datetime, years: int) -> datetime:
    if years == 0:
        return NO_EXPIRY
    d = CertDate.from_datetime(issue).plus_years(years)
    return d.to_datetime()


def _name(common_name: str, organization: str | None) -> x509.Name:
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _cert_key(cert: x509.Certificate, role: str) -> ec.EllipticCurvePublicKey:
    try:
        return certificate_public_key(cert)
    except CryptoFormatError as exc:
        raise CertDefError(f"{role} certificate key is not EC P-256", field=f"{role}_cert") from exc


def make_root_cert(
    root_key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str,
    now: datetime,
    organization: str | None = None,
    expire_years: int = 0,
) -> bytes:
    """A self-signed P-256 root CA certificate (DER)."""
    issue = hour_floor(now)
    name = _name(common_name, organization)
    pub = root_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(issue)
        .not_valid_after(_expiry(issue, expire_years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
    )
    return builder.sign(root_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def make_signer_cert(
    root_cert_der: bytes,
    root_key: ec.EllipticCurvePrivateKey,
    signer_public_key: bytes,
    *,
    signer_id: bytes,
    now: datetime,
    common_name: str = "Signer",
    organization: str | None = None,
    expire_years: int = 0,
) -> bytes:
    """A signer (intermediate CA) certificate that fits the standard signer def: serial
    ``40 ‖ signer_id``, the signer id as 4 uppercase hex chars ending the common name, dates
    on whole hours, key ids SHA1(04‖X‖Y)."""
    if len(signer_id) != 2:
        raise CertDefError("signer id is 2 bytes", field="signer_id", code=AtcacertCode.BAD_PARAMS)
    root = x509.load_der_x509_certificate(root_cert_der)
    issue = hour_floor(now)
    pub = public_key_from_xy(raw_public_key(signer_public_key))
    root_pub = _cert_key(root, "root")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{common_name} {signer_id.hex().upper()}", organization))
        .issuer_name(root.subject)
        .public_key(pub)
        .serial_number(int.from_bytes(b"\x40" + bytes(signer_id), "big"))
        .not_valid_before(issue)
        .not_valid_after(_expiry(issue, expire_years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_pub), critical=False)
    )
    return builder.sign(root_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def make_device_template_cert(
    signer_cert_der: bytes,
    *,
    now: datetime,
    common_name: str = "Device",
    organization: str | None = None,
    expire_years: int = 0,
    sn_size: int = 16,
) -> bytes:
    """A sample device certificate issued by the signer (throwaway keys; only its layout
    matters): the device def's template."""
    signer = x509.load_der_x509_certificate(signer_cert_der)
    signer_pub = _cert_key(signer, "signer")
    device_key = ec.generate_private_key(ec.SECP256R1())
    throwaway = ec.generate_private_key(ec.SECP256R1())
    issue = hour_floor(now)
    pub = device_key.public_key()
    serial = int.from_bytes(b"\x40" + b"\x00" * (sn_size - 1), "big")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization))
        .issuer_name(signer.subject)
        .public_key(pub)
        .serial_number(serial)
        .not_valid_before(issue)
        .not_valid_after(_expiry(issue, expire_years))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, True, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_pub), critical=False
        )
    )
    der = builder.sign(throwaway, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    issuer_der = signer.subject.public_bytes()
    if issuer_der not in der:
        raise CertDefError(
            "the device template's issuer name does not reproduce the signer's "
            "subject byte for byte",
            field="issuer",
        )
    return der


def make_standard_cert_defs(
    root_cert_der: bytes,
    signer_cert_der: bytes,
    *,
    now: datetime,
    signer_id: bytes | None = None,
    device_common_name: str = "Device",
    device_organization: str | None = None,
    device_expire_years: int = 0,
    device_sn_size: int = 16,
    signer_template_id: int = 1,
    device_template_id: int = 2,
    chain_id: int = 0,
    signer_name: str = "1_signer",
    device_name: str = "2_device",
) -> StandardCertDefs:
    """The standard signer/device definition pair for a signer (see module docstring).

    ``signer_id`` defaults to bytes 1-2 of a ``40 xx xx`` signer serial number. ``now`` dates
    the device template (its dates are placeholders; only their ASN.1 types matter).
    """
    signer = x509.load_der_x509_certificate(signer_cert_der)
    root = x509.load_der_x509_certificate(root_cert_der)
    if signer_id is None:
        serial = signer.serial_number.to_bytes(3, "big") if signer.serial_number < 1 << 24 else b""
        if len(serial) != 3 or serial[0] != 0x40:
            raise CertDefError(
                "signer serial number is not 40 xx xx: pass signer_id=",
                field="signer_id",
                code=AtcacertCode.BAD_PARAMS,
            )
        signer_id = serial[1:]
    root_pub = _cert_key(root, "root")
    signer_def = cert_def_from_cert(
        signer_cert_der,
        template_id=signer_template_id,
        chain_id=chain_id,
        sn_source=SnSource.SIGNER_ID,
        private_key_slot=0,
        public_key_dev_loc=DeviceLoc(DevZone.DATA, SIGNER_PUBKEY_SLOT, False, 0, 72),
        comp_cert_dev_loc=DeviceLoc(DevZone.DATA, SIGNER_CERT_SLOT, False, 0, 72),
        signer_id=signer_id,
        signer_id_in="subject",
        ca_public_key=public_key_bytes(root_pub),
    )
    template = make_device_template_cert(
        signer_cert_der,
        now=now,
        common_name=device_common_name,
        organization=device_organization,
        expire_years=device_expire_years,
        sn_size=device_sn_size,
    )
    device_def = cert_def_from_cert(
        template,
        template_id=device_template_id,
        chain_id=chain_id,
        sn_source=SnSource.PUB_KEY_HASH,
        private_key_slot=DEVICE_KEY_SLOT,
        public_key_dev_loc=DeviceLoc(DevZone.DATA, DEVICE_KEY_SLOT, True, 0, 64),
        comp_cert_dev_loc=DeviceLoc(DevZone.DATA, DEVICE_CERT_SLOT, False, 0, 72),
        signer_id=signer_id,
        signer_id_in="issuer",
    )
    device_def = replace(device_def, ca_cert_def=f"g_cert_def_{signer_name}")
    return StandardCertDefs(signer_def, device_def, signer_name, device_name)
