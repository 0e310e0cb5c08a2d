"""Signer set-up: make a signer module, its certificate, the server profile and the cert info.

What ``provserver signer create`` and ``provserver signer list`` do, without click (the command
line is :mod:`provserver.signer_cli`). This module owns:

* the root CA: :func:`make_root_ca` (new P-256 key + self-signed certificate, written by
  :func:`write_root_ca` as PEM files, key mode 0600) or :func:`load_root_ca` (checks that key
  and certificate belong together and that the certificate is a P-256 CA);
* the signer key *inside* a module of each back-end: :func:`create_sim_module_in`,
  :func:`create_hid_module`, :func:`create_pkcs11_module`, :func:`create_pem_module`; each
  issues the signer certificate from the root and stores it in the module, then reopens the
  module through the server's own back-end (what the server will read) and has it sign;
* the files the server and the stations need: the signer profile ``<KEYID>.json`` in
  ``<data dir>/signers/`` (written with :func:`provserver.profile.write_profile`) and the
  ``atcaprov_cert_info_N.c`` file (:class:`atcaprov.certinfo.CertInfo`);
* :func:`create_signer`, the whole ``create`` run: checks every input and does a dry run with a
  throwaway key *before* anything irreversible (a chip's config lock), then root, module,
  files; and :func:`list_modules`, what ``list`` shows.

Errors are :class:`SignerSetupError` (one line saying what was given and what was expected) or
the typed errors of the layers below, all rooted in :class:`atcaprov.errors.AtcaprovError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID

from atcaprov.atcacert.errors import CertError
from atcaprov.atcacert.standard import StandardCertDefs, make_root_cert, make_standard_cert_defs
from atcaprov.certinfo import CertInfo, CertInfoError
from atcaprov.errors import AtcaprovError, CommError
from atcaprov.pemder import load_certificate

from .paths import DataDir, DataDirError, default_data_dir
from .profile import ProfileError, ProfileStore, SignerProfile, write_profile
from .signers.base import (
    SIGNER_ID_SIZE,
    SignerError,
    SignerIdentity,
    SignerModule,
    open_backend,
    public_key_xy,
)
from .signers.module_layout import (
    CERT_MAX,
    DEFAULT_VALIDITY_YEARS,
    NAME_MAX,
    IssueSignerCert,
    SignerCertRequest,
    root_ca_issuer,
    signer_validity,
    worst_case_cert_size,
)
from .signers.password import DEFAULT_ITERATIONS

BACKENDS = ("sim", "hid", "pkcs11", "pem")
CHIP_BACKENDS = ("sim", "hid")
ROOT_KEY_FILE = "root-ca.key"
ROOT_CERT_FILE = "root-ca.crt"
DEFAULT_ROOT_CN = "Example Root CA"
DEFAULT_DEVICE_CN = "Device"
DEFAULT_CERTINFO = "atcaprov_cert_info_0.c"
DEFAULT_PIN_ENV = "ATCAPROV_PKCS11_PIN"
PKCS11_LABEL = "signer"  # the key/certificate label the pkcs11 back-end reads by default
MAX_VALIDITY_YEARS = 31
ROOT_KEY_WARNING = (
    "WARNING: {path} is the root CA private key. Move it to offline storage (an encrypted, "
    "disconnected medium) now; it is needed only to issue further signer certificates."
)
PEM_WARNING = (
    "WARNING: the pem back-end keeps the signer key in a file ({path}); for development only."
)
_CERTINFO_INDEX = re.compile(r"atcaprov_cert_info_(\d+)\.c$")
_SELF_TEST_DIGEST = hashlib.sha256(b"atcaprov signer set-up check").digest()


class SignerSetupError(AtcaprovError):
    """A signer set-up input or step is wrong (what was given, what was expected)."""


class OutputExistsError(SignerSetupError):
    """A file the set-up would write exists already (and may not be overwritten)."""


class RootCaError(SignerSetupError):
    """The root CA key or certificate is missing, unreadable or inconsistent."""


# --------------------------------------------------------------------------------------------
# Small input checks
# --------------------------------------------------------------------------------------------
def parse_signer_id(text: str) -> bytes:
    """A signer id given as 4 hex digits (``C48B``, ``0xC48B``) -> 2 bytes."""
    raw = text.strip()
    digits = raw[2:] if raw.lower().startswith("0x") else raw
    if not re.fullmatch(r"[0-9A-Fa-f]{4}", digits):
        raise SignerSetupError(f"signer id {text!r} is not 4 hex digits (e.g. C48B)")
    return bytes.fromhex(digits)


def check_signer_name(name: str) -> str:
    """The signer name: 1..63 UTF-8 bytes of printable text (it is stored on the module)."""
    size = len(name.encode("utf-8"))
    if not name or not name.isprintable() or name != name.strip():
        raise SignerSetupError(
            f"signer name {name!r} must be printable text without leading/trailing spaces"
        )
    if size > NAME_MAX:
        raise SignerSetupError(
            f"signer name {name!r} is {size} UTF-8 bytes; a signer module holds at most {NAME_MAX}"
        )
    return name


def check_validity_years(years: int, what: str) -> int:
    if not 0 <= years <= MAX_VALIDITY_YEARS:
        raise SignerSetupError(
            f"{what} must be 0..{MAX_VALIDITY_YEARS} (0 = no expiry; atcacert stores at most "
            f"{MAX_VALIDITY_YEARS}), got {years}"
        )
    return years


def certinfo_index(path: Path) -> int:
    """N of ``atcaprov_cert_info_N.c`` (0 for any other file name)."""
    match = _CERTINFO_INDEX.search(path.name)
    return int(match.group(1)) if match else 0


# --------------------------------------------------------------------------------------------
# Root CA
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RootCa:
    """The root CA key and its self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    cert_der: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.cert_der)

    def issuer(self) -> IssueSignerCert:
        """Signs signer certificate requests with this root (module_layout's CA profile)."""
        return root_ca_issuer(self.key, self.cert)


