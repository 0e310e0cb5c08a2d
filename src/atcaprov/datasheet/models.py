"""Every supported chip model (:data:`MODELS`) and the lookups by name and by Info revision."""

from __future__ import annotations

from .atecc608 import ATECC608A, ATECC608B
from .chips import ATECC508A, ChipModel, UnknownChipModelError

MODELS: tuple[ChipModel, ...] = (ATECC508A, ATECC608A, ATECC608B)
"""Every supported chip model."""


def model_named(name: str) -> ChipModel:
    """The model called ``name`` (case does not matter)."""
    for model in MODELS:
        if model.name.upper() == name.strip().upper():
            return model
    known = ", ".join(m.name for m in MODELS)
    raise UnknownChipModelError(f"no chip model named {name!r} (known: {known})")


def model_for_revision(revision: bytes) -> ChipModel:
    """The model whose Info(Revision) answer is ``revision`` (4 bytes).

    ``00 00 50 00`` is an ATECC508A, ``00 00 60 02`` an ATECC608A, ``00 00 60 03`` and later
    fourth bytes an ATECC608B.
    """
    for model in MODELS:
        if model.identified_by(revision):
            return model
    raise UnknownChipModelError(
        f"Info revision {bytes(revision).hex(' ').upper()} is not a supported chip model"
    )
