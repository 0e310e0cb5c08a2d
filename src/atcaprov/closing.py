"""``Closeable``: the ``with obj:`` protocol for things that hold a resource and have ``close()``.

HAL drivers, :class:`~atcaprov.device.Device` and the server's signer modules all release what
they hold in ``close()`` and are used as context managers; this mixin is that protocol, once.
"""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

_C = TypeVar("_C", bound="Closeable")


class Closeable:
    """``with obj: ...`` calls ``obj.close()`` at the end (on success and on error)."""

    def close(self) -> None:
        """Release what the object holds. Idempotent."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