def make_root_ca(
    *,
    common_name: str = DEFAULT_ROOT_CN,
    organization: str | None = None,
    now: dt.datetime,
    validity_years: int = 0,
) -> RootCa:
    """A new P-256 root key and its self-signed CA certificate (0 years = no expiry)."""
    if not common_name:
        raise SignerSetupError("the root CA common name is empty")
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        der = make_root_cert(
            key,
            common_name=common_name,
            now=now,
            organization=organization,
            expire_years=validity_years,
        )
    except (CertError, ValueError) as exc:
        raise RootCaError(f"cannot make the root CA certificate: {exc}") from exc
    return RootCa(key, der)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode``; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise OutputExistsError(f"{path} exists: will not overwrite it") from None
    except OSError as exc:
        raise SignerSetupError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)  # the umask may have removed bits of ``mode``


def root_ca_paths(folder: Path) -> tuple[Path, Path]:
    return folder / ROOT_KEY_FILE, folder / ROOT_CERT_FILE


def check_root_dir(folder: Path) -> None:
    """Refuse a root folder that already holds a root CA (a root key is never overwritten)."""
    for path in root_ca_paths(folder):
        if path.exists():
            raise OutputExistsError(
                f"{path} exists: a root key is never overwritten; use it with --root-key "
                f"{folder / ROOT_KEY_FILE} --root-cert {folder / ROOT_CERT_FILE}, or choose "
                "another --root-dir"
            )
    if folder.exists() and not folder.is_dir():
        raise SignerSetupError(f"root folder {folder} exists and is not a folder")


