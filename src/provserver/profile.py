"""Signer profiles: what the server puts in the certificates a signer signs.

A profile belongs to one signer key (its key id, SHA1(04‖X‖Y) of the signer public key) and
holds the device certificate definition, the validity period and the values of the template's
custom elements. It lives on the server, never comes from a station: a station only names the
signer. Profiles are JSON files ``<KEYID>.json`` (40 hex digits, or any name with a
``signer_key_id`` field) in the data folder's ``signers/`` folder or a ``--profiles`` folder::

    {
      "signer_key_id": "3F2A...40 hex digits",
      "device_cert_def": {...},            # serialized CertDef (see cert_def_to_json), or
      "device_cert_def_file": "cert_def_2_device.c", "device_cert_def_name": "g_cert_def_2_device",
      "validity_years": 10,                # optional: overrides the definition's expire_years
      "elements": {"SubjectCN": "sn{sn}"}, # optional: custom element values, {sn} = device SN
      "root_cert_file": "root.crt"         # optional: root CA certificate sent to stations
    }

Relative file names are relative to the profile file. :class:`ProfileStore` re-reads a
profile file when it changes, so profiles can be added while the server runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atcaprov.atcacert.certdef import (
    CertDef,
    CertElement,
    CertLoc,
    CertType,
    DeviceLoc,
    DevZone,
    StdCertElements,
)
from atcaprov.atcacert.dates import COMP_EXPIRE_YEARS_MAX, DateFormat
from atcaprov.atcacert.errors import CertError
from atcaprov.atcacert.loader import load_cert_defs
from atcaprov.atcacert.sn import SnSource
from atcaprov.errors import AtcaprovError
from atcaprov.pemder import certificate_der

_KEY_ID_NAME = re.compile(r"^[0-9A-Fa-f]{40}$")
MAX_EXPIRE_YEARS = COMP_EXPIRE_YEARS_MAX


class ProfileError(AtcaprovError):
    """A signer profile that cannot be read or used (file, field and reason in the message)."""


@dataclass(frozen=True)
class SignerProfile:
    """The server-side facts of one signer's device certificates."""

    signer_key_id: bytes
    device_cert_def: CertDef
    elements: Mapping[str, str] = field(default_factory=dict)
    root_cert: bytes | None = None
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        if len(self.signer_key_id) != 20:
            raise ProfileError(
                f"{self.source}: signer_key_id is {len(self.signer_key_id)} bytes, expected 20"
            )
        custom = {el.id for el in self.device_cert_def.cert_elements if el.cert_loc.count}
        unknown = set(self.elements) - custom
        if unknown:
            raise ProfileError(
                f"{self.source}: elements {sorted(unknown)} are not custom elements of the "
                f"device cert def (it has {sorted(custom) or 'none'})"
            )
        missing = custom - set(self.elements)
        if missing:
            raise ProfileError(
                f"{self.source}: the device cert def needs values for its custom elements "
                f'{sorted(missing)}: add them under "elements"'
            )

    @property
    def validity_years(self) -> int:
        """Years from the issue date to the expire date (0: no expiry)."""
        return self.device_cert_def.expire_years

    def element_data(self, device_sn: bytes) -> dict[str, bytes]:
        """The custom element values for one device (``{sn}``: its serial, uppercase hex)."""
        out: dict[str, bytes] = {}
        sizes = {el.id: el.cert_loc.count for el in self.device_cert_def.cert_elements}
        for name, pattern in self.elements.items():
            try:
                text = pattern.format(sn=device_sn.hex().upper(), sn_lower=device_sn.hex())
            except (KeyError, IndexError, ValueError) as exc:
                raise ProfileError(
                    f"{self.source}: element {name!r} pattern {pattern!r} is not valid "
                    f"(placeholders: {{sn}}, {{sn_lower}}): {exc}"
                ) from exc
            value = text.encode("utf-8")
            if len(value) != sizes[name]:
                raise ProfileError(
                    f"{self.source}: element {name!r} renders to {len(value)} bytes "
                    f"({text!r}), the template holds {sizes[name]}"
                )
            out[name] = value
        return out


# --------------------------------------------------------------------------------------------
# CertDef <-> JSON
# --------------------------------------------------------------------------------------------
def _dev_loc_json(loc: DeviceLoc) -> dict[str, Any]:
    return {
        "zone": loc.zone.name,
        "slot": loc.slot,
        "is_genkey": loc.is_genkey,
        "offset": loc.offset,
        "count": loc.count,
    }


