"""Loopback networking for the tests."""

from __future__ import annotations

import socket
import threading


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class LoopbackListener:
    """A TCP listener on 127.0.0.1 whose accept loop runs on a daemon thread (each wait for a
    connection bounded by ``poll_s``, so that :meth:`close` ends it); every connection goes to
    :meth:`accepted`, on that thread. Subclasses set themselves up, then :meth:`start`."""

    def __init__(self, *, backlog: int = 8, poll_s: float = 0.2) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(backlog)
        self._listener.settimeout(poll_s)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> None:
        self._accept_thread.start()

    def accepted(self, conn: socket.socket) -> None:
        """Serve ``conn`` (or hand it to a thread of its own)."""
        raise NotImplementedError

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed: the end
                return
            self.accepted(conn)

    def close(self) -> None:
        """Stop accepting: the loop ends, the listener is closed."""
        self._stop.set()
        self._listener.close()
        self._accept_thread.join(timeout=5)