def write_root_ca(root: RootCa, folder: Path) -> tuple[Path, Path]:
    """Write ``root-ca.key`` (PKCS#8 PEM, mode 0600) and ``root-ca.crt`` (PEM) into ``folder``."""
    check_root_dir(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise SignerSetupError(f"cannot create root folder {folder}: {exc.strerror}") from exc
    key_path, cert_path = root_ca_paths(folder)
    key_pem = root.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_new(key_path, key_pem, 0o600)
    _write_new(cert_path, root.cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return key_path, cert_path


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RootCaError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise RootCaError(f"cannot read {what} {path}: {exc.strerror}") from exc


def root_key_is_encrypted(key_path: Path) -> bool:
    data = _read_file(key_path, "root key")
    return b"ENCRYPTED" in data


def load_root_ca(key_path: Path, cert_path: Path, *, password: bytes | None = None) -> RootCa:
    """Read a root CA (key PEM/DER, certificate PEM/DER) and check they belong together."""
    key_data = _read_file(key_path, "root key")
    cert_data = _read_file(cert_path, "root certificate")
    try:
        key: Any = (
            serialization.load_pem_private_key(key_data, password=password)
            if b"-----BEGIN" in key_data
            else serialization.load_der_private_key(key_data, password=password)
        )
    except TypeError as exc:  # encrypted without password, or password for a clear key
        raise RootCaError(f"root key {key_path}: {exc}") from exc
    except ValueError as exc:
        raise RootCaError(
            f"root key {key_path} is not a readable private key (PEM or DER"
            f"{', or the password is wrong' if password else ''}): {exc}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise RootCaError(f"root key {key_path} is {type(key).__name__}, expected EC P-256")
    try:
        cert = load_certificate(cert_data)
    except ValueError as exc:
        raise RootCaError(f"root certificate {cert_path} is not a certificate: {exc}") from exc
    cert_key = cert.public_key()
    if not isinstance(cert_key, ec.EllipticCurvePublicKey) or not isinstance(
        cert_key.curve, ec.SECP256R1
    ):
        raise RootCaError(
            f"root certificate {cert_path} holds a {type(cert_key).__name__}, expected EC P-256"
        )
    if public_key_xy(cert_key) != public_key_xy(key.public_key()):
        raise RootCaError(
            f"root key {key_path} does not match root certificate {cert_path} (different "
            "public keys)"
        )
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise RootCaError(
            f"root certificate {cert_path} is not a CA certificate (basicConstraints CA=TRUE "
            "missing)"
        )
    return RootCa(key, cert.public_bytes(serialization.Encoding.DER))


# --------------------------------------------------------------------------------------------
# Signer certificate requests (same shape for every back-end)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignerSpec:
    """What the signer certificate and module get."""

    name: str
    signer_id: bytes | None = None  # None: back-end default (chip: SHA-256(SN)[0:2])
    organization: str | None = None
    validity_years: int = DEFAULT_VALIDITY_YEARS
    password: str | None = None
    kdf_iterations: int = DEFAULT_ITERATIONS

    def __post_init__(self) -> None:
        check_signer_name(self.name)
        check_validity_years(self.validity_years, "--validity-years")
        if self.signer_id is not None and len(self.signer_id) != SIGNER_ID_SIZE:
            raise SignerSetupError(f"signer id must be 2 bytes, got {len(self.signer_id)}")
        if self.password is not None and not self.password:
            raise SignerSetupError("the password is empty: give none for no password")


def signer_cert_request(
    public_key: ec.EllipticCurvePublicKey, spec: SignerSpec, signer_id: bytes, now: dt.datetime
) -> SignerCertRequest:
    """The request module_layout.create_module makes for a chip, for any other key."""
    attributes = []
    if spec.organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, spec.organization))
    attributes.append(
        x509.NameAttribute(NameOID.COMMON_NAME, f"{spec.name} {signer_id.hex().upper()}")
    )
    start, end = signer_validity(now, spec.validity_years)
    return SignerCertRequest(
        public_key=public_key,
        subject=x509.Name(attributes),
        serial_number=int.from_bytes(b"\x40" + signer_id, "big"),
        not_before=start,
        not_after=end,
        signer_id=signer_id,
    )


def key_signer_id(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Default signer id of a key that is not on a chip: its key id's first 2 bytes."""
    return hashlib.sha1(b"\x04" + public_key_xy(public_key)).digest()[:SIGNER_ID_SIZE]


@dataclass(frozen=True)
class DeviceSpec:
    """The device certificates the signer will issue."""

    common_name: str = DEFAULT_DEVICE_CN
    organization: str | None = None
    validity_years: int = 0

    def __post_init__(self) -> None:
        if not self.common_name:
            raise SignerSetupError("the device common name is empty")
        check_validity_years(self.validity_years, "--device-validity-years")


def standard_defs(
    root: RootCa, signer_cert_der: bytes, device: DeviceSpec, now: dt.datetime
) -> StandardCertDefs:
    try:
        return make_standard_cert_defs(
            root.cert_der,
            signer_cert_der,
            now=now,
            device_common_name=device.common_name,
            device_organization=device.organization,
            device_expire_years=device.validity_years,
        )
    except CertError as exc:
        raise SignerSetupError(f"cannot make the standard cert defs: {exc}") from exc


def make_cert_info(root: RootCa, identity: SignerIdentity, defs: StandardCertDefs) -> CertInfo:
    try:
        return CertInfo.from_certs(
            identity.signer_cert_der, root.cert_der, identity.name, defs.device, defs.signer
        )
    except (CertInfoError, CertError) as exc:
        raise SignerSetupError(f"cannot make the cert info: {exc}") from exc


def dry_run(
    root: RootCa, spec: SignerSpec, device: DeviceSpec, backend: str, now: dt.datetime
) -> int:
    """Issue a signer certificate for a throwaway key and make defs and cert info from it.

    Run before anything irreversible: a name, date or size problem shows here, not after a
    chip's config zone is locked. Returns the worst-case signer certificate size; for chip
    modules it must fit slots 8 and 11-15 (module_layout.CERT_MAX bytes).
    """
    throwaway = ec.generate_private_key(ec.SECP256R1()).public_key()
    sid = spec.signer_id if spec.signer_id is not None else b"\x00\x00"
    der = root.issuer()(signer_cert_request(throwaway, spec, sid, now))
    worst = worst_case_cert_size(der)
    if backend in CHIP_BACKENDS and worst > CERT_MAX:
        root_name = root.cert.subject.public_bytes()
        raise SignerSetupError(
            f"the signer certificate would be up to {worst} bytes; a signer module chip stores "
            f"at most {CERT_MAX}. Shorten --name ({len(spec.name.encode())} bytes), drop "
            f"--signer-org, or use a root CA with a shorter subject ({len(root_name)} bytes)"
        )
    identity = SignerIdentity("dry-run", spec.name, der)
    make_cert_info(root, identity, standard_defs(root, der, device, now))
    return worst


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreatedModule:
    """A signer module just made, as the server's back-end reads it."""

    backend: str
    location: str
    identity: SignerIdentity
    password_protected: bool
    files: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()


def _check_module(module: SignerModule, expected: SignerIdentity, unlock: str | None) -> bool:
    """The module as the server opens it: same identity, it signs, the signature verifies."""
    if module.identity.signer_cert_der != expected.signer_cert_der:
        raise SignerSetupError(
            f"{module.backend} module at {module.location} reads back another certificate "
            "than the one stored"
        )
    if module.needs_password:
        if unlock is None:
            raise SignerSetupError(
                f"{module.backend} module at {module.location} is locked and no password is known"
            )
        module.unlock(unlock)
    signature = module.sign_digest(_SELF_TEST_DIGEST)
    public = expected.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)  # SignerIdentity checked it
    der = utils.encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public.verify(der, _SELF_TEST_DIGEST, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        raise SignerSetupError(
            f"{module.backend} module at {module.location}: its signature does not verify "
            "with the signer certificate"
        ) from None
    return module.password_protected

def _check_through_backend(
    backend_name: str,
    location: str,
    expected: SignerIdentity,
    password: str | None,
    **options: Any,
) -> tuple[bool, SignerIdentity]:
    """Reopen a new module as the server will (its back-end) and check it.

    Returns (password protected, the identity the back-end reads).
    """
    backend = open_backend(backend_name, **options)
    try:
        with backend.open(location) as module:
            return _check_module(module, expected, password), module.identity
    finally:
        backend.close()


def _module_options(spec: SignerSpec, issuer: IssueSignerCert, now: dt.datetime) -> dict[str, Any]:
    """``module_layout.create_module`` arguments for a chip module made to ``spec``."""
    return {
        "name": spec.name,
        "issuer": issuer,
        "organization": spec.organization,
        "signer_id": spec.signer_id,
        "not_before": now,
        "validity_years": spec.validity_years,
        "password": spec.password,
        "kdf_iterations": spec.kdf_iterations,
    }



def new_chip_serial() -> bytes:
    """A random ATECC508A-style serial number: 01 23 xx xx xx xx xx xx EE."""
    return b"\x01\x23" + secrets.token_bytes(6) + b"\xee"


def create_sim_module_in(
    modules: Path,
    spec: SignerSpec,
    issuer: IssueSignerCert,
    *,
    now: dt.datetime,
    serial: bytes | None = None,
) -> CreatedModule:
    """A new emulated signer module ``signer-<SN>.json`` in the folder ``modules``."""
    from .signers.sim import create_sim_module

    try:
        modules.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SignerSetupError(f"cannot create modules folder {modules}: {exc.strerror}") from exc
    sn = serial if serial is not None else new_chip_serial()
    path = modules / f"signer-{sn.hex().upper()}.json"
    if path.exists():
        raise OutputExistsError(f"{path} exists: will not overwrite a module")
    identity = create_sim_module(path, serial=sn, **_module_options(spec, issuer, now))
    protected, _ = _check_through_backend(
        "sim", str(path), identity, spec.password, modules=modules, transport="emulator"
    )
    return CreatedModule("sim", str(path), identity, protected, files=(path,))


def find_blank_kit(
    *, hid_path: str | None, vid: int, pid: int, timeout: float, hid_module: Any
) -> str:
    """The hidapi path of the first kit whose chip has an unlocked config zone (or check
    ``hid_path`` is one)."""
    from atcaprov.device import LOCK_ZONE_CONFIG, LOCK_ZONE_DATA, Device
    from atcaprov.hal.kit_hid import KitHidHal, enumerate_kits

    if hid_path is not None:
        paths = [os.fsencode(hid_path)]
    else:
        try:
            paths = [kit.path for kit in enumerate_kits(vid, pid, hid_module=hid_module)]
        except (OSError, CommError) as exc:
            raise SignerSetupError(f"hid: cannot list kits {vid:04X}:{pid:04X}: {exc}") from exc
        if not paths:
            raise SignerSetupError(f"hid: no kit {vid:04X}:{pid:04X} found")
    seen: list[str] = []
    for path in paths:
        where = os.fsdecode(path)
        try:
            hal = KitHidHal(
                path=path, vid=vid, pid=pid, timeout=timeout, device_factory=hid_module.device
            )
        except (OSError, AtcaprovError) as exc:
            seen.append(f"{where}: cannot open ({exc})")
            continue
        with Device(hal) as device:
            try:
                locked = device.is_locked(LOCK_ZONE_CONFIG) or device.is_locked(LOCK_ZONE_DATA)
            except (OSError, AtcaprovError) as exc:
                seen.append(f"{where}: no answer ({exc})")
                continue
        if not locked:
            return where
        seen.append(f"{where}: locked (already a module or provisioned)")
    raise SignerSetupError("hid: no blank chip (unlocked config zone): " + "; ".join(seen))


def _hid_package(hid_module: Any) -> Any:
    if hid_module is not None:
        return hid_module
    try:
        import hid
    except ImportError as exc:
        raise SignerSetupError(f"hid: hidapi is not usable here: {exc}") from exc
    return hid


def create_hid_module(
    spec: SignerSpec,
    issuer: IssueSignerCert,
    *,
    now: dt.datetime,
    hid_path: str | None = None,
    vid: int = 0x03EB,
    pid: int = 0x2312,
    timeout: float = 3.0,
    hid_module: Any = None,
) -> CreatedModule:
    """Make the first blank chip on a USB kit (or the one at ``hid_path``) a signer module."""
    from atcaprov.device import Device
    from atcaprov.hal.kit_hid import KitHidHal

    from .signers.module_layout import create_module

    hid = _hid_package(hid_module)
    location = find_blank_kit(hid_path=hid_path, vid=vid, pid=pid, timeout=timeout, hid_module=hid)
    hal = KitHidHal(
        path=os.fsencode(location), vid=vid, pid=pid, timeout=timeout, device_factory=hid.device
    )
    with Device(hal) as device:
        identity = create_module(device, **_module_options(spec, issuer, now))
    protected, _ = _check_through_backend(
        "hid", location, identity, spec.password, vid=vid, pid=pid, timeout=timeout,
        hid_module=hid,
    )
    return CreatedModule("hid", location, identity, protected)


def create_pem_module(
    key_path: Path, spec: SignerSpec, issuer: IssueSignerCert, *, now: dt.datetime
) -> CreatedModule:
    """A key file (with its certificate inside) and ``<stem>.name``; development only."""
    if key_path.suffix not in (".pem", ".key"):
        raise SignerSetupError(f"pem key file {key_path} must end in .pem or .key")
    name_path = key_path.with_suffix(".name")
    for path in (key_path, name_path, key_path.with_suffix(".crt")):
        if path.exists():
            raise OutputExistsError(f"{path} exists: will not overwrite it")
    key = ec.generate_private_key(ec.SECP256R1())
    sid = spec.signer_id if spec.signer_id is not None else key_signer_id(key.public_key())
    cert_der = issuer(signer_cert_request(key.public_key(), spec, sid, now))
    identity = SignerIdentity(key_signer_fingerprint(cert_der), spec.name, cert_der)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(spec.password.encode("utf-8"))
        if spec.password is not None
        else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    cert_pem = x509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM)
    try:
        key_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SignerSetupError(f"cannot create {key_path.parent}: {exc.strerror}") from exc
    _write_new(key_path, key_pem + cert_pem, 0o600)
    _write_new(name_path, (spec.name + "\n").encode("utf-8"), 0o644)
    protected, identity = _check_through_backend(
        "pem", str(key_path), identity, spec.password, path=key_path
    )
    return CreatedModule(
        "pem",
        str(key_path),
        identity,
        protected,
        files=(key_path, name_path),
        notes=(PEM_WARNING.format(path=key_path),),
    )


def key_signer_fingerprint(cert_der: bytes) -> str:
    """The pem back-end's module SN: the key id in uppercase hex."""
    return SignerIdentity("", "", cert_der).key_id.hex().upper()


def _ec_point(raw: bytes) -> bytes:
    """04||X||Y from CKA_EC_POINT (DER OCTET STRING, or raw as some tokens give it)."""
    if len(raw) == 67 and raw[:3] == b"\x04\x41\x04":
        return raw[2:]
    if len(raw) == 65 and raw[0] == 0x04:
        return raw
    raise SignerSetupError(f"pkcs11: EC point of {len(raw)} bytes ({raw[:4].hex()}...) not P-256")


def create_pkcs11_module(
    spec: SignerSpec,
    issuer: IssueSignerCert,
    *,
    now: dt.datetime,
    pin: str,
    library: str | None = None,
    token_label: str | None = None,
    label: str = PKCS11_LABEL,
) -> CreatedModule:
    """Generate the EC P-256 signer key on a PKCS#11 token and store the signer certificate.

    The key pair and a public CKO_CERTIFICATE object are labelled ``label`` (what the pkcs11
    back-end looks for); the private key is sensitive and not extractable. A token that already
    holds objects with that label is refused.
    """
    try:
        import pkcs11
        from pkcs11 import (
            Attribute,
            CertificateType,
            KeyType,
            MechanismFlag,
            ObjectClass,
            TokenFlag,
        )
        from pkcs11 import exceptions as p11e
        from pkcs11.util.ec import encode_named_curve_parameters

        from .signers.pkcs11 import SOFTHSM2_PATHS, find_softhsm2
    except ImportError as exc:
        raise SignerSetupError(
            f"pkcs11: python-pkcs11 is not installed ({exc}); pip install python-pkcs11"
        ) from exc
    path = library or find_softhsm2()
    if path is None:
        raise SignerSetupError(
            "pkcs11: give --pkcs11-lib (SoftHSM2 not found in " + ", ".join(SOFTHSM2_PATHS) + ")"
        )
    try:
        lib = pkcs11.lib(path)
        tokens = [
            t
            for t in lib.get_tokens(token_label=token_label)
            if t.flags & TokenFlag.TOKEN_INITIALIZED
        ]
    except p11e.PKCS11Error as exc:
        raise SignerSetupError(f"pkcs11: cannot use library {path}: {exc!r}") from exc
    if len(tokens) != 1:
        labels = ", ".join(repr(t.label.strip()) for t in tokens) or "none"
        which = f"labelled {token_label!r}" if token_label else "initialised"
        raise SignerSetupError(
            f"pkcs11: expected one token {which} in {path}, found {len(tokens)} ({labels}); "
            "choose one with --pkcs11-token"
        )
    token = tokens[0]
    serial = token.serial
    location = serial.decode("ascii", "replace") if isinstance(serial, bytes) else str(serial)
    location = location.strip()
    token_name = str(token.label).strip()
    try:
        session = token.open(rw=True, user_pin=pin)
    except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange, p11e.PinLocked) as exc:
        raise SignerSetupError(
            f"pkcs11: token {token_name!r} refused the PIN ({type(exc).__name__})"
        ) from exc
    except p11e.PKCS11Error as exc:
        raise SignerSetupError(f"pkcs11: cannot open token {token_name!r}: {exc!r}") from exc
    try:
        existing = list(session.get_objects({Attribute.LABEL: label}))
        if existing:
            raise OutputExistsError(
                f"pkcs11: token {token_name!r} already holds {len(existing)} object(s) labelled "
                f"{label!r}: will not add a second signer key"
            )
        object_id = secrets.token_bytes(20)
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        public, private = params.generate_keypair(
            store=True,
            label=label,
            id=object_id,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
        )
        try:
            point = _ec_point(bytes(public[Attribute.EC_POINT]))
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
            sid = spec.signer_id if spec.signer_id is not None else key_signer_id(key)
            cert_der = issuer(signer_cert_request(key, spec, sid, now))
            cert = x509.load_der_x509_certificate(cert_der)
            session.create_object(
                {
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: False,
                    Attribute.LABEL: label,
                    Attribute.ID: object_id,
                    Attribute.VALUE: cert_der,
                    Attribute.SUBJECT: cert.subject.public_bytes(),
                    Attribute.ISSUER: cert.issuer.public_bytes(),
                }
            )
        except BaseException:
            private.destroy()  # leave the token as it was
            public.destroy()
            raise
    except p11e.PKCS11Error as exc:
        raise SignerSetupError(f"pkcs11: token {token_name!r}: {exc!r}") from exc
    finally:
        session.close()
    identity = SignerIdentity(location, token_name, cert_der)
    protected, identity = _check_through_backend(
        "pkcs11", location, identity, pin, library=path, token_label=token_name
    )
    notes = []
    if token_name != spec.name:
        notes.append(
            f"Note: the pkcs11 back-end names a signer after its token label ({token_name!r}), "
            f"not {spec.name!r}; the cert info file uses {spec.name!r}."
        )
    return CreatedModule("pkcs11", location, identity, protected, notes=tuple(notes))


