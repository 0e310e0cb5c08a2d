"""``atcaprov sim chip create/show`` on saved emulated parts."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from atcaprov import provision
from atcaprov.cli import main
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.hal import open_hal
from tests.support.cert_server import InMemoryServer
from tests.support.hooks import RecordingHooks
from tests.support.pki import make_pki


def test_create_then_show_blank_part(tmp_path: Path) -> None:
    path = tmp_path / "part.json"
    runner = CliRunner()
    result = runner.invoke(
        main, ["sim", "chip", "create", str(path), "--serial", "0123A1B2C3D4E5F6EE"]
    )
    assert result.exit_code == 0, result.output
    shown = runner.invoke(main, ["sim", "chip", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "serial number   0123A1B2C3D4E5F6EE" in shown.output
    assert "config zone     unlocked" in shown.output
    assert "slot  0  36 B  SlotConfig 208F  KeyConfig 0033  private key" in shown.output
    again = runner.invoke(main, ["sim", "chip", "create", str(path)])
    assert again.exit_code != 0 and "will not overwrite" in again.output


def test_show_provisioned_part_with_locked_slot(tmp_path: Path) -> None:
    path = tmp_path / "part.json"
    chip = Atecc508a()
    pki = make_pki()
    provision(
        Device(open_hal("emulator", chip=chip)),
        RecordingHooks(InMemoryServer(pki)),
        pki.cert_info,
        lock_slots=[10],
    )
    chip.save(path)
    shown = CliRunner().invoke(main, ["sim", "chip", "show", str(path)])
    assert "data zone       locked" in shown.output
    assert "slot 10  72 B  SlotConfig 0F0F  KeyConfig 003C  data slot-locked" in shown.output
    assert "slot 12  72 B  SlotConfig 0F0F  KeyConfig 003C  data\n" in shown.output


def test_bad_inputs(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_serial = runner.invoke(
        main, ["sim", "chip", "create", str(tmp_path / "x.json"), "--serial", "00"]
    )
    assert bad_serial.exit_code != 0 and "9 bytes" in bad_serial.output
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    shown = runner.invoke(main, ["sim", "chip", "show", str(broken)])
    assert shown.exit_code != 0 and "broken.json" in shown.output
    assert "Traceback" not in shown.output


def test_create_and_show_each_chip_type(tmp_path: Path) -> None:
    runner = CliRunner()
    for chip_type, name, revision in (
        ("atecc508a", "ATECC508A", "00005000"),
        ("atecc608a", "ATECC608A", "00006002"),
        ("ATECC608B", "ATECC608B", "00006003"),
    ):
        path = tmp_path / f"{chip_type}.json"
        created = runner.invoke(main, ["sim", "chip", "create", str(path), "--type", chip_type])
        assert created.exit_code == 0, created.output
        assert f"blank {name}, serial" in created.output
        shown = runner.invoke(main, ["sim", "chip", "show", str(path)])
        assert shown.exit_code == 0, shown.output
        assert f"chip type       {name}\n" in shown.output
        assert f"revision        {revision}\n" in shown.output
        assert "slot  0  36 B  SlotConfig 208F  KeyConfig 0033  private key" in shown.output
        assert type(Atecc508a.load(path)).__name__ == name.capitalize()
    default = tmp_path / "default.json"
    assert runner.invoke(main, ["sim", "chip", "create", str(default)]).exit_code == 0
    assert Atecc508a.load(default).model.name == "ATECC508A"


def test_create_refuses_an_unknown_type(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    result = CliRunner().invoke(main, ["sim", "chip", "create", str(path), "--type", "atecc608"])
    assert result.exit_code == 2
    assert "expected one of atecc508a, atecc608a, atecc608b" in result.output
    assert not path.exists()


def test_show_a_provisioned_608b(tmp_path: Path) -> None:
    from atcaprov.emulator import Atecc608b

    path = tmp_path / "part.json"
    chip = Atecc608b()
    pki = make_pki()
    provision(
        Device(open_hal("emulator", chip=chip)),
        RecordingHooks(InMemoryServer(pki)),
        pki.cert_info,
        lock_slots=[10],
    )
    chip.save(path)
    shown = CliRunner().invoke(main, ["sim", "chip", "show", str(path)])
    assert "chip type       ATECC608B" in shown.output
    assert "data zone       locked" in shown.output
    assert "slot 10  72 B  SlotConfig 0F0F  KeyConfig 003C  data slot-locked" in shown.output
