"""The fault sweep, in process: a fault at every chip command (and every wake) of a run, with
and without slot locks, for every fault kind; the server connection cut at every point; each
followed by a replug and a second run. See tests/support/sweep.py for what is checked.

The counts are printed (``pytest -s``) and every "must be 0" count is asserted.
"""

from __future__ import annotations

import pytest

from atcaprov.packet import Opcode
from atcaprov.server_faults import SERVER_CUTS
from tests.support.cert_server import InMemoryServer
from tests.support.pki import Pki
from tests.support.sweep import (
    COMMAND_KINDS,
    WAKE_KINDS,
    Case,
    EmulatorBench,
    SweepCounts,
    count_commands,
    label,
    run_case,
)


def _assert_clean(counts: SweepCounts, title: str) -> None:
    print("\n" + counts.summary(title))
    assert counts.bad() == dict.fromkeys(counts.bad(), 0), counts.summary(title)


@pytest.mark.parametrize("config_differs", [False, True], ids=["target-config", "other-config"])
@pytest.mark.parametrize("lock_slots", [(), (10, 12)], ids=["no-slot-locks", "slot-locks"])
def test_fault_at_every_chip_command(
    pki: Pki, lock_slots: tuple[int, ...], config_differs: bool
) -> None:
    # a part whose config is already the target (no config Write) and one whose every config
    # word differs (every config Write sent, so each gets its fault)
    bench, server = EmulatorBench(config_differs=config_differs), InMemoryServer(pki)
    commands, wakes, _ = count_commands(bench, server, pki.cert_info, lock_slots)
    total = SweepCounts()
    for kind in (*COMMAND_KINDS, *WAKE_KINDS):
        positions = range(wakes if kind in WAKE_KINDS else commands)
        per_kind = SweepCounts()
        for index in positions:
            per_kind.add(run_case(bench, server, pki.cert_info, Case(kind, index, lock_slots)))
        assert per_kind.not_fired == 0, f"{label(kind)}: {per_kind.not_fired} faults never fired"
        total.add(per_kind)
    title = (
        f"chip faults, lock_slots={list(lock_slots)}, config"
        f" {'differing' if config_differs else 'already the target'}: {commands} commands"
        f" and {wakes} wakes per run"
    )
    _assert_clean(total, title)
    assert total.faults_fired == total.cases
    assert total.first_failed > 0 and total.first_ok > 0  # the sweep did hit both outcomes


@pytest.mark.parametrize("lock_slots", [(), (10, 12)], ids=["no-slot-locks", "slot-locks"])
def test_server_connection_cut_at_every_point(pki: Pki, lock_slots: tuple[int, ...]) -> None:
    bench, server = EmulatorBench(), InMemoryServer(pki)
    total = SweepCounts()
    for cut in SERVER_CUTS:
        counts = run_case(bench, server, pki.cert_info, Case(None, 0, lock_slots, server_cut=cut))
        assert counts.first_failed == 1, cut  # every cut fails the request
        assert counts.failed_stages == {"CERTS_REQUEST": 1}, cut
        total.add(counts)
    _assert_clean(total, f"server cuts, lock_slots={list(lock_slots)}")
    assert total.second_ok == len(SERVER_CUTS)  # the replugged part provisions normally


def test_without_the_data_lock_crc_only_unperformed_certificate_writes_burn(pki: Pki) -> None:
    """``data_lock_crc=False``, the trade-off measured: every property stays at 0 except for
    a Write the chip acknowledged without storing it (status 0x00 with nothing done) at one of
    the certificate Writes, which only VALIDATE_CERTS finds, after the lock (burned)."""
    bench, server = EmulatorBench(), InMemoryServer(pki)
    commands, wakes, opcodes = count_commands(bench, server, pki.cert_info, (), data_lock_crc=False)
    cert_writes = [i for i, op in enumerate(opcodes) if op == Opcode.WRITE]
    assert len(cert_writes) == 9  # the default config part: no config Write, 3 records
    total, burned_at = SweepCounts(), []
    for kind in (*COMMAND_KINDS, *WAKE_KINDS):
        for index in range(wakes if kind in WAKE_KINDS else commands):
            counts = run_case(
                bench, server, pki.cert_info, Case(kind, index, (), data_lock_crc=False)
            )
            assert counts.not_fired == 0, (label(kind), index)
            if counts.burned:
                burned_at.append((kind, index))
            total.add(counts)
    print("\n" + total.summary(f"chip faults without the data-lock CRC: {commands} commands"))
    assert burned_at == [(0x00, i) for i in cert_writes]
    bad = total.bad()
    assert bad["burned"] == bad["validation failures"] == len(cert_writes)
    assert {
        k: v for k, v in bad.items() if k not in ("burned", "validation failures")
    } == dict.fromkeys(set(bad) - {"burned", "validation failures"}, 0)
