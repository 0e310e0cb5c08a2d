"""CertRequest2 (protocol version 2): a CertRequest plus the device type, in its own message
type; the version-1 CertRequest keeps its layout, and a version-1 peer refuses the new type."""

from __future__ import annotations

import pytest

from atcaprov.protocol import (
    HEADER_SIZE,
    MESSAGE_VERSION,
    CertRequest,
    CertRequest2,
    DeviceType,
    MessageReader,
    MessageType,
    ProtocolError,
    encode,
    parse_header,
)
from atcaprov.return_codes import ReturnCode

FIELDS = dict(
    signer_id=b"\xc4\x8b",
    signer_key_id=bytes(range(20)),
    device_template_id=1,
    signer_template_id=2,
    chain_id=3,
    config_zone=bytes(range(128)),
    device_public_key=bytes(range(64, 128)),
    station_id="line-1",
)


def test_cert_request2_is_the_cert_request_body_plus_the_device_type() -> None:
    v1 = encode(CertRequest(**FIELDS))  # type: ignore[arg-type]
    v2 = encode(CertRequest2(**FIELDS, device_type=DeviceType.ATECC608B))  # type: ignore[arg-type]
    assert MESSAGE_VERSION[MessageType.CERT_REQUEST] == 1
    assert MESSAGE_VERSION[MessageType.CERT_REQUEST2] == 2
    assert v1[4:6] == b"\x01\x01" and v2[4:6] == b"\x02\x08"
    assert len(v1) - HEADER_SIZE == 218 + len("line-1")  # the version-1 layout, unchanged
    assert v2[HEADER_SIZE:] == v1[HEADER_SIZE:] + bytes((DeviceType.ATECC608B,))
    assert parse_header(v2[:HEADER_SIZE]).body_length == 219 + len("line-1")


@pytest.mark.parametrize("device_type", list(DeviceType))
def test_cert_request2_round_trip(device_type: DeviceType) -> None:
    sent = CertRequest2(**FIELDS, device_type=device_type)  # type: ignore[arg-type]
    reader = MessageReader()
    reader.feed(encode(sent))
    got = reader.next_message()
    assert got == sent and isinstance(got, CertRequest2) and reader.last_version == 2
    assert got.device_serial_number == sent.device_serial_number


def test_unknown_device_type_and_truncation_refused() -> None:
    wire = bytearray(
        encode(
            CertRequest2(
                **FIELDS,  # type: ignore[arg-type]
                device_type=DeviceType.ATECC508A,
            )
        )
    )
    wire[-1] = 9
    reader = MessageReader()
    reader.feed(bytes(wire))
    with pytest.raises(ProtocolError, match=r"device_type .* is 9, expected one of 1, 2, 3"):
        reader.next_message()
    short = bytearray(encode(CertRequest(**FIELDS)))  # type: ignore[arg-type]
    short[4:6] = b"\x02\x08"  # a CertRequest body under the CertRequest2 type
    reader = MessageReader()
    reader.feed(bytes(short))
    with pytest.raises(ProtocolError, match="truncated in field device_type"):
        reader.next_message()


def test_version_1_peer_refuses_the_new_type() -> None:
    reader = MessageReader(versions={1})
    reader.feed(
        encode(
            CertRequest2(
                **FIELDS,  # type: ignore[arg-type]
                device_type=DeviceType.ATECC608A,
            )
        )
    )
    with pytest.raises(ProtocolError) as info:
        reader.next_message()
    assert info.value.code is ReturnCode.UNSUPPORTED_VERSION


def test_server_that_accepts_only_cert_requests_refuses_it() -> None:
    reader = MessageReader({MessageType.CERT_REQUEST})
    reader.feed(
        encode(
            CertRequest2(
                **FIELDS,  # type: ignore[arg-type]
                device_type=DeviceType.ATECC608A,
            )
        )
    )
    with pytest.raises(ProtocolError) as info:
        reader.next_message()
    assert info.value.code is ReturnCode.UNKNOWN_MESSAGE_TYPE


def test_device_type_must_be_a_device_type() -> None:
    with pytest.raises(TypeError, match="device_type must be a DeviceType"):
        CertRequest2(**FIELDS, device_type=3)  # type: ignore[arg-type]
