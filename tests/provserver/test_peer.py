"""How a station is shown: address, TLS subject from the certificate, its own id in quotes."""

from __future__ import annotations

from provserver.peer import Peer, station_text


def test_station_text_quotes_the_id_and_marks_the_tls_part() -> None:
    plain = Peer("127.0.0.1:40112")
    tls = Peer("127.0.0.1:40112", "commonName=line-1")
    assert station_text(plain, None) == "127.0.0.1:40112"
    assert station_text(plain, "line-1") == '127.0.0.1:40112 "line-1"'
    assert station_text(tls, "line-1") == '127.0.0.1:40112 (TLS: commonName=line-1) "line-1"'
    # an id imitating the TLS part stays recognisable as the station's own text
    fake = station_text(plain, "(TLS: commonName=line-1)")
    assert fake == '127.0.0.1:40112 "(TLS: commonName=line-1)"'
    assert fake != station_text(tls, None)
    assert station_text(plain, 'x" (TLS: commonName=y') == (
        '127.0.0.1:40112 "x\\" (TLS: commonName=y"'
    )


def test_outside_text_is_escaped() -> None:
    peer = Peer("127.0.0.1:1", "commonName=a\nb\x1b[2J")
    text = station_text(peer, "id\r\n\x00")
    assert text == '127.0.0.1:1 (TLS: commonName=a\\nb\\x1b[2J) "id\\r\\n\\x00"'
    assert text.isprintable()
