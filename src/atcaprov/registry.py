"""A registry of back-end classes chosen by name, as python-can does with its interfaces.

One :class:`Registry` per kind of back-end (HAL drivers, signer back-ends, record stores...):
classes register under the name the CLI and config files use; built-in back-ends are listed as
module paths and imported on first use, so optional packages load only when asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import ClassVar, Generic, Protocol, TypeVar


class Named(Protocol):
    """What a registered class has: the name it is registered under."""

    name: ClassVar[str]


T = TypeVar("T", bound=type[Named])


class Registry(Generic[T]):
    """Named classes of one kind.

    ``unknown(message)`` and ``unloadable(message, exc)`` build the exceptions raised for an
    unknown name and for a built-in whose module cannot be imported.
    """

    def __init__(
        self,
        kind: str,
        builtin: Mapping[str, str],
        *,
        unknown: Callable[[str], Exception],
        unloadable: Callable[[str, ImportError], Exception] | None = None,
    ) -> None:
        self.kind = kind
        self._builtin = dict(builtin)
        self._classes: dict[str, T] = {}
        self._unknown = unknown
        self._unloadable = unloadable

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make ``cls`` available under ``name`` (sets ``cls.name``)."""

        def deco(cls: T) -> T:
            cls.name = name
            self._classes[name] = cls
            return cls

        return deco

    def get(self, name: str) -> T:
        """The class registered under ``name``, importing a built-in on demand."""
        if name not in self._classes and name in self._builtin:
            try:
                importlib.import_module(self._builtin[name])
            except ImportError as exc:
                if self._unloadable is None:
                    raise
                raise self._unloadable(
                    f"{self.kind} {name!r} cannot be loaded: {exc}", exc
                ) from exc
        try:
            return self._classes[name]
        except KeyError:
            raise self._unknown(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """All names, built-in and registered."""
        return sorted(set(self._classes) | set(self._builtin))
