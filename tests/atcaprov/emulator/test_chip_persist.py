"""save() / load(): round trip of the persistent part, and precise load errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from atcaprov.emulator import Atecc508a, StateFileError
from atcaprov.packet import build_command
from tests.support.chip import ChipDriver
from tests.support.keys import verify_raw


def test_round_trip_keeps_locks_keys_and_data(provisioned: ChipDriver, tmp_path: Path) -> None:
    d = provisioned
    pub = d.ok(0x40, 0x00, 0)
    d.ok(0x17, (10 << 2) | 2, 0)  # lock slot 10
    d.ok(0x24, 0x01, 0)  # counter 0 -> 1
    config = d.read_config()
    path = tmp_path / "part.json"
    d.chip.save(path)

    chip = Atecc508a.load(path)
    assert chip.serial_number == d.chip.serial_number
    assert chip.config_locked and chip.data_locked
    assert chip.config_zone == config
    chip.wake()
    rsp = chip.execute(build_command(0x02, 0x82, (1 << 8) | (10 << 3)))
    assert rsp[1:-2] == bytes(range(32, 64))
    assert chip.execute(build_command(0x12, 0x82, 10 << 3, bytes(32)))[1] == 0x0F  # slot lock
    assert chip.execute(build_command(0x24, 0x00, 0))[1:5] == (1).to_bytes(4, "little")
    # The key survived: sign with the loaded part, verify with the public key from before.
    digest = hashlib.sha256(b"after reload").digest()
    assert chip.execute(build_command(0x16, 0x03, 0, digest))[1] == 0x00
    sig = chip.execute(build_command(0x41, 0x80, 0))[1:-2]
    verify_raw(pub, digest, sig)


def test_loaded_chip_starts_asleep_without_volatile_state(
    configured: ChipDriver, tmp_path: Path
) -> None:
    configured.nonce_load(bytes(32))
    configured.chip.save(tmp_path / "p.json")
    chip = Atecc508a.load(tmp_path / "p.json")
    assert chip.power_state.value == "asleep"
    chip.wake()
    assert chip.execute(build_command(0x30, 0x02, 0))[1:5] == bytes(4)


def test_file_format(blank: ChipDriver, tmp_path: Path) -> None:
    blank.chip.save(tmp_path / "p.json")
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["format"] == "atcaprov-atecc508a" and doc["version"] == 1
    assert doc["serial_number"] == blank.chip.serial_number.hex()
    assert len(bytes.fromhex(doc["config"])) == 128
    assert [len(bytes.fromhex(s)) for s in doc["slots"]] == [36] * 8 + [416] + [72] * 7
    assert len(bytes.fromhex(doc["otp"])) == 64
    assert not list(tmp_path.glob("*.tmp"))


def _saved(blank: ChipDriver, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "part.json"
    blank.chip.save(path)
    return path, json.loads(path.read_text())


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda doc: doc.update(format="other"), "format", "expected"),
        (lambda doc: doc.update(version=2), "version", "supported"),
        (lambda doc: doc.pop("otp"), "otp", "missing"),
        (lambda doc: doc.update(config="00" * 127), "config", "127 bytes, 128 expected"),
        (lambda doc: doc.update(config=5), "config", "hex string"),
        (lambda doc: doc["slots"].__setitem__(3, "zz"), "slots[3]", "not valid hex"),
        (lambda doc: doc["slots"].__setitem__(8, "00" * 72), "slots[8]", "416 expected"),
        (lambda doc: doc["slots"].pop(), "slots", "16 hex strings"),
        (lambda doc: doc.update(config="00" * 128), "config", "serial number"),
        (lambda doc: doc.update(serial_number="0123"), "serial_number", "differs"),
    ],
)
def test_load_errors_name_file_and_field(
    blank: ChipDriver, tmp_path: Path, edit: Any, field: str, words: str
) -> None:
    path, doc = _saved(blank, tmp_path)
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(StateFileError) as info:
        Atecc508a.load(path)
    assert info.value.field == field
    assert str(path) in str(info.value) and words in str(info.value)


def test_load_missing_and_garbled_files(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match="cannot be read"):
        Atecc508a.load(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(StateFileError, match="not JSON"):
        Atecc508a.load(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(StateFileError, match="not a JSON object"):
        Atecc508a.load(bad)