# --------------------------------------------------------------------------------------------
# Server files
# --------------------------------------------------------------------------------------------
def profile_path(data_dir: Path, key_id: bytes) -> Path:
    return DataDir(data_dir).signers / f"{key_id.hex().upper()}.json"


def check_outputs(paths: Sequence[Path], *, force: bool) -> None:
    for path in paths:
        if path.exists() and (not force or path.is_dir()):
            raise OutputExistsError(
                f"{path} exists: will not overwrite it without --force"
                if not path.is_dir()
                else f"{path} is a folder"
            )


def write_profile_atomic(path: Path, profile: SignerProfile) -> list[Path]:
    """Write the profile (and its root certificate file) so a running server never reads
    half of it: both are written in a hidden folder next to it and renamed into place."""
    folder = path.parent
    tmp = Path(tempfile.mkdtemp(prefix=".signer-setup-", dir=folder))
    try:
        write_profile(tmp / path.name, profile)
        written = []
        for part in sorted(tmp.iterdir(), key=lambda p: p.suffix == ".json"):  # JSON last
            os.replace(part, folder / part.name)
            written.append(folder / part.name)
        return sorted(written, key=lambda p: p.suffix != ".json")  # the profile first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_certinfo(path: Path, info: CertInfo, *, force: bool) -> Path:
    check_outputs([path], force=force)
    text = info.to_c_source(index=certinfo_index(path))
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise SignerSetupError(f"cannot write {path}: {exc.strerror}") from exc
    return path


