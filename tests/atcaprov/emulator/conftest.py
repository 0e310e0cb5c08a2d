"""Fixtures for the emulator tests: deterministic chips (ATECC508A unless a test asks for a
608: ``make_chip(chip_type=...)``, or the ``blank608``/``configured608``/``provisioned608``
fixtures, run once per 608 model) and a packet driver."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from atcaprov.emulator import chip_class
from tests.support.chip import SERIAL, ChipDriver, FakeClock, seeded_source


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_chip(clock: FakeClock) -> Callable[..., ChipDriver]:
    """Build a deterministic blank chip (fake clock, seeded RNG, recorded sleeps)."""

    def make(
        serial: bytes = SERIAL,
        seed: int = 1,
        timing_scale: float = 0.0,
        chip_type: str = "ATECC508A",
    ) -> ChipDriver:
        sleeps: list[float] = []
        chip = chip_class(chip_type)(
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


@pytest.fixture(params=["ATECC608A", "ATECC608B"])
def blank608(request: pytest.FixtureRequest, make_chip: Callable[..., ChipDriver]) -> ChipDriver:
    """A blank 608A, then a blank 608B (the 608 factory config, nothing locked)."""
    return make_chip(chip_type=request.param)


@pytest.fixture
def configured608(blank608: ChipDriver) -> ChipDriver:
    blank608.lock_config()
    return blank608


@pytest.fixture
def provisioned608(configured608: ChipDriver) -> ChipDriver:
    """As ``provisioned``, on a 608: keys in slots 0 and 2, slot 10 written, data locked."""
    configured608.genkey(0)
    configured608.genkey(2)
    configured608.write_slot(10, bytes(range(72)))
    configured608.lock_data()
    return configured608
