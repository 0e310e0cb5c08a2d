"""Tests of the client/server message protocol: layouts, round trips, every error, fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atcaprov import protocol as p
from atcaprov.errors import AtcaprovError
from atcaprov.return_codes import ATCAPROV_E_BAD_MAGIC, ReturnCode, ReturnCodeError
from tests.support.certs import der, self_signed

CONFIG = bytes(range(128))
CERT = der(self_signed("test device", serial=1))
SMALL_DER = bytes.fromhex("3003020101")


def _request(station: str | None = "line-1") -> p.CertRequest:
    return p.CertRequest(
        signer_id=b"\xc4\x8b",
        signer_key_id=bytes(range(20)),
        device_template_id=2,
        signer_template_id=1,
        chain_id=0,
        config_zone=CONFIG,
        device_public_key=bytes(range(64, 128)),
        station_id=station,
    )


def _raw(msg_type: int, body: bytes, *, magic: bytes = b"APRV", version: int = 1) -> bytes:
    return struct.pack(">4sBBHI", magic, version, msg_type, 0, len(body)) + body


def _code(excinfo: pytest.ExceptionInfo[p.ProtocolError]) -> ReturnCode:
    return excinfo.value.code


# ------------------------------------------------------------------ layouts and round trips
def test_header_layout_byte_by_byte() -> None:
    wire = p.encode(_request(None))
    assert wire[:4] == b"APRV"
    assert wire[4] == 1
    assert wire[5] == 0x01
    assert wire[6:8] == b"\x00\x00"
    assert int.from_bytes(wire[8:12], "big") == len(wire) - p.HEADER_SIZE == 218
    assert p.HEADER_SIZE == 12


def test_cert_request_body_layout() -> None:
    body = p.encode(_request("ab"))[p.HEADER_SIZE :]
    assert body[0:2] == b"\xc4\x8b"
    assert body[2:22] == bytes(range(20))
    assert body[22:25] == bytes((2, 1, 0))
    assert body[25:153] == CONFIG
    assert body[153:217] == bytes(range(64, 128))
    assert body[217] == 2
    assert body[218:] == b"ab"


def test_cert_reply_and_error_layout() -> None:
    body = p.encode(p.CertReply(CERT, SMALL_DER))[p.HEADER_SIZE :]
    assert body == len(CERT).to_bytes(2, "big") + CERT + b"\x00\x05" + SMALL_DER + b"\x00\x00"
    wire = p.encode(p.ErrorReply(ReturnCode.SIGNER_LOCKED, "wait"))
    assert wire[5] == 0x03
    assert wire[p.HEADER_SIZE :] == b"\x00\x21\x00\x04wait"


@pytest.mark.parametrize(
    "msg",
    [
        _request(),
        _request(None),
        _request("ステーション-7"),
        p.CertReply(CERT, CERT),
        p.CertReply(CERT, SMALL_DER, root_cert=CERT),
        p.ErrorReply(ReturnCode.SIGNER_NOT_FOUND, "no signer C48B"),
        p.ErrorReply(ReturnCode.INTERNAL_ERROR, ""),
    ],
)
def test_round_trip(msg: p.Message) -> None:
    wire = p.encode(msg)
    header = p.parse_header(wire[: p.HEADER_SIZE])
    assert header.body_length == len(wire) - p.HEADER_SIZE
    assert header.msg_type is p.message_type_of(msg)
    assert p.decode(header, wire[p.HEADER_SIZE :]) == msg
    reader = p.MessageReader()
    reader.feed(wire)
    assert reader.next_message() == msg
    assert reader.next_message() is None
    assert reader.buffered == 0


def test_empty_station_id_is_absent() -> None:
    assert _request("").station_id is None
    assert _request("").device_serial_number == CONFIG[0:4] + CONFIG[8:13]


def test_byte_by_byte_feeding_and_bytes_needed() -> None:
    msgs: list[p.Message] = [
        _request(),
        p.CertReply(CERT, SMALL_DER),
        p.ErrorReply(ReturnCode.TIMEOUT, "x"),
    ]
    stream = b"".join(p.encode(m) for m in msgs)
    reader = p.MessageReader()
    got: list[p.Message] = []
    for i in range(len(stream)):
        needed = reader.bytes_needed()
        assert needed >= 1
        reader.feed(stream[i : i + 1])
        msg = reader.next_message()
        if msg is not None:
            assert needed == 1  # the reader knew exactly one byte was missing
            got.append(msg)
    assert got == msgs
    assert reader.bytes_needed() == p.HEADER_SIZE
    reader.feed_eof()  # clean boundary: no error


def test_bytes_needed_after_header() -> None:
    wire = p.encode(_request(None))
    reader = p.MessageReader()
    reader.feed(wire[:5])
    assert reader.bytes_needed() == 7
    reader.feed(wire[5:12])
    assert reader.bytes_needed() == 218
    reader.feed(wire[12:])
    assert reader.bytes_needed() == 0


def _drain(reader: p.MessageReader) -> int:
    count = 0
    while reader.next_message() is not None:
        count += 1
        assert count < 1000
    return count


# ------------------------------------------------------------------ header errors
def test_bad_magic() -> None:
    with pytest.raises(p.ProtocolError) as ei:
        p.parse_header(_raw(1, b"", magic=b"HTTP"))
    assert _code(ei) is ATCAPROV_E_BAD_MAGIC
    assert "48 54 54 50" in str(ei.value)


def test_unsupported_version() -> None:
    with pytest.raises(p.ProtocolError) as ei:
        p.parse_header(_raw(1, b"", version=3))
    assert _code(ei) is ReturnCode.UNSUPPORTED_VERSION
    assert "version 3" in str(ei.value)


def test_unknown_type() -> None:
    with pytest.raises(p.ProtocolError) as ei:
        p.parse_header(_raw(0x7E, b""))
    assert _code(ei) is ReturnCode.UNKNOWN_MESSAGE_TYPE
    assert "0x7E" in str(ei.value)


def test_nonzero_flags() -> None:
    raw = struct.pack(">4sBBHI", b"APRV", 1, 1, 0x8000, 0)
    with pytest.raises(p.ProtocolError) as ei:
        p.parse_header(raw)
    assert _code(ei) is ReturnCode.MALFORMED_BODY
    assert "0x8000" in str(ei.value)


def test_header_wrong_size() -> None:
    with pytest.raises(p.ProtocolError) as ei:
        p.parse_header(b"APRV\x01")
    assert _code(ei) is ReturnCode.MALFORMED_BODY


def test_body_too_large_refused_at_header() -> None:
    raw = struct.pack(">4sBBHI", b"APRV", 1, 1, 0, p.MAX_BODY_SIZE + 1)
    with pytest.raises(p.ProtocolError) as ei:
        p.parse_header(raw)
    assert _code(ei) is ReturnCode.BODY_TOO_LARGE
    reader = p.MessageReader()
    reader.feed(raw)  # only the header: refused before any body is buffered
    with pytest.raises(p.ProtocolError) as ei2:
        reader.next_message()
    assert _code(ei2) is ReturnCode.BODY_TOO_LARGE
    assert p.parse_header(raw[:8] + p.MAX_BODY_SIZE.to_bytes(4, "big")).body_length == (
        p.MAX_BODY_SIZE
    )


def test_reader_accept_filter() -> None:
    reader = p.MessageReader(accept={p.MessageType.CERT_REQUEST})
    reader.feed(p.encode(p.ErrorReply(ReturnCode.TIMEOUT, "x"))[: p.HEADER_SIZE])
    with pytest.raises(p.ProtocolError) as ei:
        reader.next_message()
    assert _code(ei) is ReturnCode.UNKNOWN_MESSAGE_TYPE
    assert "ErrorReply" in str(ei.value) and "expected CertRequest" in str(ei.value)


def test_reader_stays_failed() -> None:
    reader = p.MessageReader()
    reader.feed(b"XXXXXXXXXXXX")
    with pytest.raises(p.ProtocolError):
        reader.next_message()
    assert reader.failed
    for call in (reader.next_message, reader.bytes_needed, reader.feed_eof):
        with pytest.raises(p.ProtocolError) as ei:
            call()
        assert _code(ei) is ReturnCode.BAD_MAGIC
    with pytest.raises(p.ProtocolError):
        reader.feed(p.encode(_request()))


def test_reader_buffer_limit() -> None:
    text = b"a" * 296
    msg = _raw(3, b"\x00\x21" + len(text).to_bytes(2, "big") + text)  # 312 bytes
    reader = p.MessageReader(max_body_size=300, max_buffer=1000)
    reader.feed(msg * 3)  # 936 unconsumed bytes: still within the limit
    with pytest.raises(p.ProtocolError) as ei:
        reader.feed(msg)
    assert _code(ei) is ReturnCode.BODY_TOO_LARGE
    assert "936 unconsumed bytes plus 312 new exceed 1000" in str(ei.value)
    reader = p.MessageReader(max_body_size=300, max_buffer=1000)
    reader.feed(msg * 3)
    assert _drain(reader) == 3  # a reader that drains never hits the limit
    reader.feed(msg * 3)
    assert _drain(reader) == 3
    with pytest.raises(ValueError):
        p.MessageReader(max_body_size=300, max_buffer=100)
    with pytest.raises(ValueError):
        p.MessageReader(max_body_size=p.MAX_BODY_SIZE + 1)


def test_reader_max_body_size_lower_than_protocol() -> None:
    reader = p.MessageReader(max_body_size=100)
    with pytest.raises(p.ProtocolError) as ei:
        reader.feed(p.encode(_request()))  # over max_buffer: the header's error wins
    assert _code(ei) is ReturnCode.BODY_TOO_LARGE
    assert "body length 224 exceeds the limit of 100" in str(ei.value)
    reader = p.MessageReader(max_body_size=100)
    reader.feed(p.encode(_request())[:20])
    with pytest.raises(p.ProtocolError) as ei:
        reader.next_message()
    assert _code(ei) is ReturnCode.BODY_TOO_LARGE


def test_eof_mid_message() -> None:
    wire = p.encode(_request())
    for cut, text in ((5, "5 of the 12 header bytes"), (40, f"40 of {len(wire)} bytes")):
        reader = p.MessageReader()
        reader.feed(wire[:cut])
        assert reader.next_message() is None
        with pytest.raises(p.ProtocolError) as ei:
            reader.feed_eof()
        assert _code(ei) is ReturnCode.MALFORMED_BODY
        assert text in str(ei.value)


# ------------------------------------------------------------------ body errors
def _decode_raw(msg_type: int, body: bytes) -> p.Message:
    wire = _raw(msg_type, body)
    return p.decode(p.parse_header(wire[: p.HEADER_SIZE]), wire[p.HEADER_SIZE :])


def _malformed(msg_type: int, body: bytes, *fragments: str) -> None:
    with pytest.raises(p.ProtocolError) as ei:
        _decode_raw(msg_type, body)
    assert _code(ei) is ReturnCode.MALFORMED_BODY
    for fragment in fragments:
        assert fragment in str(ei.value)


REQ_BODY = p.encode(_request("ab"))[p.HEADER_SIZE :]


def test_request_truncated_in_each_field() -> None:
    cases = [
        (1, "signer_id at byte 0"),
        (10, "signer_key_id at byte 2"),
        (22, "device_template_id at byte 22"),
        (100, "config_zone at byte 25"),
        (200, "device_public_key at byte 153"),
        (217, "station_id_length at byte 217"),
        (219, "station_id at byte 218: need 2 bytes, 1 left"),
    ]
    for cut, fragment in cases:
        _malformed(1, REQ_BODY[:cut], "CertRequest body", "truncated", fragment)


def test_request_trailing_bytes() -> None:
    _malformed(1, REQ_BODY + b"\x00\x00", "2 trailing bytes")


def test_request_template_id_out_of_range() -> None:
    body = bytearray(REQ_BODY)
    body[23] = 16
    _malformed(1, bytes(body), "signer_template_id at byte 23 is 16")


def test_request_station_too_long_and_bad_utf8() -> None:
    body = REQ_BODY[:217] + bytes([65]) + b"a" * 65
    _malformed(1, body, "station_id_length at byte 217 is 65")
    _malformed(1, REQ_BODY[:217] + b"\x02\xff\xfe", "not valid UTF-8", "byte 218")


def test_reply_errors() -> None:
    good = b"\x00\x05" + SMALL_DER
    _malformed(2, b"\x00\x00" + good + b"\x00\x00", "device_cert_length at byte 0 is 0")
    _malformed(2, good + b"\x00\x00" + b"\x00\x00", "signer_cert_length at byte 7 is 0")
    _malformed(2, good + good, "truncated in field root_cert_length")
    _malformed(2, b"\x10\x01" + b"\x30" * 10, "limit 4096")
    _malformed(2, good + good + b"\x00\x03abc", "root_cert (bytes 16..18)", "tag 0x61")
    _malformed(2, b"\x00\x04\x30\x03\x02\x01" + good + b"\x00\x00", "says 5 bytes, field holds 4")
    _malformed(2, b"\x00\x03\x30\x81\x01" + good + b"\x00\x00", "shortest (DER) form")
    _malformed(2, b"\x00\x02\x30\x80" + good + b"\x00\x00", "0x80")
    _malformed(2, good + good + b"\x00\x00" + b"!", "1 trailing bytes")


def test_error_reply_errors() -> None:
    _malformed(3, b"\x00\x00\x00\x00", "code at byte 0 is 0x0000")
    _malformed(3, b"\x00\x99\x00\x00", "0x0099")
    _malformed(3, b"\x00\x21\x04\x01" + b"a" * 1025, "message_length at byte 2 is 1025")
    _malformed(3, b"\x00\x21\x00\x05abc", "truncated in field message")
    _malformed(3, b"\x00\x21", "truncated in field message_length")


def test_decode_length_mismatch() -> None:
    header = p.parse_header(_raw(3, b"\x00\x21\x00\x00")[: p.HEADER_SIZE])
    with pytest.raises(p.ProtocolError) as ei:
        p.decode(header, b"\x00\x21\x00")
    assert "announces 4 body bytes, got 3" in str(ei.value)


# ------------------------------------------------------------------ local misuse
def test_local_misuse_raises_value_or_type_error() -> None:
    base = {
        "signer_id": b"\x00\x01",
        "signer_key_id": bytes(20),
        "device_template_id": 0,
        "signer_template_id": 0,
        "chain_id": 0,
        "config_zone": bytes(128),
        "device_public_key": bytes(64),
    }
    bad: list[tuple[str, object, type[Exception]]] = [
        ("signer_id", b"\x00", ValueError),
        ("signer_key_id", bytes(19), ValueError),
        ("config_zone", bytes(127), ValueError),
        ("device_public_key", "00" * 64, TypeError),
        ("chain_id", 16, ValueError),
        ("device_template_id", -1, ValueError),
        ("signer_template_id", True, TypeError),
        ("station_id", "x" * 65, ValueError),
        ("station_id", b"abc", TypeError),
    ]
    for field, value, exc in bad:
        with pytest.raises(exc, match=field):
            p.CertRequest(**{**base, field: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device_cert"):
        p.CertReply(b"\x02\x01\x00", CERT)
    with pytest.raises(ValueError, match="limit 4096"):
        p.CertReply(CERT, b"\x30\x82\x10\x00" + bytes(4096))
    with pytest.raises(ValueError, match="SUCCESS"):
        p.ErrorReply(ReturnCode.SUCCESS, "")
    with pytest.raises(TypeError):
        p.ErrorReply(5, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit 1024"):
        p.ErrorReply(ReturnCode.TIMEOUT, "é" * 513)
    with pytest.raises(TypeError):
        p.encode("hello")  # type: ignore[arg-type]


def test_bytearray_fields_are_normalised() -> None:
    msg = p.CertReply(bytearray(CERT), memoryview(SMALL_DER))  # type: ignore[arg-type]
    assert type(msg.device_cert) is bytes and type(msg.signer_cert) is bytes
    assert hash(msg) == hash(p.CertReply(CERT, SMALL_DER))


def test_error_types() -> None:
    exc = p.ErrorReply(ReturnCode.SIGNER_LOCKED, "password needed").to_exception()
    assert isinstance(exc, p.ServerError) and isinstance(exc, ReturnCodeError)
    assert isinstance(exc, AtcaprovError)
    assert exc.code is ReturnCode.SIGNER_LOCKED and exc.message == "password needed"
    assert str(exc) == "ATCAPROV_E_SIGNER_LOCKED: password needed"
    assert issubclass(p.ProtocolError, AtcaprovError)


# ------------------------------------------------------------------ fuzzing
@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_fuzz_random_bytes(chunks: list[bytes]) -> None:
    reader = p.MessageReader()
    try:
        for chunk in chunks:
            reader.feed(chunk)
            _drain(reader)
        reader.feed_eof()
    except p.ProtocolError as exc:
        assert isinstance(exc.code, ReturnCode) and exc.code is not ReturnCode.SUCCESS


def _prefixed_bodies() -> st.SearchStrategy[bytes]:
    # valid headers with random bodies reach the body decoders (random bytes rarely do)
    return st.builds(
        lambda t, body: _raw(t, body),
        st.sampled_from([1, 2, 3]),
        st.one_of(st.binary(max_size=400), st.binary(min_size=218, max_size=300)),
    )


@settings(max_examples=300, deadline=None)
@given(_prefixed_bodies(), st.integers(min_value=1, max_value=50))
def test_fuzz_valid_headers_random_bodies(wire: bytes, step: int) -> None:
    reader = p.MessageReader()
    try:
        for i in range(0, len(wire), step):
            reader.feed(wire[i : i + step])
            _drain(reader)
        reader.feed_eof()
    except p.ProtocolError as exc:
        assert exc.code in (ReturnCode.MALFORMED_BODY, ReturnCode.BODY_TOO_LARGE)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500), st.integers(min_value=0, max_value=10_000))
def test_fuzz_mutated_valid_message(noise: bytes, position: int) -> None:
    wire = bytearray(p.encode(p.CertReply(CERT, SMALL_DER, root_cert=SMALL_DER)))
    pos = position % len(wire)
    wire[pos : pos + len(noise)] = noise
    reader = p.MessageReader()
    try:
        reader.feed(bytes(wire))
        _drain(reader)
        reader.feed_eof()
    except p.ProtocolError:
        pass


# ------------------------------------------------------------------ return codes
def test_return_codes_c_names_and_docs_table() -> None:
    import re
    from pathlib import Path

    from atcaprov import return_codes as rc

    for code in ReturnCode:
        assert getattr(rc, code.c_name) is code
        assert code.description
    assert rc.ATCAPROV_SUCCESS == 0 and ReturnCode.from_value(0x99) is None
    docs = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
    table = re.findall(
        r"^\| 0x([0-9A-F]{2}) \| (\d+) \| `(ATCAPROV_\w+)` \|", docs.read_text(), re.M
    )
    assert [(int(h, 16), int(d), name) for h, d, name in table] == [
        (code.value, code.value, code.c_name) for code in ReturnCode
    ]