def _cert_loc_json(loc: CertLoc) -> list[int]:
    return [loc.offset, loc.count]


def cert_def_to_json(d: CertDef) -> dict[str, Any]:
    """A JSON-ready dict of a certificate definition (template as hex)."""
    return {
        "type": d.cert_type.name,
        "template_id": d.template_id,
        "chain_id": d.chain_id,
        "private_key_slot": d.private_key_slot,
        "sn_source": d.sn_source.name,
        "cert_sn_dev_loc": _dev_loc_json(d.cert_sn_dev_loc),
        "issue_date_format": d.issue_date_format.name,
        "expire_date_format": d.expire_date_format.name,
        "tbs_cert_loc": _cert_loc_json(d.tbs_cert_loc),
        "expire_years": d.expire_years,
        "public_key_dev_loc": _dev_loc_json(d.public_key_dev_loc),
        "comp_cert_dev_loc": _dev_loc_json(d.comp_cert_dev_loc),
        "std_cert_elements": [_cert_loc_json(loc) for loc in d.std_cert_elements],
        "cert_elements": [
            {
                "id": el.id,
                "device_loc": _dev_loc_json(el.device_loc),
                "cert_loc": _cert_loc_json(el.cert_loc),
            }
            for el in d.cert_elements
        ],
        "cert_template": d.cert_template.hex(),
        "ca_cert_def": d.ca_cert_def,
    }