# --------------------------------------------------------------------------------------------
# The whole create run
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreateRequest:
    """Everything ``signer create`` was asked (passwords/PINs already read)."""

    backend: str
    spec: SignerSpec
    device: DeviceSpec = field(default_factory=DeviceSpec)
    data_dir: Path = field(default_factory=default_data_dir)
    certinfo_out: Path = Path(DEFAULT_CERTINFO)
    force: bool = False
    # root: either both files, or a folder to make a new root in
    root_key: Path | None = None
    root_cert: Path | None = None
    root_key_password: bytes | None = None
    root_dir: Path | None = None
    root_cn: str = DEFAULT_ROOT_CN
    root_org: str | None = None
    root_validity_years: int = 0
    # back-ends
    modules: Path | None = None  # sim; default DATA_DIR/modules, where the server looks
    sim_serial: bytes | None = None
    hid_path: str | None = None
    hid_module: Any = None
    pkcs11_lib: str | None = None
    pkcs11_token: str | None = None
    pkcs11_pin: str | None = None
    pem_key: Path | None = None
    now: dt.datetime | None = None


@dataclass(frozen=True)
class CreateReport:
    """What ``signer create`` did."""

    module: CreatedModule
    root_files: tuple[Path, ...]
    root_created: bool
    profile_files: tuple[Path, ...]
    certinfo: Path
    key_id: bytes
    notes: tuple[str, ...]

    def lines(self) -> list[str]:
        """The plain lines the command prints."""
        ident = self.module.identity
        out = [
            f"Back-end:        {self.module.backend}",
            f"Module location: {self.module.location}",
            f"Module SN:       {ident.module_sn}",
            f"Signer name:     {ident.name}",
            f"Signer subject:  {ident.certificate.subject.rfc4514_string()}",
            f"Signer id:       {ident.signer_id.hex().upper()}",
            f"Key id:          {self.key_id.hex().upper()}",
            f"Password:        {'required' if self.module.password_protected else 'none'}",
        ]
        if self.root_created:
            out.append(f"Root CA created: {', '.join(str(p) for p in self.root_files)}")
        else:
            out.append(f"Root CA used:    {', '.join(str(p) for p in self.root_files)}")
        for path in self.module.files:
            out.append(f"Wrote module:    {path}")
        for path in self.profile_files:
            out.append(f"Wrote profile:   {path}")
        out.append(f"Wrote cert info: {self.certinfo}")
        out.extend(self.notes)
        return out


