"""Save and load the persistent part of an emulated part as JSON; the file records the model.

File format (``format`` = ``atcaprov-<model>``: ``atcaprov-atecc508a``, ``atcaprov-atecc608a``
or ``atcaprov-atecc608b``; ``version`` = 1): ``config`` (128 bytes), ``otp`` (64 bytes) and
``slots`` (16 entries of 36/416/72 bytes), all lowercase hex strings. A file's config bytes 4-7
(RevNum) must be a revision of the model it names. Private keys are stored in their slots as the
chip stores them; the file is the part's EEPROM, so protect it like a part. Volatile state
(TempKey, authorization, the 608's buffers) is never saved.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..datasheet import MODELS, SN_LAST, SN_PREFIX, ChipModel, serial_number
from .exceptions import StateFileError
from .state import Memory
from .zones import MODEL

FORMAT_VERSION = 1


def format_name(model: ChipModel) -> str:
    """The ``format`` of a file holding a part of ``model``: ``atcaprov-atecc608b``..."""
    return f"atcaprov-{model.name.lower()}"


FORMAT_NAME = format_name(MODEL)
"""The format of an ATECC508A file."""
FORMATS = {format_name(model): model for model in MODELS}


def memory_to_json(memory: Memory, model: ChipModel = MODEL) -> dict[str, Any]:
    return {
        "format": format_name(model),
        "version": FORMAT_VERSION,
        "serial_number": serial_number(memory.config, model).hex(),
        "config": memory.config.hex(),
        "otp": memory.otp.hex(),
        "slots": [slot.hex() for slot in memory.slots],
    }


def save_memory(memory: Memory, path: str | os.PathLike[str], model: ChipModel = MODEL) -> None:
    """Write ``memory`` of a ``model`` part to ``path`` atomically (temporary file + rename)."""
    target = Path(path)
    text = json.dumps(memory_to_json(memory, model), indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _hex_field(path: Path, doc: dict[str, Any], name: str, size: int, value: Any) -> bytearray:
    if not isinstance(value, str):
        raise StateFileError(path, name, f"expected a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise StateFileError(path, name, f"not valid hex ({exc})") from exc
    if len(raw) != size:
        raise StateFileError(path, name, f"{len(raw)} bytes, {size} expected")
    return bytearray(raw)


def load_memory(path: str | os.PathLike[str]) -> tuple[Memory, ChipModel]:
    """Read a file written by :func:`save_memory`: the memory and the model the file records.
    Errors name the file and the field."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise StateFileError(source, "(file)", f"cannot be read: {exc.strerror or exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateFileError(
            source, "(file)", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(doc, dict):
        raise StateFileError(source, "(file)", "top level is not a JSON object")
    model = FORMATS.get(doc["format"]) if isinstance(doc.get("format"), str) else None
    if model is None:
        known = ", ".join(repr(name) for name in FORMATS)
        raise StateFileError(source, "format", f"{doc.get('format')!r}, one of {known} expected")
    if doc.get("version") != FORMAT_VERSION:
        raise StateFileError(
            source, "version", f"{doc.get('version')!r}, only {FORMAT_VERSION} is supported"
        )
    for name in ("config", "otp", "slots"):
        if name not in doc:
            raise StateFileError(source, name, "missing")
    config = _hex_field(source, doc, "config", model.config_size, doc["config"])
    otp = _hex_field(source, doc, "otp", model.otp_size, doc["otp"])
    slots_doc = doc["slots"]
    if not isinstance(slots_doc, list) or len(slots_doc) != model.slot_count:
        raise StateFileError(source, "slots", f"expected a list of {model.slot_count} hex strings")
    slots = [
        _hex_field(source, doc, f"slots[{n}]", size, slots_doc[n])
        for n, size in enumerate(model.slot_sizes)
    ]
    sn = serial_number(config, model)
    if sn[0:2] != SN_PREFIX or sn[8] != SN_LAST:
        raise StateFileError(source, "config", f"serial number {sn.hex()} is not an {model.name}'s")
    rev = model.config_map.revision
    if not model.identified_by(bytes(config[rev.offset : rev.stop])):
        raise StateFileError(
            source,
            "config",
            f"revision {config[rev.offset : rev.stop].hex(' ')} (bytes {rev.offset}-"
            f"{rev.stop - 1}) is not an {model.name}'s, as the format says",
        )
    if "serial_number" in doc and doc["serial_number"] != sn.hex():
        raise StateFileError(
            source, "serial_number", f"{doc['serial_number']!r} differs from config {sn.hex()}"
        )
    return Memory(config=config, otp=otp, slots=slots), model
