"""Chip types on the virtual kit: the kit firmware's device name per model, boards of one type
or of alternating types (``VirtualKitBoard(chip_types=...)``, ``sim board --chip-type``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from atcaprov import kit_protocol as kp
from atcaprov.cli import main
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a, Atecc608a, Atecc608b
from atcaprov.emulator.kit_board import KitBoardError, VirtualKitBoard, load_chips
from atcaprov.emulator.kit_firmware import KitFirmware
from atcaprov.hal import open_hal
from tests.support.board_cli import start_board_cli


@pytest.mark.parametrize(
    ("chip", "line"),
    [
        (Atecc508a, b"ECC508A TWI 00(C0)\n"),
        (Atecc608a, b"ECC608 TWI 00(C0)\n"),  # CryptoAuthLib's kit_id_from_devtype: "ECC608"
        (Atecc608b, b"ECC608 TWI 00(C0)\n"),
    ],
)
def test_discovery_names_the_device(chip: type[Atecc508a], line: bytes) -> None:
    part = chip()
    fw = KitFirmware(lambda: part)
    assert fw.handle_line(b"board:device(00)") == line
    assert fw.handle_line(b"b:get_devices()") == line
    assert fw.handle_line(b"b:version()").endswith(b" " + line)
    info = kp.parse_device_reply(line)
    assert info is not None and info.device_type == line.split()[0].decode()
    # the current host's select uses the first letter: E for every ECC part
    assert fw.handle_line(kp.format_select(info.address, kp.KitDialect.CURRENT, info.device_type))
    assert fw.handle_line(b"E:physical:select(C0)") == b"00()\n"
    assert fw.handle_line(b"d:w()") == b"00(04113343)\n"
    revision = part.model.revision.hex().upper().encode()
    assert fw.handle_line(b"d:t(0730000000035D)").startswith(b"00(07" + revision)


def test_board_files_alternate_chip_types(tmp_path: Path) -> None:
    entries = load_chips(tmp_path, 5, chip_types=("ATECC608B", "atecc508a"))
    assert [type(e.chip) for e in entries] == [
        Atecc608b,
        Atecc508a,
        Atecc608b,
        Atecc508a,
        Atecc608b,
    ]
    assert "ATECC608B, serial" in entries[0].describe()
    # saved chips keep their model whatever the board is told now; new ones follow the list
    again = load_chips(tmp_path, 6, chip_types=("ATECC608A",))
    assert [e.chip.model.name for e in again] == [
        "ATECC608B",
        "ATECC508A",
        "ATECC608B",
        "ATECC508A",
        "ATECC608B",
        "ATECC608A",
    ]


def test_board_refuses_unknown_or_no_chip_types(tmp_path: Path) -> None:
    with pytest.raises(KitBoardError, match="no chip model named 'ATSHA204A'"):
        load_chips(tmp_path, 1, chip_types=("ATSHA204A",))
    with pytest.raises(KitBoardError, match="empty"):
        load_chips(tmp_path, 1, chip_types=())
    assert not list(tmp_path.glob("chip-*.json"))


def test_board_serves_608b_chips(tmp_path: Path) -> None:
    with VirtualKitBoard(tmp_path, chips=2, chip_types=("ATECC608B",)) as board:
        hal = open_hal("kit-cdc", url=board.url, timeout=2.0)
        with hal:
            dev = Device(hal)
            assert dev.info() == bytes.fromhex("00006003")
            current = board.current_chip
            assert current is not None
            assert dev.read_serial_number() == current.serial_number
    assert all(
        type(Atecc508a.load(path)) is Atecc608b for path in sorted(tmp_path.glob("chip-*.json"))
    )


def test_cli_board_with_a_mix_of_chip_types(tmp_path: Path) -> None:
    proc, url = start_board_cli(
        "--state",
        str(tmp_path),
        "--chips",
        "3",
        "--chip-type",
        "atecc608b,atecc508a",
        "--listen",
        "127.0.0.1:0",
    )
    revisions = []
    seen: list[str] = []
    try:
        assert proc.stdin is not None and proc.stdout is not None
        for index in range(1, 3):
            with open_hal("kit-cdc", url=url, timeout=2.0) as hal:
                revisions.append(Device(hal).info())
            proc.stdin.write("next\n")
            proc.stdin.flush()
            while not seen or not seen[-1].startswith(f"Plugged chip-00{index}.json"):
                line = proc.stdout.readline()  # bounded: the board answers or the pipe closes
                assert line, "board stopped before replugging"
                seen.append(line)
        proc.stdin.write("status\nquit\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert revisions == [bytes.fromhex("00006003"), bytes.fromhex("00005000")]
    assert seen[-1].startswith("Plugged chip-002.json (ATECC608B, serial")
    assert "Status: plugged: chip-002.json (ATECC608B, serial" in out
    models = [Atecc508a.load(p).model.name for p in sorted(tmp_path.glob("chip-*.json"))]
    assert models == ["ATECC608B", "ATECC508A", "ATECC608B"]


@pytest.mark.parametrize("value", ["atecc608c", "atecc608b,", "", "atecc508a,,atecc608a"])
def test_cli_board_refuses_bad_chip_types(tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(
        main, ["sim", "board", "--state", str(tmp_path), "--chip-type", value]
    )
    assert result.exit_code == 2
    assert "expected chip types from atecc508a, atecc608a, atecc608b" in result.output
    assert not list(tmp_path.glob("chip-*.json"))