def _check_request(req: CreateRequest) -> None:
    if req.backend not in BACKENDS:
        raise SignerSetupError(f"unknown back-end {req.backend!r}; known: {', '.join(BACKENDS)}")
    given = req.root_key is not None, req.root_cert is not None
    if given[0] != given[1]:
        raise SignerSetupError("give both --root-key and --root-cert, or neither")
    if not given[0] and req.root_dir is None:
        raise SignerSetupError(
            "no root CA: give --root-dir DIR to make one, or --root-key FILE --root-cert FILE"
        )
    if given[0] and req.root_dir is not None:
        raise SignerSetupError("--root-dir makes a new root CA: not with --root-key/--root-cert")
    if req.backend == "pem" and req.pem_key is None:
        raise SignerSetupError("the pem back-end needs --pem-key FILE (the key file to write)")
    if req.backend == "pkcs11":
        if req.pkcs11_pin is None:
            raise SignerSetupError("the pkcs11 back-end needs the token's user PIN")
        if req.spec.password is not None:
            raise SignerSetupError(
                "pkcs11: the token's user PIN protects the key; a module password does not apply"
            )
    check_validity_years(req.root_validity_years, "--root-validity-years")


def create_signer(req: CreateRequest) -> CreateReport:
    """The whole ``signer create``: check, dry run, root, module, profile, cert info."""
    _check_request(req)
    now = req.now or dt.datetime.now(dt.timezone.utc)
    # 1. Everything that can be checked before writing anything.
    if req.root_key is not None and req.root_cert is not None:
        root = load_root_ca(req.root_key, req.root_cert, password=req.root_key_password)
        root_files: tuple[Path, ...] = (req.root_key, req.root_cert)
        make_root = False
    else:
        assert req.root_dir is not None
        check_root_dir(req.root_dir)
        root = make_root_ca(
            common_name=req.root_cn,
            organization=req.root_org,
            now=now,
            validity_years=req.root_validity_years,
        )
        root_files = root_ca_paths(req.root_dir)
        make_root = True
    check_outputs([req.certinfo_out], force=req.force)
    try:
        DataDir(req.data_dir).ensure()
    except DataDirError as exc:
        raise SignerSetupError(str(exc)) from exc
    dry_run(root, req.spec, req.device, req.backend, now)
    # 2. The root CA files (before the module: a module is useless without its root key).
    notes: list[str] = []
    if make_root:
        assert req.root_dir is not None
        root_files = write_root_ca(root, req.root_dir)
        notes.append(ROOT_KEY_WARNING.format(path=root_files[0]))
    # 3. The module (irreversible for a chip).
    issuer = root.issuer()
    module = _create_module(req, issuer, now)
    notes.extend(module.notes)
    if module.backend in ("sim", "pem") and not module.password_protected:
        notes.append(
            f"No password: anyone who can read {module.location} can sign with this signer."
        )
    # 4. Server profile and cert info.
    identity = module.identity
    defs = standard_defs(root, identity.signer_cert_der, req.device, now)
    info = make_cert_info(
        root, SignerIdentity(identity.module_sn, req.spec.name, identity.signer_cert_der), defs
    )
    target = profile_path(req.data_dir, identity.key_id)
    check_outputs([target], force=req.force)
    profile = SignerProfile(
        signer_key_id=identity.key_id,
        device_cert_def=defs.device,
        root_cert=root.cert_der,
        source=str(target),
    )
    try:
        profile_files = write_profile_atomic(target, profile)
    except (OSError, ProfileError) as exc:
        raise SignerSetupError(f"cannot write the signer profile {target}: {exc}") from exc
    certinfo = write_certinfo(req.certinfo_out, info, force=req.force)
    return CreateReport(
        module=module,
        root_files=tuple(root_files),
        root_created=make_root,
        profile_files=tuple(profile_files),
        certinfo=certinfo,
        key_id=identity.key_id,
        notes=tuple(notes),
    )


