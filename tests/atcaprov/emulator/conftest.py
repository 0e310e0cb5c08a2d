"""Fixtures for the ATECC508A emulator tests: deterministic chips and a packet driver."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from atcaprov.emulator import Atecc508a
from tests.support.chip import SERIAL, ChipDriver, FakeClock, seeded_source


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_chip(clock: FakeClock) -> Callable[..., ChipDriver]:
    """Build a deterministic blank chip (fake clock, seeded RNG, recorded sleeps)."""

    def make(serial: bytes = SERIAL, seed: int = 1, timing_scale: float = 0.0) -> ChipDriver:
        sleeps: list[float] = []
        chip = Atecc508a(
            serial,
            timing_scale=timing_scale,
            clock=clock,
            sleeper=sleeps.append,
            random_source=seeded_source(seed),
        )
        return ChipDriver(chip, clock, sleeps)

    return make


@pytest.fixture
def blank(make_chip: Callable[..., ChipDriver]) -> ChipDriver:
    """A blank factory part (app-note default config, nothing locked)."""
    return make_chip()


@pytest.fixture
def configured(blank: ChipDriver) -> ChipDriver:
    """Config zone locked with the default configuration, data zone open."""
    blank.lock_config()
    return blank


@pytest.fixture
def provisioned(configured: ChipDriver) -> ChipDriver:
    """Config and data locked, a key generated in slot 0 (ext/int sign, ECDH to slot 1)."""
    configured.genkey(0)
    configured.genkey(2)
    configured.write_slot(10, bytes(range(72)))
    configured.lock_data()
    return configured
