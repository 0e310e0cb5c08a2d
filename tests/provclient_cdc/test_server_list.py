"""``--host a,b`` / ``--server host:port``: the station's ordered server list."""

from __future__ import annotations

import re

import pytest

from provclient_cdc.failover import ServerListError, parse_servers


@pytest.mark.parametrize(
    ("hosts", "servers", "expected"),
    [
        ("localhost", (), [("localhost", 11235)]),
        ("pc1,pc2", (), [("pc1", 11235), ("pc2", 11235)]),
        ("pc1:1000, pc2 ,pc1:1000", (), [("pc1", 1000), ("pc2", 11235)]),
        ("[::1]:1000,[fe80::1]", (), [("::1", 1000), ("fe80::1", 11235)]),
        ("ignored", ("pc1:1", "pc2:2,pc3:3"), [("pc1", 1), ("pc2", 2), ("pc3", 3)]),
    ],
)
def test_server_lists(
    hosts: str, servers: tuple[str, ...], expected: list[tuple[str, int]]
) -> None:
    assert parse_servers(hosts, 11235, servers) == expected


@pytest.mark.parametrize(
    ("hosts", "servers", "message"),
    [
        (",", (), "no server given"),
        ("pc1:x", (), "'x' is not a port number"),
        ("pc1:0", (), "outside 1..65535"),
        ("[::1", (), "missing ']'"),
        (":11235", (), "no host name"),
        ("pc1", ("pc2",), "no port"),
    ],
)
def test_bad_server_lists(hosts: str, servers: tuple[str, ...], message: str) -> None:
    with pytest.raises(ServerListError, match=re.escape(message)):
        parse_servers(hosts, 11235, servers)
