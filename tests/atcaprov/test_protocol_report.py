"""Protocol version 2's DeviceReport / ReportAck: layout, limits, versions."""

from __future__ import annotations

import pytest

from atcaprov import protocol as p
from atcaprov.return_codes import ReturnCode


def _report(**changes: object) -> p.DeviceReport:
    values: dict[str, object] = dict(
        outcome=p.ReportOutcome.FAILED,
        stage=6,
        part_state=p.ReportPartState.CONFIG_LOCKED,
        code=ReturnCode.DEVICE_ERROR,
        device_sn=bytes.fromhex("01231E6CD82C0001EE"),
        device_public_key=bytes(range(64)),
        station_id="line-1",
        message="chip gone é",
    )
    values.update(changes)
    return p.DeviceReport(**values)  # type: ignore[arg-type]


def _read(data: bytes) -> p.Message:
    reader = p.MessageReader()
    reader.feed(data)
    msg = reader.next_message()
    assert msg is not None
    return msg


def test_report_round_trip_and_layout() -> None:
    report = _report()
    wire = p.encode(report)
    header = p.parse_header(wire[: p.HEADER_SIZE])
    assert (header.version, header.msg_type) == (2, p.MessageType.DEVICE_REPORT)
    body = wire[p.HEADER_SIZE :]
    assert body[:5] == bytes((2, 6, 2, 0x00, 0x04))
    assert body[5:14] == report.device_sn and body[14:78] == report.device_public_key
    assert body[78] == 6 and body[79:85] == b"line-1"
    assert int.from_bytes(body[85:87], "big") == len("chip gone é".encode())
    assert len(body) == 81 + 6 + len("chip gone é".encode())
    assert _read(wire) == report
    ack = p.ReportAck(p.RecordedState.INSTALLED)
    assert _read(p.encode(ack, 2)) == ack
    assert p.encode(_report(station_id="", message=""))[p.HEADER_SIZE + 78] == 0


def test_version_1_messages_still_go_out_as_version_1() -> None:
    reply = p.ErrorReply(ReturnCode.SIGNER_LOCKED, "x")
    assert p.encode(reply)[4] == 1 and p.encode(reply, 2)[4] == 2
    with pytest.raises(ValueError, match="version 1"):
        p.encode(p.ReportAck(p.RecordedState.SIGNED), 1)
    with pytest.raises(ValueError, match="version 3"):
        p.encode(reply, 3)


def test_a_report_in_a_version_1_header_is_an_unknown_type() -> None:
    wire = bytearray(p.encode(_report()))
    wire[4] = 1
    with pytest.raises(p.ProtocolError) as info:
        _read(bytes(wire))
    assert info.value.code is ReturnCode.UNKNOWN_MESSAGE_TYPE
    assert "0x06 in protocol version 1" in info.value.message


def test_reader_tells_the_version_of_each_message() -> None:
    reader = p.MessageReader()
    reader.feed(p.encode(_report()) + p.encode(p.ErrorReply(ReturnCode.TIMEOUT, "t")))
    assert isinstance(reader.next_message(), p.DeviceReport) and reader.last_version == 2
    assert isinstance(reader.next_message(), p.ErrorReply) and reader.last_version == 1


@pytest.mark.parametrize(
    ("offset", "value", "field"),
    [(0, 9, "outcome"), (2, 7, "part_state"), (3, 0xEE, "code")],
)
def test_bad_report_fields(offset: int, value: int, field: str) -> None:
    wire = bytearray(p.encode(_report()))
    wire[p.HEADER_SIZE + offset] = value
    with pytest.raises(p.ProtocolError) as info:
        _read(bytes(wire))
    assert info.value.code is ReturnCode.MALFORMED_BODY and field in info.value.message


def test_report_values_checked_when_built() -> None:
    with pytest.raises(ValueError, match="device_sn"):
        _report(device_sn=bytes(8))
    with pytest.raises(ValueError, match="message"):
        _report(message="x" * 1025)
    with pytest.raises(TypeError, match="outcome"):
        _report(outcome=1)
    with pytest.raises(TypeError, match="state"):
        p.ReportAck(2)  # type: ignore[arg-type]
