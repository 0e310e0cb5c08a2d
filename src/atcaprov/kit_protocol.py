"""Sans-IO codec of the ASCII "kit protocol" spoken by Atmel/Microchip USB CryptoAuth kits.

Owns both ends of the line protocol, bytes in and values out, no I/O:

* host side: formatting of the discovery (``board:device(NN)``), select, wake, idle, sleep and
  talk messages in both dialects (2016 ``s:`` and the newer ``d:`` / ``<X>:physical:select``),
  parsing of the kit replies ``SS(HEX)`` (kit status + data) and of the raw board replies: the
  discovery answer in every form seen in the field (``ECC508A TWI 00(C0)``, ``ECC508A TWI(C0)``,
  ``ECC108 TWI 00(C0)``, and for a 608 ``ECC608 TWI 00(C0)`` or ``ECC608A TWI 00(C0)``) or
  ``no device``, and the "board in use by another program" refusal;
* a stream decoder (:class:`KitLineDecoder`) that turns a byte stream into complete ``'\\n'``
  lines, drops the stray NUL bytes real hosts send after the newline, and bounds its buffer;
* kit side (used by the virtual board): :func:`parse_kit_command` turns a host line into a
  :class:`KitCommand`, :func:`format_kit_reply` / :func:`format_kit_text` build the answers.

Every malformed input raises a :class:`KitProtocolError` subclass that says what was received,
where, and what was expected. Non-zero kit status codes raise :class:`KitStatusError`, which
carries the kit status (``kit_status``). Text that came from the other end of the line is never
put into a message as is: :func:`kit_text` escapes its control characters and bounds its length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, IntEnum

from .errors import AtcaStatus, CommError

# Largest line accepted by default. A 135-byte Verify becomes ``d:t(`` + 270 hex chars + ``)\n``
# (276 bytes); real kits use 1024-byte reads, so 1024 leaves room without being unbounded.
MAX_LINE_DEFAULT = 1024
KIT_DEVICE_INDEX_MAX = 0xFF
# Longest piece of kit text quoted in an error message or a log line.
KIT_TEXT_SHOWN = 80
# What a kit that already serves another program answers (the virtual board over TCP); a serial
# port held by another program is reported with the same words.
BOARD_IN_USE = "board in use by another program"


def kit_text(data: bytes | str, limit: int = KIT_TEXT_SHOWN) -> str:
    """Text received from (or sent to) a kit, made safe for an error message or a log line.

    The Python ``bytes`` literal form: quoted, with every byte outside printable ASCII (control
    characters such as ESC, CR, NUL, and any non-ASCII byte) written as an escape (``\\x1b``,
    ``\\r``), so a kit cannot move the operator's cursor, clear the screen or start a new log
    line. Longer input is cut after ``limit`` bytes and its full length is given.
    """
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
    if len(raw) <= limit:
        return repr(raw)
    return f"{bytes(raw[:limit])!r}... ({len(raw)} bytes)"


class KitStatus(IntEnum):
    """Status byte a kit puts in front of its ``SS(HEX)`` replies."""

    SUCCESS = 0x00
    FAILURE = 0x01
    COMMAND_NOT_VALID = 0x03
    NOT_SUPPORTED = 0x04
    INVALID_PARAM = 0xE2
    INVALID_ID = 0xE3
    INVALID_SIZE = 0xE4
    COMM_FAIL = 0xF0


_KIT_TO_ATCA: dict[int, AtcaStatus] = {
    KitStatus.FAILURE: AtcaStatus.FUNC_FAIL,
    KitStatus.COMMAND_NOT_VALID: AtcaStatus.BAD_OPCODE,
    KitStatus.NOT_SUPPORTED: AtcaStatus.UNIMPLEMENTED,
    KitStatus.INVALID_PARAM: AtcaStatus.BAD_PARAM,
    KitStatus.INVALID_ID: AtcaStatus.INVALID_ID,
    KitStatus.INVALID_SIZE: AtcaStatus.INVALID_SIZE,
    KitStatus.COMM_FAIL: AtcaStatus.COMM_FAIL,
}


def kit_status_name(status: int) -> str:
    """Readable name of a kit status byte (``0x03`` -> ``COMMAND_NOT_VALID``)."""
    try:
        return KitStatus(status).name
    except ValueError:
        return f"unknown kit status 0x{status:02X}"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class KitProtocolError(CommError):
    """Anything wrong at the kit-protocol level. ``kit_status`` is set when a kit sent one."""

    kit_status: int | None = None


class KitStatusError(KitProtocolError):
    """The kit answered with a non-zero status byte (``kit_status``)."""

    def __init__(self, kit_status: int, context: str = "", line: bytes = b"") -> None:
        self.kit_status = kit_status
        self.line = line
        text = f"kit status 0x{kit_status:02X} ({kit_status_name(kit_status)})"
        if context:
            text = f"{context}: {text}"
        if line:
            text += f" in reply {kit_text(line)}"
        super().__init__(text, _KIT_TO_ATCA.get(kit_status, AtcaStatus.COMM_FAIL))


class KitFrameError(KitProtocolError):
    """Bytes that are not a well-formed kit-protocol line."""

    atca_status = AtcaStatus.RX_FAIL


class KitFrameTooLongError(KitFrameError):
    """A line longer than the decoder's bound (no newline within ``max_line`` bytes)."""

    atca_status = AtcaStatus.INVALID_SIZE


