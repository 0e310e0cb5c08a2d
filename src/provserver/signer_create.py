"""``provserver signer create`` without click: a signer module, its certificate, the server
profile and the cert info, in one checked run.

:func:`create_signer` checks every input and does a dry run with a throwaway key (:func:`dry_run`)
*before* anything irreversible (a chip's config lock), then writes the root CA
(:mod:`provserver.root_ca`), has the back-end's module creator make the module
(:mod:`provserver.signers.create`; each back-end's creator is in its own file), and writes the
files the server and the stations need: the signer profile ``<KEYID>.json`` in
``<data dir>/signers/`` (written with :func:`provserver.profile.write_profile`) and the
``atcaprov_cert_info_N.c`` file (:class:`atcaprov.certinfo.CertInfo`). The command line is
:mod:`provserver.signer_cli`.

Errors are :class:`~provserver.signers.create.SignerSetupError` (one line saying what was given
and what was expected) or the typed errors of the layers below, all rooted in
:class:`atcaprov.errors.AtcaprovError`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from atcaprov.atcacert.errors import CertError
from atcaprov.atcacert.standard import StandardCertDefs, make_standard_cert_defs
from atcaprov.certinfo import CertInfo, CertInfoError
from atcaprov.errors import CommError

from .paths import DataDir, DataDirError, default_data_dir
from .profile import ProfileError, SignerProfile, write_profile
from .root_ca import (
    DEFAULT_ROOT_CN,
    ROOT_KEY_WARNING,
    RootCa,
    check_root_dir,
    load_root_ca,
    make_root_ca,
    root_ca_paths,
    write_root_ca,
)
from .signers.base import SignerError, SignerIdentity
from .signers.create import (
    CreatedModule,
    ModuleCreator,
    OutputExistsError,
    SignerSetupError,
    SignerSpec,
    check_validity_years,
    module_creator,
    signer_cert_request,
)
from .signers.module_layout import IssueSignerCert, worst_case_cert_size

DEFAULT_DEVICE_CN = "Device"
DEFAULT_CERTINFO = "atcaprov_cert_info_0.c"
_CERTINFO_INDEX = re.compile(r"atcaprov_cert_info_(\d+)\.c$")


def certinfo_index(path: Path) -> int:
    """N of ``atcaprov_cert_info_N.c`` (0 for any other file name)."""
    match = _CERTINFO_INDEX.search(path.name)
    return int(match.group(1)) if match else 0


# --------------------------------------------------------------------------------------------
# Device certificates, dry run
# --------------------------------------------------------------------------------------------
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
    root: RootCa,
    spec: SignerSpec,
    device: DeviceSpec,
    now: dt.datetime,
    *,
    cert_max: int | None = None,
) -> int:
    """Issue a signer certificate for a throwaway key and make defs and cert info from it.

    Run before anything irreversible: a name, date or size problem shows here, not after a
    chip's config zone is locked. Returns the worst-case signer certificate size; it must fit
    ``cert_max`` (the module creator's; for chip modules slots 8 and 11-15, module_layout.CERT_MAX
    bytes).
    """
    throwaway = ec.generate_private_key(ec.SECP256R1()).public_key()
    sid = spec.signer_id if spec.signer_id is not None else b"\x00\x00"
    der = root.issuer()(signer_cert_request(throwaway, spec, sid, now))
    worst = worst_case_cert_size(der)
    if cert_max is not None and worst > cert_max:
        root_name = root.cert.subject.public_bytes()
        raise SignerSetupError(
            f"the signer certificate would be up to {worst} bytes; a signer module chip stores "
            f"at most {cert_max}. Shorten --name ({len(spec.name.encode())} bytes), drop "
            f"--signer-org, or use a root CA with a shorter subject ({len(root_name)} bytes)"
        )
    identity = SignerIdentity("dry-run", spec.name, der)
    make_cert_info(root, identity, standard_defs(root, der, device, now))
    return worst


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
    """Everything ``signer create`` was asked (passwords/PINs already read).

    ``backend_options`` are the keyword options of the back-end's module creator (its own:
    e.g. ``modules`` for ``sim``, ``path`` for ``pem``, ``pin`` for ``pkcs11``).
    """

    backend: str
    spec: SignerSpec
    backend_options: Mapping[str, Any] = field(default_factory=dict)
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


def _check_request(req: CreateRequest) -> ModuleCreator:
    try:
        creator = module_creator(req.backend, **req.backend_options)
    except SignerError as exc:
        raise SignerSetupError(str(exc)) from exc
    given = req.root_key is not None, req.root_cert is not None
    if given[0] != given[1]:
        raise SignerSetupError("give both --root-key and --root-cert, or neither")
    if not given[0] and req.root_dir is None:
        raise SignerSetupError(
            "no root CA: give --root-dir DIR to make one, or --root-key FILE --root-cert FILE"
        )
    if given[0] and req.root_dir is not None:
        raise SignerSetupError("--root-dir makes a new root CA: not with --root-key/--root-cert")
    creator.check(req.spec)
    check_validity_years(req.root_validity_years, "--root-validity-years")
    return creator


def create_signer(req: CreateRequest) -> CreateReport:
    """The whole ``signer create``: check, dry run, root, module, profile, cert info."""
    creator = _check_request(req)
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
    dry_run(root, req.spec, req.device, now, cert_max=creator.cert_max)
    # 2. The root CA files (before the module: a module is useless without its root key).
    notes: list[str] = []
    if make_root:
        assert req.root_dir is not None
        root_files = write_root_ca(root, req.root_dir)
        notes.append(ROOT_KEY_WARNING.format(path=root_files[0]))
    # 3. The module (irreversible for a chip).
    issuer = root.issuer()
    module = _create_module(req.backend, creator, req.spec, issuer, now)
    notes.extend(module.notes)
    if creator.module_is_file and not module.password_protected:
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


def _create_module(
    backend: str,
    creator: ModuleCreator,
    spec: SignerSpec,
    issuer: IssueSignerCert,
    now: dt.datetime,
) -> CreatedModule:
    try:
        return creator.create(spec, issuer, now)
    except (SignerError, CommError) as exc:
        raise SignerSetupError(f"{backend} module: {exc}") from exc
