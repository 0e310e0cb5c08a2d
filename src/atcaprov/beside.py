"""Work done on a helper thread while the caller goes on: host work beside chip I/O.

The provisioning flow waits most of its time on the chip or on the server; :class:`Beside`
lets it do one independent piece of work meanwhile (the chip Writes that do not depend on the
server's answer while the certificate request is out; the host-side certificate checks while
the certificate Writes go out). The caller always collects it (:meth:`Beside.result`) before
going on with what depends on it: nothing is left running, and an exception of the work is
raised there, in the caller's stage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class Beside(Generic[T]):
    """Run ``work()`` on a daemon thread now; :meth:`result` waits for it."""

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self._work = work
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def wait(self) -> None:
        """Wait until the work is over (whatever its outcome)."""
        self._thread.join()

    @property
    def error(self) -> BaseException | None:
        """The work's exception (None while it runs or if it succeeded)."""
        return self._error

    def result(self) -> T:
        """Wait for the work; return its value or raise its exception."""
        self.wait()
        if self._error is not None:
            raise self._error
        return cast(T, self._value)
