"""A registry of back-end classes chosen by name, as python-can does with its interfaces.

One :class:`Registry` per kind of back-end (HAL drivers, signer back-ends, record stores...):
classes register under the name the CLI and config files use; built-in back-ends are listed as
module paths and imported on first use, so optional packages load only when asked for.
:meth:`Registry.open` builds one by name, :meth:`Registry.names` lists them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar


class Named(Protocol):
    """What a registered class has: the name it is registered under."""

    name: ClassVar[str]


C = TypeVar("C", bound=Named)
K = TypeVar("K", bound=type[Named])


class Registry(Generic[C]):
    """Named classes of one kind (``C``: their common base).

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
        self._classes: dict[str, type[C]] = {}
        self._unknown = unknown
        self._unloadable = unloadable

    def register(self, name: str) -> Callable[[K], K]:
        """Class decorator: make ``cls`` available under ``name`` (sets ``cls.name``)."""

        def deco(cls: K) -> K:
            cls.name = name
            self._classes[name] = cls  # type: ignore[assignment]  # K is a C subclass
            return cls

        return deco

    def get(self, name: str) -> type[C]:
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

    def open(self, name: str, /, **options: Any) -> C:
        """Build the one registered under ``name`` with ``options``, e.g.
        ``open("kit-cdc", url="socket://127.0.0.1:5000")``."""
        return self.get(name)(**options)

    def names(self) -> list[str]:
        """All names, built-in and registered (sorted)."""
        return sorted(set(self._classes) | set(self._builtin))

    def builtin_names(self) -> list[str]:
        """The built-in names, in the order they were given."""
        return list(self._builtin)
