"""Kit protocol codec: host messages in both dialects, replies, the stream decoder, kit side."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from atcaprov import kit_protocol as kp
from atcaprov.errors import AtcaStatus, CommError
from atcaprov.packet import build_command

INFO = bytes.fromhex("0730000000035D")  # Info(revision), facts section 1.5


# ---- host side: messages --------------------------------------------------------------------
def test_discover_format() -> None:
    assert kp.format_discover() == b"board:device(00)\n"
    assert kp.format_discover(0x1A) == b"board:device(1A)\n"
    with pytest.raises(ValueError, match=r"0\.\.255"):
        kp.format_discover(256)


def test_legacy_dialect_messages() -> None:
    d = kp.KitDialect.LEGACY
    assert kp.format_select(0xC0, d) == b"s:physical:select(C0)\n"
    assert kp.format_wake(d) == b"s:w()\n"
    assert kp.format_idle(d) == b"s:i()\n"
    assert kp.format_sleep(d) == b"s:s()\n"
    assert kp.format_talk(INFO, d) == b"s:t(0730000000035D)\n"


def test_current_dialect_messages() -> None:
    d = kp.KitDialect.CURRENT
    assert kp.format_select(0xC0, d, "ECC508A") == b"E:physical:select(C0)\n"
    assert kp.format_select(0xB0, d, "sha204a") == b"S:physical:select(B0)\n"
    assert kp.format_wake(d) == b"d:w()\n"
    assert kp.format_idle(d) == b"d:i()\n"
    assert kp.format_sleep(d) == b"d:s()\n"
    # uppercase hex, count through CRC, no word address
    packet = build_command(0x02, 0x80, 0x0000)
    assert kp.format_talk(packet, d) == b"d:t(" + packet.hex().upper().encode() + b")\n"


def test_dialect_names() -> None:
    assert kp.KitDialect.from_name("2016") is kp.KitDialect.LEGACY
    assert kp.KitDialect.from_name("CURRENT") is kp.KitDialect.CURRENT
    with pytest.raises(ValueError, match="unknown kit dialect 'x'"):
        kp.KitDialect.from_name("x")


def test_select_needs_letter_devtype() -> None:
    with pytest.raises(ValueError, match="does not start with a letter"):
        kp.format_select(0xC0, kp.KitDialect.CURRENT, "5ECC")


# ---- host side: replies -----------------------------------------------------------------------
def test_parse_reply_ok_and_data() -> None:
    reply = kp.parse_reply(b"00(07000050000391)\n")
    assert reply.ok and reply.status == 0
    assert reply.data == bytes.fromhex("07000050000391")
    assert kp.parse_reply(b"00()").data == b""
    assert kp.parse_reply(b"00(04113343)\r\n").data == bytes.fromhex("04113343")
    assert kp.parse_reply(b"00(abcd)").data == b"\xab\xcd"


@pytest.mark.parametrize(
    ("status", "name", "atca"),
    [
        (0x01, "FAILURE", AtcaStatus.FUNC_FAIL),
        (0x03, "COMMAND_NOT_VALID", AtcaStatus.BAD_OPCODE),
        (0x04, "NOT_SUPPORTED", AtcaStatus.UNIMPLEMENTED),
        (0xE2, "INVALID_PARAM", AtcaStatus.BAD_PARAM),
        (0xE3, "INVALID_ID", AtcaStatus.INVALID_ID),
        (0xE4, "INVALID_SIZE", AtcaStatus.INVALID_SIZE),
        (0xF0, "COMM_FAIL", AtcaStatus.COMM_FAIL),
    ],
)
def test_check_reply_maps_kit_status(status: int, name: str, atca: AtcaStatus) -> None:
    line = b"%02X()\n" % status
    with pytest.raises(kp.KitStatusError) as info:
        kp.check_reply(line, "talk")
    err = info.value
    assert err.kit_status == status
    assert err.atca_status == atca
    assert name in str(err) and "talk" in str(err)
    assert isinstance(err, kp.KitProtocolError) and isinstance(err, CommError)


def test_unknown_kit_status_still_typed() -> None:
    with pytest.raises(kp.KitStatusError, match="unknown kit status 0x77") as info:
        kp.check_reply(b"77()")
    assert info.value.kit_status == 0x77


@pytest.mark.parametrize(
    "garbage",
    [b"", b"hello", b"0(00)", b"000(00)", b"00(0)", b"00(zz)", b"00(00", b"00 (00)", b"(00)"],
)
def test_parse_reply_garbage(garbage: bytes) -> None:
    with pytest.raises(kp.KitFrameError) as info:
        kp.parse_reply(garbage)
    assert repr(garbage) in str(info.value)


def test_odd_hex_named() -> None:
    with pytest.raises(kp.KitFrameError, match="odd number of hex digits"):
        kp.parse_reply(b"00(123)")


@pytest.mark.parametrize(
    ("reply", "device_type"),
    [
        (b"ECC508A TWI 00(C0)\n", "ECC508A"),  # Microchip's kit firmware: "%s %s 00(%02X)"
        (b"ECC508A TWI(C0)\n", "ECC508A"),  # 2017 zero-touch kit firmware
        (b"ECC108 TWI 00(C0)\n", "ECC108"),  # an older device name, firmware form
        (b"ECC608 TWI 00(C0)\n", "ECC608"),  # CryptoAuthLib's kit firmware for any 608, v3.2.2+
        (b"ECC608A TWI 00(C0)\n", "ECC608A"),  # the same firmware in 2019-2020 releases
        (b"ECC608B TWI 00(C0)\n", "ECC608B"),
        (b"ECC608A TWI(C0)\n", "ECC608A"),
    ],
)
def test_device_reply_forms_seen_in_the_field(reply: bytes, device_type: str) -> None:
    """Each form gives device type, interface and address, not 'TWI' / '00' (the old bug)."""
    info = kp.parse_device_reply(reply)
    assert info == kp.DeviceInfo(device_type, "TWI", 0xC0)
    assert kp.parse_device_reply(reply.rstrip(b"\n") + b"\r\n") == info
    assert kp.parse_device_reply(b"  " + reply) == info


def test_device_reply_is_sent_in_the_firmware_form() -> None:
    line = kp.DeviceInfo("ECC508A", "TWI", 0xC0).to_line()
    assert line == b"ECC508A TWI 00(C0)\n"
    # what Microchip's current host does with it: split on spaces, the second word is exactly
    # the interface, the address follows the first '('
    words = line.decode().split(" ")
    assert words[0][:4] == "ECC5" and words[1] == "TWI"
    assert line[line.index(b"(") + 1 : line.index(b"(") + 3] == b"C0"  # 2016 host: 2 chars
    assert kp.parse_device_reply(line) == kp.DeviceInfo("ECC508A", "TWI", 0xC0)


def test_device_reply_other_forms() -> None:
    with_board = kp.parse_device_reply(b"AT88CK101 fw 1.0 ECC508A SWI(b0)")
    assert with_board == kp.DeviceInfo("ECC508A", "SWI", 0xB0)
    version = b"AT88CK101 atcaprov virtual kit firmware 1.0.0 ECC508A TWI 00(C0)"
    assert kp.parse_device_reply(version) == kp.DeviceInfo("ECC508A", "TWI", 0xC0)
    assert kp.parse_device_reply(b"ECC608 SPI 00(03)") == kp.DeviceInfo("ECC608", "SPI", 0x03)
    assert kp.parse_device_reply(b"no device\n") is None
    assert kp.parse_device_reply(b"No Device") is None
    assert kp.parse_device_reply(b"01()\n") is None  # 4 chars, non-zero status (2016 check)


@pytest.mark.parametrize(
    "bad",
    [
        b"ECC508A",
        b"ECC508A TWI(C)",
        b"00()",
        b"\xff\xfe",
        b"ECC508A 00(C0)",  # no interface word
        b"TWI 00(C0)",  # no device type
        b"ECC508A TWI 0(C0)",
        b"ECC508A TWI 00 (C0)",
        b"ECC508A TWI 00(C0) extra",
        b"ECC508A T-I 00(C0)",
        b"",
    ],
)
def test_device_reply_garbage(bad: bytes) -> None:
    with pytest.raises(kp.KitFrameError, match="discovery reply"):
        kp.parse_device_reply(bad)


def test_device_reply_with_a_failure_status() -> None:
    with pytest.raises(kp.KitStatusError, match="discovery: kit status 0x01") as info:
        kp.parse_device_reply(b"ECC508A TWI 01(C0)")
    assert info.value.kit_status == 0x01


def test_board_in_use_is_its_own_error() -> None:
    line = kp.format_board_in_use()
    assert line == b"board in use by another program\n"
    for parse in (kp.parse_device_reply, kp.parse_reply, kp.check_reply):
        with pytest.raises(kp.KitBoardInUseError, match="board in use by another program") as e:
            parse(line)
        assert isinstance(e.value, CommError) and e.value.atca_status == AtcaStatus.COMM_FAIL


# ---- kit text in messages ---------------------------------------------------------------------
def test_kit_text_escapes_control_characters_and_is_bounded() -> None:
    shown = kp.kit_text(b"ECC\x1b[2J\x1b[H\r\x00\x07\x9b\xe2\x80\xaeOK")
    assert shown == "b'ECC\\x1b[2J\\x1b[H\\r\\x00\\x07\\x9b\\xe2\\x80\\xaeOK'"
    assert shown.isprintable() and shown.isascii()
    assert kp.kit_text("w\nx\x1b") == "b'w\\nx\\x1b'"  # str from the kit: same rule
    long = kp.kit_text(b"A" * 1000)
    assert long == "b'" + "A" * kp.KIT_TEXT_SHOWN + "'... (1000 bytes)"


HOSTILE = b"\x1b[2J\x1b[HProvisioning successful!\r\n[INFO] forged"


@pytest.mark.parametrize(
    "call",
    [
        lambda: kp.parse_reply(HOSTILE.replace(b"\n", b"")),
        lambda: kp.parse_device_reply(HOSTILE.replace(b"\n", b"")),
        lambda: kp.check_reply(b"01(" + b"\x1b" * 3 + b")"),
        lambda: kp.KitLineDecoder().feed(HOSTILE.replace(b"\r", b"\x00")),
        lambda: kp.KitLineDecoder(max_line=16).feed(HOSTILE),
        lambda: kp.check_reply(b"E3()", "select"),
    ],
)
def test_errors_never_carry_raw_kit_control_characters(call: Callable[[], object]) -> None:
    with pytest.raises(kp.KitProtocolError) as info:
        call()
    message = str(info.value)
    assert message.isprintable(), message
    assert "\x1b" not in message and "\n" not in message and "\r" not in message


def test_kit_side_errors_escape_host_text() -> None:
    for line in (b"e:\x1b[2J()", b"\x1b:w()", b"b:device(\x1b)", b"zz\x07", b"d:w\xff()"):
        with pytest.raises(kp.KitCommandError) as info:
            kp.parse_kit_command(line)
        assert str(info.value).isprintable(), info.value


# ---- stream decoder ---------------------------------------------------------------------------
def test_decoder_split_and_joined_chunks() -> None:
    dec = kp.KitLineDecoder()
    assert dec.feed(b"00(0411") == []
    assert dec.pending == b"00(0411"
    assert dec.feed(b"3343)\n00()\n00(") == [b"00(04113343)", b"00()"]
    assert dec.feed(b")\n") == [b"00()"]
    assert dec.pending == b""


def test_decoder_drops_nuls_between_lines() -> None:
    dec = kp.KitLineDecoder()
    # 2016 host: discover + NUL, select + 2 NULs; HID reports padded with zeros
    data = b"board:device(00)\n\x00s:physical:select(C0)\n\x00\x00" + b"s:w()\n" + bytes(58)
    assert dec.feed(data) == [b"board:device(00)", b"s:physical:select(C0)", b"s:w()"]
    assert dec.pending == b""


def test_decoder_nul_inside_line_is_garbage() -> None:
    dec = kp.KitLineDecoder()
    with pytest.raises(kp.KitFrameError, match="NUL byte inside a kit line at stream offset 9"):
        dec.feed(b"s:w()\ns:t\x00(00)\n")
    assert dec.feed(b"s:i()\n") == [b"s:i()"]


def test_decoder_crlf() -> None:
    assert kp.KitLineDecoder().feed(b"00()\r\n") == [b"00()"]


def test_decoder_oversized_then_resync() -> None:
    dec = kp.KitLineDecoder(max_line=16)
    with pytest.raises(kp.KitFrameTooLongError, match="exceeds 16 bytes") as info:
        dec.feed(b"d:t(" + b"A" * 40)
    assert info.value.atca_status == AtcaStatus.INVALID_SIZE
    # the rest of the oversized line is skipped, the next line is intact
    assert dec.feed(b"AAAA)\nd:w()\n") == [b"d:w()"]


def test_decoder_bound_is_validated() -> None:
    with pytest.raises(ValueError):
        kp.KitLineDecoder(max_line=2)


def test_decoder_long_verify_fits_default() -> None:
    verify = build_command(0x45, 0x02, 0x0004, bytes(128))
    line = kp.format_talk(verify, kp.KitDialect.CURRENT)
    assert len(verify) == 135 and len(line) == 276
    assert kp.KitLineDecoder().feed(line) == [line[:-1]]


# ---- kit side -----------------------------------------------------------------------------------
def test_parse_board_commands_first_letters() -> None:
    cases = {
        b"board:device(00)\n": ("device", b"\x00"),
        b"b:d(01)": ("device", b"\x01"),
        b"BOARD:DISCOVER()": ("discover", b""),
        b"b:version()": ("version", b""),
        b"b:v()": ("version", b""),
        b"b:f()": ("firmware", b""),
        b"b:get_devices()": ("get_devices", b""),
        b"b:last_error()": ("last_error", b""),
    }
    for line, (command, data) in cases.items():
        cmd = kp.parse_kit_command(line)
        assert cmd.target is kp.KitTarget.BOARD, line
        assert (cmd.command, cmd.data) == (command, data), line


def test_parse_application_keeps_raw_text() -> None:
    cmd = kp.parse_kit_command(b'b:application({"method":"init"})')
    assert cmd.command == "application"
    assert cmd.argument == '{"method":"init"}'


def test_parse_device_commands_both_dialects() -> None:
    for letter in "sSdDeEaA":
        cmd = kp.parse_kit_command(f"{letter}:physical:select(C0)\n".encode())
        assert cmd.target is kp.KitTarget.DEVICE
        assert cmd.command == "physical:select" and cmd.data == b"\xc0"
        assert cmd.target_letter == letter.lower()
    names = {
        b"s:w()": "wake",
        b"d:wake()": "wake",
        b"s:i()": "idle",
        b"s:s()": "sleep",
        b"d:sleep()": "sleep",
        b"d:se(0730000000035D)": "send",
        b"d:send(0730000000035D)": "send",
        b"d:r()": "receive",
        b"d:t(0730000000035d)": "talk",
    }
    for line, name in names.items():
        assert kp.parse_kit_command(line).command == name, line
    assert kp.parse_kit_command(b"s:t(0730000000035D)").data == INFO


@pytest.mark.parametrize(
    ("line", "status", "fragment"),
    [
        (b"x:w()", kp.KitStatus.COMMAND_NOT_VALID, "unknown target"),
        (b"b:zap()", kp.KitStatus.COMMAND_NOT_VALID, "unknown board command"),
        (b"d:q()", kp.KitStatus.COMMAND_NOT_VALID, "unknown device command"),
        (b"d:physical:frob(C0)", kp.KitStatus.COMMAND_NOT_VALID, "unknown device command"),
        (b"hello", kp.KitStatus.COMMAND_NOT_VALID, "expected '<target>:<command>(<data>)'"),
        (b"d:w(", kp.KitStatus.COMMAND_NOT_VALID, "expected"),
        (b"w()", kp.KitStatus.COMMAND_NOT_VALID, "before '('"),
        (b"d:t(07(3)", kp.KitStatus.COMMAND_NOT_VALID, "parentheses"),
        (b"d:t(0G)", kp.KitStatus.INVALID_PARAM, "not an even number of hex digits"),
        (b"d:t(073)", kp.KitStatus.INVALID_PARAM, "not an even number of hex digits"),
        (b"d:\xff()", kp.KitStatus.COMMAND_NOT_VALID, "not ASCII"),
    ],
)
def test_parse_kit_command_errors(line: bytes, status: int, fragment: str) -> None:
    with pytest.raises(kp.KitCommandError) as info:
        kp.parse_kit_command(line)
    assert info.value.kit_status == status
    assert fragment in str(info.value)


def test_format_kit_replies() -> None:
    assert kp.format_kit_reply(0, bytes.fromhex("04113343")) == b"00(04113343)\n"
    assert kp.format_kit_reply(0x03) == b"03()\n"
    assert kp.format_kit_reply(0, b"\xab") == b"00(AB)\n"
    assert kp.format_kit_text("no device") == b"no device\n"
    with pytest.raises(ValueError):
        kp.format_kit_text("a\nb")
    with pytest.raises(ValueError):
        kp.format_kit_reply(256)


def test_round_trip_host_to_kit_to_host() -> None:
    for dialect in kp.KitDialect:
        line = kp.format_talk(INFO, dialect)
        cmd = kp.parse_kit_command(line)
        assert cmd.command == "talk" and cmd.data == INFO
        reply = kp.format_kit_reply(0, bytes.fromhex("07000050000391"))
        assert kp.check_reply(reply) == bytes.fromhex("07000050000391")
