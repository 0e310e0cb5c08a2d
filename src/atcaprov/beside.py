"""Host work done while the caller waits on chip or server I/O.

The provisioning flow waits most of its time on the chip or on the server; two ways let it do
an independent piece of work meanwhile:

* :class:`Beside`: on a helper thread (the chip Writes that do not depend on the server's
  answer, while the certificate request is out: I/O beside I/O);
* :class:`During`: on the caller's own thread, while the chip executes a command
  (``Device.during``: the command's packet has gone out, its answer is read after the work).
  For CPU work (the certificate checks beside the certificate Writes and the key challenge):
  a helper thread doing CPU work holds the GIL that the caller needs to read each answer, so
  it would delay the caller's chip I/O by as much as it saves.

The caller always collects the work (``result()``) before going on with what depends on it:
nothing is left running, and an exception of the work is raised there, in the caller's stage.
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


class During(Generic[T]):
    """``work()`` run once, on the caller's thread: by the chip I/O it was handed to, while a
    command executes (:meth:`run`), or by :meth:`result` if no command ran it."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._work = work
        self._ran = False
        self._value: T | None = None
        self._error: Exception | None = None

    @property
    def ran(self) -> bool:
        return self._ran

    def run(self) -> None:
        """Do the work now unless done already; never raises an Exception (kept for
        :meth:`result`)."""
        if self._ran:
            return
        self._ran = True
        try:
            self._value = self._work()
        except Exception as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> T:
        """The work's value (done now if no command ran it) or its exception."""
        self.run()
        if self._error is not None:
            raise self._error
        return cast(T, self._value)
