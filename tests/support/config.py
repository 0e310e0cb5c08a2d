"""Config zones for the tests: the app note's test provisioning configuration and a locked zone.

``TEST_CONFIG`` is written out here on purpose (not taken from ``atcaprov.config``): the tests
check the library against it.
"""

from __future__ import annotations

# Facts 3.7: the 2016 test provisioning config, byte 14 = 0x01 (the app note default).
TEST_CONFIG = bytes.fromhex(
    "00000000000000000000000000000100"
    "C000AA008F20C4448720C4448F0F8F8F"
    "9F8F8220C444C4440F0F0F0F0F0F0F0F"
    "0F0F0F0FFFFFFFFF00000000FFFFFFFF"
    "00000000FFFFFFFFFFFFFFFFFFFFFFFF"
    "FFFFFFFF00005555FFFF000000000000"
    "33005C0013005C003C001C001C003300"
    "1C001C003C003C003C003C001C003C00"
)


def config_zone(sn_tail: int = 1) -> bytes:
    """A config zone as a station reads it after locking: serial number 01231E6C D82C<tail>EE."""
    cfg = bytearray(128)
    cfg[0:4] = bytes([0x01, 0x23, 0x1E, 0x6C])
    cfg[4:8] = bytes([0x00, 0x00, 0x50, 0x00])
    cfg[8:13] = bytes([0xD8, 0x2C, (sn_tail >> 8) & 0xFF, sn_tail & 0xFF, 0xEE])
    cfg[16] = 0xC0
    cfg[86] = 0x55
    cfg[87] = 0x00
    cfg[88:90] = b"\xff\xff"
    return bytes(cfg)
