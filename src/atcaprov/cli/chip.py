"""``atcaprov sim chip``: make and inspect saved emulated parts (the files boards and modules use).

* ``create PATH [--type TYPE] [--serial HEX]``: a blank factory part of a chip type
  (``atecc508a``, ``atecc608a``, ``atecc608b``) saved to PATH;
* ``show PATH``: model, serial number, revision, locks and the decoded slot configuration.

``show`` reads only what the chip itself would reveal (its config zone): never key material.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..datasheet import (
    KEY_TYPE_P256,
    LOCKED,
    ChipModel,
    key_config,
    serial_number,
    slot_config,
    slot_locked,
    slot_size,
)
from ..errors import AtcaprovError


@click.group()
def chip() -> None:
    """Saved emulated parts (ATECC508A, ATECC608A, ATECC608B): create one, or show one."""


def _chip_type(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from ..emulator import CHIP_TYPES

    if value.lower() not in CHIP_TYPES:
        raise click.BadParameter(f"{value!r}: expected one of {', '.join(CHIP_TYPES)}")
    return value.upper()


@chip.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--type",
    "chip_type",
    default="atecc508a",
    show_default=True,
    callback=_chip_type,
    metavar="TYPE",
    help="Chip type: atecc508a, atecc608a or atecc608b.",
)
@click.option(
    "--serial",
    default=None,
    metavar="HEX18",
    help="9-byte serial number (01 23 .. .. .. .. .. .. EE); default random.",
)
def create(path: Path, chip_type: str, serial: str | None) -> None:
    """Save a blank factory part to PATH (refuses to overwrite)."""
    from ..emulator import chip_class

    if path.exists():
        raise click.ClickException(f"{path} exists: will not overwrite a part")
    try:
        sn = bytes.fromhex(serial) if serial else None
    except ValueError:
        raise click.BadParameter(f"not hex: {serial!r}", param_hint="--serial") from None
    try:
        part = chip_class(chip_type)(serial=sn)
        part.save(path)
    except AtcaprovError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Created {path}: blank {part.model.name}, serial {part.serial_number.hex().upper()}"
    )


def _slot_line(config: bytes, model: ChipModel, slot: int) -> str:
    sc, kc = slot_config(config, slot, model), key_config(config, slot, model)
    if kc.private:
        what = "private key"
    elif kc.key_type == KEY_TYPE_P256:
        what = "public key"
    elif sc.is_secret:
        what = "secret data"
    else:
        what = "data"
    locked = " slot-locked" if slot_locked(config, slot, model) else ""
    return (
        f"  slot {slot:2} {slot_size(slot, model):3} B  SlotConfig {sc.raw:04X}  KeyConfig"
        f" {kc.raw:04X}  {what}{locked}"
    )


@chip.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def show(path: Path) -> None:
    """Show a saved part: model, serial, locks and slot configuration."""
    from ..emulator import Atecc508a

    try:
        part = Atecc508a.load(path, watchdog=False)
    except AtcaprovError as exc:
        raise click.ClickException(str(exc)) from exc
    model, config = part.model, part.config_zone
    cmap = model.config_map
    click.echo(f"{path}")
    click.echo(f"  chip type       {model.name}")
    click.echo(f"  serial number   {serial_number(config, model).hex().upper()}")
    click.echo(
        f"  revision        {config[cmap.revision.offset : cmap.revision.stop].hex().upper()}"
    )
    locked = config[cmap.lock_config] == LOCKED
    click.echo(f"  config zone     {'locked' if locked else 'unlocked'}")
    locked = config[cmap.lock_value] == LOCKED
    click.echo(f"  data zone       {'locked' if locked else 'unlocked'}")
    click.echo(f"  I2C address     0x{config[cmap.i2c_address]:02X}")
    click.echo(f"  ChipMode        0x{config[cmap.chip_mode]:02X}")
    for slot in range(model.slot_count):
        click.echo(_slot_line(config, model, slot))