def _get(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise ProfileError(f"{where}: field {key!r} missing")
    return obj[key]


def _dev_loc(obj: Any, where: str) -> DeviceLoc:
    if not isinstance(obj, Mapping):
        raise ProfileError(f"{where}: expected an object, got {type(obj).__name__}")
    try:
        return DeviceLoc(
            zone=DevZone[str(_get(obj, "zone", where))],
            slot=int(_get(obj, "slot", where)),
            is_genkey=bool(_get(obj, "is_genkey", where)),
            offset=int(_get(obj, "offset", where)),
            count=int(_get(obj, "count", where)),
        )
    except KeyError as exc:
        raise ProfileError(f"{where}: unknown zone {exc}") from None


def _cert_loc(obj: Any, where: str) -> CertLoc:
    if not (isinstance(obj, list) and len(obj) == 2 and all(isinstance(v, int) for v in obj)):
        raise ProfileError(f"{where}: expected [offset, count], got {obj!r}")
    return CertLoc(obj[0], obj[1])


def _enum(enum: Any, value: Any, where: str) -> Any:
    try:
        return enum[str(value)]
    except KeyError:
        known = ", ".join(m.name for m in enum)
        raise ProfileError(f"{where}: {value!r} is not one of {known}") from None


def cert_def_from_json(obj: Mapping[str, Any], where: str = "cert def") -> CertDef:
    """The CertDef of a :func:`cert_def_to_json` dict (ProfileError on any bad field)."""
    try:
        std = _get(obj, "std_cert_elements", where)
        if not isinstance(std, list) or len(std) != 8:
            raise ProfileError(f"{where}: std_cert_elements must list 8 [offset, count] pairs")
        elements = []
        for i, el in enumerate(obj.get("cert_elements", [])):
            w = f"{where}.cert_elements[{i}]"
            elements.append(
                CertElement(
                    id=str(_get(el, "id", w)),
                    device_loc=_dev_loc(_get(el, "device_loc", w), w + ".device_loc"),
                    cert_loc=_cert_loc(_get(el, "cert_loc", w), w + ".cert_loc"),
                )
            )
        return CertDef(
            cert_type=_enum(CertType, _get(obj, "type", where), where + ".type"),
            template_id=int(_get(obj, "template_id", where)),
            chain_id=int(_get(obj, "chain_id", where)),
            private_key_slot=int(_get(obj, "private_key_slot", where)),
            sn_source=_enum(SnSource, _get(obj, "sn_source", where), where + ".sn_source"),
            cert_sn_dev_loc=_dev_loc(_get(obj, "cert_sn_dev_loc", where), where),
            issue_date_format=_enum(
                DateFormat, _get(obj, "issue_date_format", where), where + ".issue_date_format"
            ),
            expire_date_format=_enum(
                DateFormat, _get(obj, "expire_date_format", where), where + ".expire_date_format"
            ),
            tbs_cert_loc=_cert_loc(_get(obj, "tbs_cert_loc", where), where + ".tbs_cert_loc"),
            expire_years=int(_get(obj, "expire_years", where)),
            public_key_dev_loc=_dev_loc(_get(obj, "public_key_dev_loc", where), where),
            comp_cert_dev_loc=_dev_loc(_get(obj, "comp_cert_dev_loc", where), where),
            std_cert_elements=StdCertElements.from_list(
                [_cert_loc(loc, f"{where}.std_cert_elements[{i}]") for i, loc in enumerate(std)]
            ),
            cert_template=bytes.fromhex(str(_get(obj, "cert_template", where))),
            cert_elements=tuple(elements),
            ca_cert_def=obj.get("ca_cert_def"),
        )
    except CertError as exc:
        raise ProfileError(f"{where}: not a valid certificate definition: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{where}: bad value: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def _load_c_cert_def(path: Path, name: str | None, where: str) -> CertDef:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{where}: cannot read {path}: {exc}") from exc
    try:
        loaded = load_cert_defs(text, filename=str(path))
    except CertError as exc:
        raise ProfileError(f"{where}: {path}: {exc}") from exc
    defs: dict[str, CertDef] = dict(loaded)
    if name is None:
        if len(defs) != 1:
            raise ProfileError(
                f"{where}: {path} defines {sorted(defs)}; name one as device_cert_def_name"
            )
        return next(iter(defs.values()))
    if name not in defs:
        raise ProfileError(f"{where}: {path} has no cert def {name!r} (it has {sorted(defs)})")
    return defs[name]


def _load_cert_file(path: Path, where: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{where}: cannot read {path}: {exc}") from exc
    try:
        return certificate_der(data)
    except ValueError as exc:
        raise ProfileError(f"{where}: {path} is not a certificate: {exc}") from exc


def profile_from_json(
    obj: Any, *, base: Path, source: str, key_id_hint: str | None
) -> SignerProfile:
    """Build a profile from a parsed JSON object (file names relative to ``base``)."""
    if not isinstance(obj, Mapping):
        raise ProfileError(f"{source}: expected a JSON object, got {type(obj).__name__}")
    key_text = obj.get("signer_key_id", key_id_hint)
    if not isinstance(key_text, str) or not _KEY_ID_NAME.match(key_text):
        raise ProfileError(
            f"{source}: signer_key_id must be 40 hex digits (or name the file <KEYID>.json), "
            f"got {key_text!r}"
        )
    if "device_cert_def" in obj:
        cert_def = cert_def_from_json(obj["device_cert_def"], f"{source}: device_cert_def")
    elif "device_cert_def_file" in obj:
        name = obj.get("device_cert_def_name")
        cert_def = _load_c_cert_def(
            base / str(obj["device_cert_def_file"]), None if name is None else str(name), source
        )
    else:
        raise ProfileError(f"{source}: needs device_cert_def or device_cert_def_file")
    years = obj.get("validity_years")
    if years is not None:
        if not isinstance(years, int) or not 0 <= years <= MAX_EXPIRE_YEARS:
            raise ProfileError(
                f"{source}: validity_years must be 0..{MAX_EXPIRE_YEARS} (0 = no expiry), "
                f"got {years!r}"
            )
        try:
            cert_def = dataclasses.replace(cert_def, expire_years=years)
        except CertError as exc:
            raise ProfileError(f"{source}: validity_years {years}: {exc}") from exc
    elements = obj.get("elements", {})
    if not isinstance(elements, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in elements.items()
    ):
        raise ProfileError(f"{source}: elements must map element ids to text patterns")
    root = obj.get("root_cert_file")
    root_der = _load_cert_file(base / str(root), source) if root is not None else None
    return SignerProfile(
        signer_key_id=bytes.fromhex(key_text),
        device_cert_def=cert_def,
        elements=dict(elements),
        root_cert=root_der,
        source=source,
    )


def load_profile(path: Path) -> SignerProfile:
    """Read one profile file."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot read signer profile {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ProfileError(f"signer profile {path} is not JSON: {exc}") from exc
    hint = path.stem if _KEY_ID_NAME.match(path.stem) else None
    return profile_from_json(obj, base=path.parent, source=str(path), key_id_hint=hint)


def write_profile(path: Path, profile: SignerProfile) -> None:
    """Write ``profile`` as JSON with its cert def inline (root certificate next to it)."""
    obj: dict[str, Any] = {
        "signer_key_id": profile.signer_key_id.hex().upper(),
        "device_cert_def": cert_def_to_json(profile.device_cert_def),
        "elements": dict(profile.elements),
    }
    if profile.root_cert is not None:
        root_path = path.with_suffix(".root.der")
        root_path.write_bytes(profile.root_cert)
        obj["root_cert_file"] = root_path.name
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


DEFAULT_RECHECK_INTERVAL = 1.0


class ProfileStore:
    """Finds the profile of a signer key id in a list of folders.

    Profile files are parsed once and kept while their stat (and their folder's) stays the
    same; a profile found is reused without looking at the disk for ``recheck_interval``
    seconds, so an edited, added or removed profile file takes effect within that time
    (0: the files are checked on every request).
    """

    def __init__(
        self,
        folders: Iterable[Path],
        profiles: Iterable[SignerProfile] = (),
        *,
        recheck_interval: float = DEFAULT_RECHECK_INTERVAL,
    ) -> None:
        self.folders = list(folders)
        self.recheck_interval = recheck_interval
        self._fixed = {p.signer_key_id: p for p in profiles}
        self._cache: dict[Path, tuple[_Stamp, SignerProfile | ProfileError]] = {}
        self._listings: dict[Path, tuple[_Stamp, list[Path]]] = {}
        self._found: dict[bytes, tuple[float, SignerProfile]] = {}  # key id -> (until, profile)

    def get(self, key_id: bytes) -> SignerProfile:
        """The profile for ``key_id``; ProfileError if none or if its file is broken."""
        if key_id in self._fixed:
            return self._fixed[key_id]
        now = time.monotonic()
        found = self._found.get(key_id)
        if found is not None and now < found[0]:
            return found[1]
        profile = self._find(key_id)
        if self.recheck_interval > 0:
            self._found[key_id] = (now + self.recheck_interval, profile)
        return profile

    def _find(self, key_id: bytes) -> SignerProfile:
        errors: list[str] = []
        for path in self._files():
            entry = self._load(path)
            if isinstance(entry, ProfileError):
                if path.stem.upper() == key_id.hex().upper():
                    raise entry
                errors.append(str(entry))
                continue
            if entry.signer_key_id == key_id:
                return entry
        where = ", ".join(str(f) for f in self.folders) or "no folder"
        hint = f"; unreadable profiles: {'; '.join(errors)}" if errors else ""
        raise ProfileError(
            f"no signer profile for key id {key_id.hex().upper()} "
            f"(add {key_id.hex().upper()}.json to {where}){hint}"
        )

    def _files(self) -> list[Path]:
        """The ``*.json`` files of the folders, sorted; a folder is listed again only when its
        stat changed (a file added, removed or renamed) or was recent when last listed."""
        files: list[Path] = []
        for folder in self.folders:
            try:
                st = os.stat(folder)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            stamp = _stamp(st)
            cached = self._listings.get(folder)
            if cached is not None and cached[0] == stamp:
                files.extend(cached[1])
                continue
            listing = sorted(folder.glob("*.json"))
            if stamp is not None:
                self._listings[folder] = (stamp, listing)
            files.extend(listing)
        return files

    def _load(self, path: Path) -> SignerProfile | ProfileError:
        """The profile in ``path``, parsed again only when the file's stat changed (or was
        recent when last read: a change within the file system's time resolution)."""
        try:
            stamp = _stamp(os.stat(path))
        except OSError as exc:
            return ProfileError(f"cannot read signer profile {path}: {exc}")
        cached = self._cache.get(path)
        if cached is not None and stamp is not None and cached[0] == stamp:
            return cached[1]
        try:
            entry: SignerProfile | ProfileError = load_profile(path)
        except ProfileError as exc:
            entry = exc
        if stamp is not None:
            self._cache[path] = (stamp, entry)
        else:
            self._cache.pop(path, None)
        return entry


_Stamp = tuple[int, int, int, int, int]
_RACY_NS = 2_000_000_000


def _stamp(st: os.stat_result) -> _Stamp | None:
    """What identifies a file's (or folder's) version; None while it is too recent to trust:
    a change in the same time-stamp tick as the last one would keep the same stamp."""
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
