"""The provisioning server's data folder: where it is by default and what lives inside it.

The layout follows app note 8971A section 2.3 (a ``logs`` and a ``certs`` folder), plus a
``signers`` folder holding the server-side signer profiles (see :mod:`provserver.profile`)::

    <data dir>/
        logs/      activity-YYYYmmdd-HHMMSS.log (one per start) and the signing log
        certs/     device and signer certificates of every device signed
        signers/   <name>.json signer profiles (cert defs, validity, subject)

Default location, per platform:

* Linux and other POSIX: ``$XDG_DATA_HOME/atcaprov/provserver`` (``~/.local/share/...``).
* macOS: ``~/Library/Application Support/atcaprov/provserver``.
* Windows: ``%PROGRAMDATA%\\atcaprov\\ProvisioningServer`` (the app note's place).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from atcaprov.errors import AtcaprovError

APP_FOLDER = "atcaprov"


class DataDirError(AtcaprovError):
    """The data folder (or one of its sub-folders) cannot be created or written."""


def default_data_dir(
    *, platform: str | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """The per-user (per-machine on Windows) data folder for ``platform`` (default: this one)."""
    plat = sys.platform if platform is None else platform
    env = os.environ if environ is None else environ
    if plat.startswith("win"):
        base = env.get("PROGRAMDATA") or r"C:\ProgramData"
        return Path(base) / APP_FOLDER / "ProvisioningServer"
    home = Path(env.get("HOME") or Path.home())
    if plat == "darwin":
        return home / "Library" / "Application Support" / APP_FOLDER / "provserver"
    xdg = env.get("XDG_DATA_HOME")
    base_dir = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base_dir / APP_FOLDER / "provserver"


@dataclass(frozen=True)
class DataDir:
    """The resolved folders of one data directory."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def signers(self) -> Path:
        return self.root / "signers"

    def activity_log_path(self, started: datetime) -> Path:
        """``logs/activity-YYYYmmdd-HHMMSS.log`` for a server started at ``started``.

        If that name is taken (two starts in one second) a ``-N`` suffix is added.
        """
        stem = f"activity-{started:%Y%m%d-%H%M%S}"
        path = self.logs / f"{stem}.log"
        n = 1
        while path.exists() and n < 1000:
            path = self.logs / f"{stem}-{n}.log"
            n += 1
        return path

    def folders(self) -> tuple[Path, ...]:
        """The root and its sub-folders, parents first."""
        return (self.root, self.logs, self.certs, self.signers)

    def ensure(self) -> DataDir:
        """Create the root and its sub-folders if missing; return self."""
        for folder in self.folders():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataDirError(f"cannot create data folder {folder}: {exc}") from exc
            if not os.access(folder, os.W_OK):
                raise DataDirError(f"data folder {folder} is not writable")
        return self
