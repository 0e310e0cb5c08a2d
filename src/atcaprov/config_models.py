"""Configs per chip model: the default config of each model, which model a config is for, and
the refusal of a config on a part of another model.

* :data:`DEFAULT_CONFIG_608` is the default for the ATECC608A/B: the 508A default's slot layout
  (keys and certificates in the same slots, same SlotConfig/KeyConfig) with the 608's own
  bytes set for a TLS device (choices in ``docs/config.md``). :func:`default_config` picks the
  default of a model.
* :func:`config_model` says which model a config was made for, from its bytes 4-7 (RevNum,
  never written to a chip): ``00 00 00 00`` (the app note's files, the 508A default) or a
  508A revision: the ATECC508A; a 608A or 608B revision: that model.
* :func:`check_config_model` refuses a config on a part whose config map gives some written
  bytes another meaning (:func:`atcaprov.datasheet.fields_differing`), naming those bytes.

Pure functions over bytes.
"""

from __future__ import annotations

from .config import DEFAULT_CONFIG, ConfigError, format_config_text, parse_config_text
from .datasheet import (
    ATECC508A,
    ATECC608B,
    ChipModel,
    UnknownChipModelError,
    fields_differing,
    model_for_revision,
)

_REVISION = ATECC508A.config_map.revision
_UNSET_REVISION = bytes(_REVISION.size)
_NEVER_WRITTEN = frozenset(ATECC508A.config_map.read_only.offsets) | frozenset(
    ATECC508A.config_map.not_by_write.offsets
)


# The 608's own bytes that its default sets to 00 (docs/config.md, "The ATECC608 default"):
# CountMatch off (18); ChipMode 00 (19: I2C_Address used, fixed input levels, short watchdog,
# clock divider M0); UseLock, VolatileKeyPermission, SecureBoot, KdfIvLoc, KdfIvStr and the
# reserved bytes (68-83) off; ChipOptions 00 00 (90-91: no power-on self test, no IO protection
# key, no KDF AES, ECDH and KDF results may leave the chip, as a TLS host needs).
_608_ZEROED = (18, 19, *range(68, 84), 90, 91)


def _make_608_default() -> bytes:
    config = bytearray(DEFAULT_CONFIG)
    config[_REVISION.offset : _REVISION.stop] = ATECC608B.revision  # says: a 608 config
    for offset in _608_ZEROED:
        config[offset] = 0x00
    return bytes(config)


DEFAULT_CONFIG_608 = _make_608_default()
"""The default config of the ATECC608A and ATECC608B (``docs/config.md``)."""
DEFAULT_CONFIG_608_TEXT = format_config_text(DEFAULT_CONFIG_608)

assert parse_config_text(DEFAULT_CONFIG_608_TEXT) == DEFAULT_CONFIG_608


class ConfigModelError(ConfigError):
    """A config made for one chip model, given for a part of another whose config map gives
    some of the written bytes another meaning. ``config_model`` / ``part_model`` say which;
    ``offset`` is the first such byte."""

    def __init__(
        self, message: str, *, config_model: ChipModel, part_model: ChipModel, offset: int | None
    ) -> None:
        self.config_model = config_model
        self.part_model = part_model
        super().__init__(message, offset=offset)


def default_config(model: ChipModel) -> bytes:
    """The config the flow writes on a part of ``model`` when no config is given."""
    return DEFAULT_CONFIG if model.config_map == ATECC508A.config_map else DEFAULT_CONFIG_608


def config_model(config: bytes) -> ChipModel:
    """The model ``config`` was made for, from its bytes 4-7 (``00 00 00 00``: ATECC508A).

    Raises :class:`ConfigError` (offset 4) for bytes 4-7 that are no supported model's revision.
    """
    revision = bytes(config[_REVISION.offset : _REVISION.stop])
    if revision == _UNSET_REVISION:
        return ATECC508A
    try:
        return model_for_revision(revision)
    except UnknownChipModelError as exc:
        raise ConfigError(
            f"config bytes 4-7 ({revision.hex(' ').upper()}) name no supported chip model: use"
            " 00 00 00 00 or 00 00 50 00 for an ATECC508A config, 00 00 60 02 / 00 00 60 03"
            " for an ATECC608A / ATECC608B config",
            offset=_REVISION.offset,
        ) from exc


def check_config_model(config: bytes, model: ChipModel) -> None:
    """Raise :class:`ConfigModelError` if ``config`` (made for :func:`config_model`) cannot go on
    a part of ``model``: the two config maps give some written bytes another meaning."""
    made_for = config_model(config)
    differing = [
        d
        for d in fields_differing(made_for, model)
        if any(o not in _NEVER_WRITTEN for o in d.span.offsets)
    ]
    if not differing:
        return
    names = "; ".join(d.describe() for d in differing)
    raise ConfigModelError(
        f"the config is for the {made_for.name} (bytes 4-7) and this part is an {model.name}:"
        f" these bytes differ in meaning ({made_for.name} / {model.name}): {names}",
        config_model=made_for,
        part_model=model,
        offset=differing[0].span.offset,
    )


__all__ = [
    "DEFAULT_CONFIG_608",
    "DEFAULT_CONFIG_608_TEXT",
    "ConfigModelError",
    "check_config_model",
    "config_model",
    "default_config",
]
