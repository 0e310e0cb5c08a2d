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
    reg: Registry[type[Thing]] = Registry("thing", {"lazy": "json"}, unknown=UnknownThing)

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

    reg: Registry[type[Thing]] = Registry(
        "thing", {"gone": "no_such_module_atcaprov"}, unknown=UnknownThing, unloadable=unloadable
    )
    with pytest.raises(UnknownThing, match=r"cannot be loaded.*\[no_such_module_atcaprov\]"):
        reg.get("gone")


def test_hal_registry_lists_builtins_and_loads_on_demand() -> None:
    assert {"emulator", "kit-cdc", "kit-hid", "fault"} <= set(available_hals())
    assert hal_class("fault").name == "fault"
    with pytest.raises(HalError, match="unknown HAL driver 'usb-magic'"):
        hal_class("usb-magic")