class KitBoardInUseError(KitProtocolError):
    """The kit is held by another program: its serial port is locked, or (virtual board) it
    already serves another client and answered ``board in use by another program``."""

    atca_status = AtcaStatus.COMM_FAIL


class KitCommandError(KitProtocolError):
    """Kit side: a host line the kit cannot act on; ``kit_status`` is the status to answer."""

    def __init__(self, kit_status: int, message: str) -> None:
        self.kit_status = kit_status
        super().__init__(message, _KIT_TO_ATCA.get(kit_status, AtcaStatus.COMM_FAIL))


# --------------------------------------------------------------------------------------------
# Stream decoder
# --------------------------------------------------------------------------------------------
class KitLineDecoder:
    """Accumulate bytes from a stream and hand out complete ``'\\n'``-terminated lines.

    * NUL bytes between lines (after a ``'\\n'``, before the next line starts) are dropped: the
      2016 host sends ``sizeof(string)`` bytes, i.e. a trailing NUL, and HID reports are
      zero-padded. A NUL *inside* a line is garbage and raises :class:`KitFrameError`.
    * A trailing ``'\\r'`` is stripped, so ``\\r\\n`` endings are accepted.
    * A line longer than ``max_line`` bytes raises :class:`KitFrameTooLongError`; the decoder then
      skips the rest of that line and resumes at the next ``'\\n'``.

    Lines are returned without their terminator.
    """

    def __init__(self, max_line: int = MAX_LINE_DEFAULT) -> None:
        if max_line < 4:
            raise ValueError(f"max_line must be at least 4, got {max_line}")
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False
        self._offset = 0  # stream offset of _buf[0], for error messages

    @property
    def pending(self) -> bytes:
        """Bytes received that do not yet form a complete line."""
        return bytes(self._buf)

    def reset(self) -> None:
        """Forget any partial line (after a timeout, before resynchronising)."""
        self._offset += len(self._buf)
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the complete lines it finished (possibly none).

        Raises on the first bad line; lines completed before it in the same ``data`` are lost
        with it, so callers that need them should feed reasonably small chunks.
        """
        # Chunk by chunk (find / slices), not byte by byte: a kit message is decoded on both
        # ends of every command, and the byte loop cost ~30 us a line.
        lines: list[bytes] = []
        view = bytes(data)
        pos, size = 0, len(view)
        while pos < size:
            if self._discarding:
                newline = view.find(b"\n", pos)
                if newline < 0:
                    self._offset += size - pos
                    break
                self._offset += newline + 1 - pos
                self._discarding = False
                pos = newline + 1
                continue
            if not self._buf:  # stray NULs between lines
                rest = view[pos:]
                skipped = len(rest) - len(rest.lstrip(b"\x00"))
                self._offset += skipped
                pos += skipped
                if pos >= size:
                    break
            newline = view.find(b"\n", pos)
            end = size if newline < 0 else newline
            room = self.max_line - len(self._buf)
            if end - pos > room:  # the byte past max_line: the line is too long
                self._buf += view[pos : pos + room + 1]
                start = self._offset
                head = bytes(self._buf[:40])
                self._offset += len(self._buf)
                self._buf.clear()
                self._discarding = True
                raise KitFrameTooLongError(
                    f"kit line starting at stream offset {start} exceeds {self.max_line} bytes"
                    f" without a newline (begins {kit_text(head)})"
                )
            self._buf += view[pos:end]
            if newline < 0:
                break
            line = bytes(self._buf)
            start = self._offset
            self._offset += len(self._buf) + 1
            self._buf.clear()
            if line.endswith(b"\r"):
                line = line[:-1]
            if b"\x00" in line:
                raise KitFrameError(
                    f"NUL byte inside a kit line at stream offset {start + line.index(0)}:"
                    f" {kit_text(line)} (NULs are only allowed between lines)"
                )
            lines.append(line)
            pos = newline + 1
        return lines


# --------------------------------------------------------------------------------------------
# Host side: messages
# --------------------------------------------------------------------------------------------
class KitDialect(str, Enum):
    """Which host-side message forms to use."""

    LEGACY = "2016"  # s:physical:select(XX), s:w(), s:t(HEX)   (CryptoAuthLib 2016/2017)
    CURRENT = "current"  # <X>:physical:select(AA), d:w(), d:t(HEX) (later CryptoAuthLib)

    @classmethod
    def from_name(cls, name: str | KitDialect) -> KitDialect:
        if isinstance(name, KitDialect):
            return name
        lowered = name.strip().lower()
        for member in cls:
            if lowered in (member.value, member.name.lower()):
                return member
        if lowered in ("2017", "legacy", "s"):
            return cls.LEGACY
        if lowered in ("new", "newer", "d", "head"):
            return cls.CURRENT
        raise ValueError(f"unknown kit dialect {name!r}; expected '2016' or 'current'")


def _device_prefix(dialect: KitDialect) -> bytes:
    return b"s" if dialect is KitDialect.LEGACY else b"d"


def format_discover(index: int = 0) -> bytes:
    """``board:device(NN)\\n``: ask the kit which device sits at index ``index``."""
    if not 0 <= index <= KIT_DEVICE_INDEX_MAX:
        raise ValueError(f"kit device index must be 0..255, got {index}")
    return b"board:device(%02X)\n" % index


def format_select(address: int, dialect: KitDialect, device_type: str = "ECC508A") -> bytes:
    """Select the device at bus address ``address`` (8-bit form, e.g. 0xC0).

    2016: ``s:physical:select(C0)``; current: ``<X>:physical:select(C0)`` with X the first letter
    of the device type reported by discovery (``E`` for ``ECC508A``).
    """
    if not 0 <= address <= 0xFF:
        raise ValueError(f"device address must be 0..255, got {address}")
    if dialect is KitDialect.LEGACY:
        target = b"s"
    else:
        if not device_type or not device_type[0].isalpha():
            raise ValueError(f"device type {device_type!r} does not start with a letter")
        target = device_type[0].upper().encode("ascii")
    return target + b":physical:select(%02X)\n" % address


def format_wake(dialect: KitDialect) -> bytes:
    return _device_prefix(dialect) + b":w()\n"


def format_idle(dialect: KitDialect) -> bytes:
    return _device_prefix(dialect) + b":i()\n"


def format_sleep(dialect: KitDialect) -> bytes:
    return _device_prefix(dialect) + b":s()\n"


def format_talk(packet: bytes, dialect: KitDialect) -> bytes:
    """``s:t(HEX)\\n`` / ``d:t(HEX)\\n``: send a command packet (count..CRC), uppercase hex."""
    if not packet:
        raise ValueError("talk needs a non-empty command packet")
    return _device_prefix(dialect) + b":t(" + packet.hex().upper().encode("ascii") + b")\n"


# --------------------------------------------------------------------------------------------
# Host side: replies
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KitReply:
    """A parsed ``SS(HEX)`` reply."""

    status: int
    data: bytes

    @property
    def ok(self) -> bool:
        return self.status == KitStatus.SUCCESS


_REPLY_RE = re.compile(rb"^([0-9A-Fa-f]{2})\(([0-9A-Fa-f]*)\)$")


def _strip_line(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


def parse_reply(line: bytes) -> KitReply:
    """Parse a kit reply ``SS(HEX)`` (with or without the trailing newline).

    Stricter than the C parser (which drops non-hex characters): anything but two hex status
    digits, ``(``, an even number of hex digits and ``)`` raises :class:`KitFrameError`.
    """
    body = _strip_line(line)
    m = _REPLY_RE.match(body)
    if m is None:
        _check_not_in_use(body)
        raise KitFrameError(
            f"kit reply {kit_text(line)} is not of the form SS(HEX): expected two hex status"
            " digits, '(', hex data, ')'"
        )
    hexdata = m.group(2)
    if len(hexdata) % 2:
        raise KitFrameError(
            f"kit reply {kit_text(line)} has an odd number of hex digits ({len(hexdata)}) in its"
            " data"
        )
    return KitReply(int(m.group(1), 16), bytes.fromhex(hexdata.decode("ascii")))


def check_reply(line: bytes, context: str = "") -> bytes:
    """Parse a reply and return its data; raise :class:`KitStatusError` if the status is not 00."""
    reply = parse_reply(line)
    if not reply.ok:
        raise KitStatusError(reply.status, context, line)
    return reply.data


def _check_not_in_use(body: bytes) -> None:
    if body.strip() == BOARD_IN_USE.encode("ascii"):
        raise KitBoardInUseError(f"{BOARD_IN_USE} (the kit refused this connection)")


@dataclass(frozen=True)
class DeviceInfo:
    """What a kit reports for ``board:device(NN)``: e.g. ``ECC508A TWI 00(C0)``."""

    device_type: str  # "ECC508A"
    interface: str  # "TWI", "SWI", ...
    address: int  # 0xC0

    def to_line(self) -> bytes:
        """The form Microchip's kit firmware sends (``"%s %s 00(%02X)\\n"``): ``00`` is the status,
        and the interface is a word of its own, as the current host library requires."""
        return f"{self.device_type} {self.interface} 00({self.address:02X})\n".encode("ascii")


_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_ADDRESS_RE = re.compile(r"([A-Za-z0-9_]*)\(([0-9A-Fa-f]{2})\)")
_STATUS_RE = re.compile(r"[0-9A-Fa-f]{2}")


def parse_device_reply(line: bytes) -> DeviceInfo | None:
    """Parse the answer to ``board:device(NN)``: a :class:`DeviceInfo`, or None for no device.

    Words are split on white space; the last one carries the bus address ``(AA)``. Accepted:

    * ``<devtype> <interface> SS(AA)``: Microchip's kit firmware (``ECC508A TWI 00(C0)``,
      ``ECC108 TWI 00(C0)``; a 608A or 608B is ``ECC608`` since CryptoAuthLib v3.2.2, earlier
      ``ECC608A``); SS is a status, a non-zero one raises :class:`KitStatusError`;
    * ``<devtype> <interface>(AA)``: the 2017 zero-touch kit firmware (``ECC508A TWI(C0)``);
    * either one after other words (a board name and version, as in ``b:version()``);
    * "no device": the text ``no device`` (any case) and a 4-character status reply with a
      non-zero status such as ``01()`` (what the 2016 host checks).

    The device type and interface are words of letters, digits and ``_`` starting with a
    letter. ``board in use by another program`` raises :class:`KitBoardInUseError`; anything
    else :class:`KitFrameError`.
    """
    body = _strip_line(line)
    try:
        text = body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise KitFrameError(f"discovery reply {kit_text(line)} is not ASCII text") from None
    _check_not_in_use(body)
    if text.lower().startswith("no device"):
        return None
    if len(text) == 4 and _REPLY_RE.match(body) is not None:
        status = int(text[:2], 16)
        if status != KitStatus.SUCCESS:
            return None
    words = text.split()
    last = _ADDRESS_RE.fullmatch(words[-1]) if words else None
    if last is not None:
        glued, address = last.group(1), int(last.group(2), 16)
        status = KitStatus.SUCCESS
        names: tuple[str, str] | None = None
        if _STATUS_RE.fullmatch(glued) and len(words) >= 3:  # ECC508A TWI 00(C0)
            status, names = int(glued, 16), (words[-3], words[-2])
        elif glued and len(words) >= 2:  # ECC508A TWI(C0)
            names = (words[-2], glued)
        if names is not None and all(_WORD_RE.fullmatch(n) for n in names):
            if status != KitStatus.SUCCESS:
                raise KitStatusError(status, "discovery", body)
            return DeviceInfo(device_type=names[0], interface=names[1], address=address)
    raise KitFrameError(
        f"discovery reply {kit_text(line)}: expected '<devtype> <interface> 00(<hex address>)'"
        " such as 'ECC508A TWI 00(C0)' (or 'ECC508A TWI(C0)'), or 'no device'"
    )


# --------------------------------------------------------------------------------------------
# Kit side: commands from the host
# --------------------------------------------------------------------------------------------
class KitTarget(str, Enum):
    BOARD = "board"
    DEVICE = "device"


# Board commands: (prefix, canonical name); the longest matching prefix wins, so "d" is device
# and "di" is discover, as on the kit firmware where only the first letters matter.
_BOARD_COMMANDS: tuple[tuple[str, str], ...] = (
    ("v", "version"),
    ("f", "firmware"),
    ("d", "device"),
    ("di", "discover"),
    ("g", "get_devices"),
    ("l", "last_error"),
    ("a", "application"),
)
_DEVICE_COMMANDS: tuple[tuple[str, str], ...] = (
    ("p", "physical"),
    ("i", "idle"),
    ("s", "sleep"),
    ("se", "send"),
    ("w", "wake"),
    ("r", "receive"),
    ("t", "talk"),
)
_PHYSICAL_COMMANDS: tuple[tuple[str, str], ...] = (("s", "select"),)
_DEVICE_TARGET_LETTERS = "aesd"  # AES132, ECC, SHA (legacy names) and generic device
_HEX_COMMANDS = frozenset({"device", "physical:select", "send", "talk"})


def _match_word(word: str, table: tuple[tuple[str, str], ...]) -> str | None:
    best: tuple[str, str] | None = None
    for prefix, name in table:
        if word.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, name)
    return None if best is None else best[1]


@dataclass(frozen=True)
class KitCommand:
    """A host line as the kit understands it.

    ``command`` is the canonical name (``"version"``, ``"device"``, ``"physical:select"``,
    ``"wake"``, ``"talk"``...). ``argument`` is the raw text between the parentheses (case kept,
    e.g. JSON for ``application``); ``data`` the hex-decoded argument for commands that carry hex.
    """

    target: KitTarget
    target_letter: str
    command: str
    argument: str = ""
    data: bytes = b""


def parse_kit_command(line: bytes) -> KitCommand:
    """Parse one host line (``'\\n'`` optional) into a :class:`KitCommand`.

    Case-insensitive; only the first letters of the target and command words matter. Raises
    :class:`KitCommandError` whose ``kit_status`` is the status the kit should answer with
    (``COMMAND_NOT_VALID`` for unknown commands or shapes, ``INVALID_PARAM`` for bad hex).
    """
    body = _strip_line(line)
    shown = kit_text(line)
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise KitCommandError(
            KitStatus.COMMAND_NOT_VALID, f"kit command {shown} is not ASCII"
        ) from None
    open_at = text.find("(")
    if open_at < 0 or not text.endswith(")"):
        raise KitCommandError(
            KitStatus.COMMAND_NOT_VALID,
            f"kit command {shown}: expected '<target>:<command>(<data>)'",
        )
    head, argument = text[:open_at], text[open_at + 1 : -1]
    if "(" in argument or ")" in argument:
        raise KitCommandError(
            KitStatus.COMMAND_NOT_VALID, f"kit command {shown}: nested or extra parentheses"
        )
    words = [w.strip().lower() for w in head.split(":")]
    if len(words) < 2 or not all(words):
        raise KitCommandError(
            KitStatus.COMMAND_NOT_VALID,
            f"kit command {shown}: expected '<target>:<command>' before '(', got {kit_text(head)}",
        )
    target_word = words[0]
    if target_word[0] == "b":
        target = KitTarget.BOARD
        if len(words) != 2:
            raise KitCommandError(
                KitStatus.COMMAND_NOT_VALID, f"kit command {shown}: board commands have one word"
            )
        command = _match_word(words[1], _BOARD_COMMANDS)
    elif target_word[0] in _DEVICE_TARGET_LETTERS:
        target = KitTarget.DEVICE
        command = _match_word(words[1], _DEVICE_COMMANDS)
        if command == "physical":
            sub = _match_word(words[2], _PHYSICAL_COMMANDS) if len(words) == 3 else None
            command = None if sub is None else f"physical:{sub}"
        elif len(words) != 2:
            command = None
    else:
        raise KitCommandError(
            KitStatus.COMMAND_NOT_VALID,
            f"kit command {shown}: unknown target {kit_text(words[0])}"
            " (expected b(oard) or a/e/s/d)",
        )
    if command is None:
        raise KitCommandError(
            KitStatus.COMMAND_NOT_VALID,
            f"kit command {shown}: unknown {target.value} command {kit_text(':'.join(words[1:]))}",
        )
    data = b""
    if command in _HEX_COMMANDS and argument:
        arg = argument.strip()
        if len(arg) % 2 or re.fullmatch(r"[0-9A-Fa-f]*", arg) is None:
            raise KitCommandError(
                KitStatus.INVALID_PARAM,
                f"kit command {shown}: argument {kit_text(argument)} is not an even number"
                " of hex digits",
            )
        data = bytes.fromhex(arg)
    return KitCommand(
        target=target,
        target_letter=target_word[0],
        command=command,
        argument=argument,
        data=data,
    )


def format_kit_reply(status: int, data: bytes = b"") -> bytes:
    """Kit side: ``SS(HEX)\\n`` with uppercase hex."""
    if not 0 <= status <= 0xFF:
        raise ValueError(f"kit status must be 0..255, got {status}")
    return b"%02X(" % status + data.hex().upper().encode("ascii") + b")\n"


def format_kit_text(text: str) -> bytes:
    """Kit side: a raw text reply (version, firmware, device, in use) terminated by ``'\\n'``."""
    if "\n" in text:
        raise ValueError(f"kit text reply must be one line, got {text!r}")
    return text.encode("ascii") + b"\n"


def format_board_in_use() -> bytes:
    """Kit side: the answer of a board that already serves another program."""
    return format_kit_text(BOARD_IN_USE)
