"""``atcaprov sim chip``: make and inspect saved emulated parts (the files boards and modules use).

* ``create PATH [--serial HEX]``: a blank factory part saved to PATH;
* ``show PATH``: serial number, revision, locks and the decoded slot configuration of a part.

``show`` reads only what the chip itself would reveal (its config zone): never key material.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..config import ConfigZone
from ..datasheet import ATECC508A, KEY_TYPE_P256, slot_size
from ..errors import AtcaprovError


@click.group()
def chip() -> None:
    """Saved emulated ATECC508A parts: create one, or show what one holds."""


@chip.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--serial", default=None, metavar="HEX18",
              help="9-byte serial number (01 23 .. .. .. .. .. .. EE); default random.")
def create(path: Path, serial: str | None) -> None:
    """Save a blank factory part to PATH (refuses to overwrite)."""
    from ..emulator import Atecc508a

    if path.exists():
        raise click.ClickException(f"{path} exists: will not overwrite a part")
    try:
        sn = bytes.fromhex(serial) if serial else None
    except ValueError:
        raise click.BadParameter(f"not hex: {serial!r}", param_hint="--serial") from None
    try:
        part = Atecc508a(serial=sn)
        part.save(path)
    except AtcaprovError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created {path}: blank part, serial {part.serial_number.hex().upper()}")


def _slot_line(zone: ConfigZone, slot: int) -> str:
    sc, kc = zone.slot_config(slot), zone.key_config(slot)
    if kc.private:
        what = "private key"
    elif kc.key_type == KEY_TYPE_P256:
        what = "public key"
    elif sc.is_secret:
        what = "secret data"
    else:
        what = "data"
    locked = " slot-locked" if zone.slot_locked(slot) else ""
    return (f"  slot {slot:2} {slot_size(slot):3} B  SlotConfig {sc.raw:04X}  KeyConfig"
            f" {kc.raw:04X}  {what}{locked}")


@chip.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def show(path: Path) -> None:
    """Show a saved part: serial, locks and slot configuration."""
    from ..emulator import Atecc508a

    try:
        part = Atecc508a.load(path, watchdog=False)
    except AtcaprovError as exc:
        raise click.ClickException(str(exc)) from exc
    zone = ConfigZone(part.config_zone)
    click.echo(f"{path}")
    click.echo(f"  serial number   {part.serial_number.hex().upper()}")
    click.echo(f"  revision        {zone.revision.hex().upper()}")
    click.echo(f"  config zone     {'locked' if zone.config_locked else 'unlocked'}")
    click.echo(f"  data zone       {'locked' if zone.data_locked else 'unlocked'}")
    click.echo(f"  I2C address     0x{zone.i2c_address:02X}")
    for slot in range(ATECC508A.slot_count):
        click.echo(_slot_line(zone, slot))