def _create_module(req: CreateRequest, issuer: IssueSignerCert, now: dt.datetime) -> CreatedModule:
    try:
        if req.backend == "sim":
            modules = req.modules if req.modules is not None else req.data_dir / "modules"
            return create_sim_module_in(modules, req.spec, issuer, now=now, serial=req.sim_serial)
        if req.backend == "hid":
            return create_hid_module(
                req.spec, issuer, now=now, hid_path=req.hid_path, hid_module=req.hid_module
            )
        if req.backend == "pem":
            assert req.pem_key is not None
            return create_pem_module(req.pem_key, req.spec, issuer, now=now)
        assert req.pkcs11_pin is not None
        return create_pkcs11_module(
            req.spec,
            issuer,
            now=now,
            pin=req.pkcs11_pin,
            library=req.pkcs11_lib,
            token_label=req.pkcs11_token,
        )
    except (SignerError, CommError) as exc:
        raise SignerSetupError(f"{req.backend} module: {exc}") from exc


# --------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModuleListing:
    """One module as the server would see it (``error`` set when it could not be read)."""

    backend: str
    location: str
    identity: SignerIdentity | None = None
    password_protected: bool | None = None
    profile: str | None = None  # the profile file found for its key id
    profile_problem: str | None = None
    error: str | None = None

    def lines(self) -> list[str]:
        out = [f"{self.backend}: {self.location}"]
        if self.error is not None or self.identity is None:
            out.append(f"  error:      {self.error}")
            return out
        ident = self.identity
        out += [
            f"  module SN:  {ident.module_sn}",
            f"  name:       {ident.name}",
            f"  signer id:  {ident.signer_id.hex().upper()}",
            f"  key id:     {ident.key_id.hex().upper()}",
            f"  password:   {'required' if self.password_protected else 'none'}",
            f"  profile:    {self.profile}"
            if self.profile
            else f"  profile:    missing ({self.profile_problem})",
        ]
        return out


