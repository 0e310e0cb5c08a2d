"""The name -> class registry shared by HAL drivers and signer back-ends."""

from __future__ import annotations

from typing import ClassVar

import pytest

from atcaprov.errors import AtcaprovError
from atcaprov.hal import HalError, available_hals, hal_class
from atcaprov.registry import Registry


class Thing:
    name: ClassVar[str] = ""


class UnknownThing(AtcaprovError):
    pass


def test_register_get_and_names() -> None:
    reg: Registry[Thing] = Registry("thing", {"lazy": "json"}, unknown=UnknownThing)

    @reg.register("one")
    class One(Thing):
        pass

    assert One.name == "one"
    assert reg.get("one") is One
    assert reg.names() == ["lazy", "one"]
    with pytest.raises(UnknownThing, match="unknown thing 'two'; known: lazy, one"):
        reg.get("two")
    # a built-in whose module imports but registers nothing is still unknown, by name
    with pytest.raises(UnknownThing, match="'lazy'"):
        reg.get("lazy")


def test_unloadable_builtin_is_a_typed_error() -> None:
    def unloadable(message: str, exc: ImportError) -> UnknownThing:
        return UnknownThing(f"{message} [{exc.name}]")

    reg: Registry[Thing] = Registry(
        "thing", {"gone": "no_such_module_atcaprov"}, unknown=UnknownThing, unloadable=unloadable
    )
    with pytest.raises(UnknownThing, match=r"cannot be loaded.*\[no_such_module_atcaprov\]"):
        reg.get("gone")


def test_hal_registry_lists_builtins_and_loads_on_demand() -> None:
    assert {"emulator", "kit-cdc", "kit-hid", "fault"} <= set(available_hals())
    assert hal_class("fault").name == "fault"
    with pytest.raises(HalError, match="unknown HAL driver 'usb-magic'"):
        hal_class("usb-magic")


def test_open_builds_by_name_and_keeps_name_as_an_option() -> None:
    reg: Registry[Thing] = Registry("thing", {}, unknown=UnknownThing)

    @reg.register("kw")
    class Kw(Thing):
        def __init__(self, *, name: str = "", size: int = 0) -> None:
            self.given_name, self.size = name, size

    made = reg.open("kw", name="option called name", size=3)
    assert isinstance(made, Kw) and (made.given_name, made.size) == ("option called name", 3)
    with pytest.raises(UnknownThing, match="unknown thing 'nope'"):
        reg.open("nope")


def test_builtin_names_keep_their_order() -> None:
    reg: Registry[Thing] = Registry("thing", {"b": "x", "a": "y"}, unknown=UnknownThing)
    assert reg.builtin_names() == ["b", "a"]
    assert reg.names() == ["a", "b"]


def test_hal_names_are_the_registry_methods() -> None:
    from atcaprov.emulator import Atecc508a
    from atcaprov.hal import open_hal, register_hal
    from atcaprov.hal.base import HAL_DRIVERS, Hal
    from atcaprov.hal.emulator import EmulatorHal

    hal = open_hal("emulator", chip=Atecc508a())
    assert isinstance(hal, EmulatorHal)
    hal.close()
    assert hal_class("emulator") is HAL_DRIVERS.get("emulator")
    assert available_hals() == HAL_DRIVERS.names()

    @register_hal("test-registry-null")
    class Null(EmulatorHal):
        pass

    assert Null.name == "test-registry-null" and issubclass(hal_class("test-registry-null"), Hal)
    HAL_DRIVERS._classes.pop("test-registry-null")
