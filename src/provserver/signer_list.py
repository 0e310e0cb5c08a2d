"""``provserver signer list`` without click: every signer module as the server would see it.

:func:`list_modules` opens each module of the back-ends asked for, exactly as the server does
(:func:`~provserver.signers.base.open_backend`, ``scan``, ``open``), and looks up its signer
profile in ``<data dir>/signers``; :class:`BackendListing` and :class:`ModuleListing` are what
it found, with the plain lines the command prints. The command line is
:mod:`provserver.signer_cli`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atcaprov.errors import CommError

from .paths import DataDir
from .profile import ProfileError, ProfileStore
from .signers.base import SignerBackend, SignerError, SignerIdentity, SignerModule, open_backend


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
    warning: str | None = None  # the back-end's own warning (pem: development only)

    def lines(self) -> list[str]:
        if self.error is not None:
            return [f"{self.backend}: not available: {self.error}"]
        out = [f"WARNING: {self.warning}"] if self.warning else []
        if not self.modules:
            return [*out, f"{self.backend}: no modules found"]
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
                    name,
                    tuple(_list_one(backend, name, loc, store) for loc in locations),
                    warning=backend.warning,
                )
            )
        finally:
            backend.close()
    return result


def _list_one(
    backend: SignerBackend, name: str, location: str, store: ProfileStore
) -> ModuleListing:
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