@dataclass(frozen=True)
class BackendListing:
    backend: str
    modules: tuple[ModuleListing, ...] = ()
    error: str | None = None

    def lines(self) -> list[str]:
        if self.error is not None:
            return [f"{self.backend}: not available: {self.error}"]
        if not self.modules:
            return [f"{self.backend}: no modules found"]
        out: list[str] = []
        for module in self.modules:
            out += module.lines()
        return out


def list_modules(backends: Mapping[str, Mapping[str, Any]], data_dir: Path) -> list[BackendListing]:
    """Open every module of each back-end (name -> open_backend options), as the server does,
    and look up its profile in ``<data_dir>/signers``."""
    store = ProfileStore([DataDir(data_dir).signers])
    result: list[BackendListing] = []
    for name, options in backends.items():
        try:
            backend = open_backend(name, **options)
        except (SignerError, OSError) as exc:
            result.append(BackendListing(name, error=str(exc)))
            continue
        try:
            try:
                locations = sorted(backend.scan())
            except SignerError as exc:
                result.append(BackendListing(name, error=str(exc)))
                continue
            result.append(
                BackendListing(
                    name, tuple(_list_one(backend, name, loc, store) for loc in locations)
                )
            )
        finally:
            backend.close()
    return result


def _list_one(backend: Any, name: str, location: str, store: ProfileStore) -> ModuleListing:
    try:
        module: SignerModule = backend.open(location)
    except (SignerError, CommError, OSError) as exc:
        return ModuleListing(name, location, error=str(exc))
    with module:
        identity = module.identity
        protected = module.password_protected
    try:
        profile = store.get(identity.key_id)
    except ProfileError as exc:
        return ModuleListing(name, location, identity, protected, profile_problem=str(exc))
    return ModuleListing(name, location, identity, protected, profile=profile.source)
