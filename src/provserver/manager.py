"""The signer manager: which signer modules are present, unlocked and free, and signing with them.

It owns the set of open :class:`~provserver.signers.base.SignerModule` objects:

* discovery: every back-end is scanned at start and every ``rescan_interval`` seconds; a new
  location is opened (``Signer (SN, name) found.``), a vanished one closed
  (``Signer (SN, name) removed.``);
* passwords: a module that needs one is announced (``... requires password.``) and the
  :class:`~provserver.console.PasswordSource` is asked, one prompt at a time; a wrong password
  is reported and asked again (interactive sources, at most ``max_password_attempts``); a
  prompt cancelled with ESC ends quietly (the server is stopping), and a source without a
  password says why (``--password-env`` variable not set, no terminal);
* pools: modules holding the same signer key (same key id) form a pool; a request picks its
  pool by the signer key id of the request (or by signer id when the key id is all zeros);
  the least busy ready module of the pool signs, one operation at a time per module, in a
  worker thread (on the event loop for modules that set ``signs_inline``: a key in memory);
  a module raising ``SignerUnavailableError`` is dropped (the next scan opens it
  again if it is still there) and the request is retried on another module of the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from atcaprov.return_codes import ReturnCode, ReturnCodeError
from atcaprov.text import printable

from .console import Console, PasswordCancelled, PasswordSource
from .signers.base import (
    SignerBackend,
    SignerError,
    SignerIdentity,
    SignerLockedError,
    SignerModule,
    SignerUnavailableError,
    WrongPasswordError,
)

NO_KEY_ID = bytes(20)


class SignerRequestError(ReturnCodeError):
    """A signing request the manager cannot serve (``code``: SIGNER_NOT_FOUND, ...)."""


def signer_label(identity: SignerIdentity) -> str:
    """``Signer (SN, name)`` as the console prints it (the module's own text escaped)."""
    sn = printable(identity.module_sn, escape_backslash=True)
    return f"Signer ({sn}, {printable(identity.name, escape_backslash=True)})"


@dataclass(eq=False)
class ManagedModule:
    """One open module and its bookkeeping."""

    module: SignerModule
    key: tuple[str, str]  # (back-end name, location)
    ready: bool = False
    dropped: bool = False
    pending: int = 0
    uses: int = 0
    queue: asyncio.Lock = field(default_factory=asyncio.Lock)
    thread_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def identity(self) -> SignerIdentity:
        return self.module.identity

    @property
    def label(self) -> str:
        return signer_label(self.module.identity)


@dataclass(frozen=True)
class SignResult:
    """A signature and the module that made it."""

    signature: bytes
    identity: SignerIdentity
    module_key: tuple[str, str]
    key_checked: bool = False  # the module's key was checked at load: no per-signature check


class SignerManager:
    """Discovers, unlocks, pools and uses signer modules (see the module docstring)."""

    def __init__(
        self,
        backends: Sequence[SignerBackend],
        console: Console,
        passwords: PasswordSource,
        *,
        rescan_interval: float = 2.0,
        max_password_attempts: int = 10,
        max_sign_attempts: int = 4,
    ) -> None:
        self._backends = list(backends)
        self._console = console
        self._passwords = passwords
        self.rescan_interval = rescan_interval
        self._max_password_attempts = max_password_attempts
        self._max_sign_attempts = max_sign_attempts
        self._modules: dict[tuple[str, str], ManagedModule] = {}
        self._open_failures: dict[tuple[str, str], str] = {}
        # Modules dropped after a failure, by key -> label: the next scan says "removed." if
        # they are gone, or re-opens them if they are still there.
        self._dropped: dict[tuple[str, str], str] = {}
        self._scan_failures: dict[str, str] = {}
        self._scan_lock = asyncio.Lock()
        self._prompt_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._rescan_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._first_scan_done = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Log ``Signer Manager started.``; no scan yet (see :meth:`start_scanning`)."""
        self._console.info("Signer Manager started.")

    async def start_scanning(self, after_first_scan: Callable[[], None] | None = None) -> None:
        """Log back-end warnings, scan once now, then every ``rescan_interval`` seconds.

        ``after_first_scan`` (the start's summary of what was found) runs once the first scan
        is done and before any password prompt is shown, so that a prompt is the last line.
        """
        for backend in self._backends:
            if backend.warning:
                self._console.warning(backend.warning)
        try:
            await self.rescan()
            if after_first_scan is not None:
                after_first_scan()
        finally:
            self._first_scan_done.set()
        if self.rescan_interval > 0 and self._rescan_task is None:
            self._rescan_task = asyncio.create_task(self._rescan_loop(), name="signer-rescan")

    async def stop(self) -> None:
        """Stop scanning and prompting, close every module and back-end."""
        self._stopping = True
        tasks = list(self._tasks)
        if self._rescan_task is not None:
            tasks.append(self._rescan_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with self._scan_lock:
            for managed in list(self._modules.values()):
                await self._close(managed)
            self._modules.clear()
        for backend in self._backends:
            try:
                await asyncio.to_thread(backend.close)
            except SignerError as exc:
                self._console.warning(f"Signer back-end {backend.name} did not close: {exc}")

    async def _rescan_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.rescan_interval)
            try:
                await self.rescan()
            except Exception as exc:  # a back-end bug must not end hot plug: log, go on
                self._console.error(f"Signer scan failed: {exc!r}")

    # -- discovery --------------------------------------------------------------------------
    async def rescan(self) -> None:
        """Scan every back-end once: open new modules, close vanished ones."""
        async with self._scan_lock:
            for backend in self._backends:
                if self._stopping:
                    return
                await self._rescan_backend(backend)

    async def _rescan_backend(self, backend: SignerBackend) -> None:
        try:
            present = await asyncio.to_thread(backend.scan)
        except (SignerError, OSError) as exc:
            text = str(exc)
            if self._scan_failures.get(backend.name) != text:
                self._console.warning(f"Signer back-end {backend.name} scan failed: {text}")
                self._scan_failures[backend.name] = text
            return
        self._scan_failures.pop(backend.name, None)
        known = {loc for (name, loc) in self._modules if name == backend.name}
        for location in sorted(known - present):
            managed = self._modules.pop((backend.name, location))
            managed.dropped = True
            await self._close(managed)
            self._console.info(f"{managed.label} removed.")
        for key in [k for k in self._open_failures if k[0] == backend.name]:
            if key[1] not in present:
                del self._open_failures[key]
        for key in [k for k in self._dropped if k[0] == backend.name]:
            label = self._dropped.pop(key)
            if key[1] not in present:
                self._console.info(f"{label} removed.")
        for location in sorted(present - known):
            await self._open(backend, location)

    async def _open(self, backend: SignerBackend, location: str) -> None:
        key = (backend.name, location)
        try:
            module = await asyncio.to_thread(backend.open, location)
        except (SignerError, OSError) as exc:
            text = str(exc)
            if self._open_failures.get(key) != text:
                self._console.warning(
                    f"Signer at {backend.name}:{location} could not be opened: {text}"
                )
                self._open_failures[key] = text
            return
        self._open_failures.pop(key, None)
        managed = ManagedModule(module=module, key=key)
        self._modules[key] = managed
        if module.needs_password:
            self._console.info(f"{managed.label} requires password.")
            task = asyncio.create_task(self._unlock(managed), name=f"unlock {location}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            managed.ready = True
            self._console.info(f"{managed.label} found.")

    async def _close(self, managed: ManagedModule) -> None:
        managed.ready = False

        def close() -> None:
            with managed.thread_lock:
                managed.module.close()

        try:
            await asyncio.to_thread(close)
        except (SignerError, OSError) as exc:
            self._console.warning(f"{managed.label} did not close cleanly: {exc}")

    # -- passwords --------------------------------------------------------------------------
    async def _unlock(self, managed: ManagedModule) -> None:
        await self._first_scan_done.wait()  # the start lines first, then the prompts
        async with self._prompt_lock:
            for attempt in range(self._max_password_attempts):
                if managed.dropped or self._stopping:
                    return
                try:
                    password = await asyncio.to_thread(
                        self._passwords.get, f"{managed.label} password: ", attempt
                    )
                except PasswordCancelled:
                    return  # ESC at the prompt: the server stops, nothing more to say
                if managed.dropped or self._stopping:
                    return
                if password is None:
                    if attempt == 0:
                        self._console.warning(
                            f"{managed.label} stays locked: {self._passwords.unavailable()}."
                        )
                    else:
                        self._console.warning(f"{managed.label} stays locked.")
                    return
                if await self._try_password(managed, password):
                    managed.ready = True
                    self._console.info(f"{managed.label} password accepted, ready.")
                    return
                self._console.warning(f"{managed.label} password rejected.")
                if not self._passwords.interactive:
                    self._console.warning(f"{managed.label} stays locked.")
                    return
            self._console.error(
                f"{managed.label} stays locked after {self._max_password_attempts} "
                "wrong passwords (unplug and re-plug it to try again)."
            )

    async def _try_password(self, managed: ManagedModule, password: str) -> bool:
        def unlock() -> None:
            with managed.thread_lock:
                managed.module.unlock(password)

        try:
            await asyncio.to_thread(unlock)
        except WrongPasswordError:
            return False
        except SignerUnavailableError as exc:
            self._console.warning(f"{managed.label} unavailable while unlocking: {exc}")
            await self._drop(managed)
            return False
        except SignerError as exc:
            self._console.error(f"{managed.label} could not check the password: {exc}")
            return False
        return True

    # -- selection and signing --------------------------------------------------------------
    async def wait_first_scan(self, timeout: float = 30.0) -> None:
        """Wait (bounded) until the first scan is over, so early requests see the modules."""
        if not self._first_scan_done.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._first_scan_done.wait(), timeout)

    def modules(self) -> list[ManagedModule]:
        """Every open module (ready or locked)."""
        return list(self._modules.values())

    def _pool(self, key_id: bytes, signer_id: bytes) -> list[ManagedModule]:
        if key_id == NO_KEY_ID:
            return [m for m in self._modules.values() if m.identity.signer_id == signer_id]
        return [m for m in self._modules.values() if m.identity.key_id == key_id]

    def find_identity(self, key_id: bytes, signer_id: bytes) -> SignerIdentity:
        """The identity of the signer a request names; SignerRequestError if absent/locked."""
        pool = self._pool(key_id, signer_id)
        if not pool:
            raise SignerRequestError(
                ReturnCode.SIGNER_NOT_FOUND, self._not_found(key_id, signer_id)
            )
        identity = pool[0].identity
        if identity.signer_id != signer_id:
            raise SignerRequestError(
                ReturnCode.SIGNER_NOT_FOUND,
                f"signer key id {key_id.hex().upper()} is present with signer id "
                f"{identity.signer_id.hex().upper()}, the request names signer id "
                f"{signer_id.hex().upper()}",
            )
        return identity

    def ready_identity(self, key_id: bytes, signer_id: bytes) -> SignerIdentity:
        """Like :meth:`find_identity`, and SIGNER_LOCKED unless a module of the pool is ready
        to sign now (unlocked, not dropped): the readiness answer."""
        identity = self.find_identity(key_id, signer_id)
        pool = self._pool(key_id, signer_id)
        if not any(m.ready and not m.dropped for m in pool):
            raise SignerRequestError(
                ReturnCode.SIGNER_LOCKED,
                f"signer {identity.signer_id.hex().upper()} is locked (enter its password at the"
                " server)",
            )
        return identity

    def _not_found(self, key_id: bytes, signer_id: bytes) -> str:
        present = sorted(
            {
                f"{m.identity.signer_id.hex().upper()}/{m.identity.key_id.hex().upper()}"
                for m in self._modules.values()
            }
        )
        want = (
            f"signer id {signer_id.hex().upper()}"
            if key_id == NO_KEY_ID
            else f"signer id {signer_id.hex().upper()}, key id {key_id.hex().upper()}"
        )
        have = ", ".join(present) if present else "none"
        return f"no signer module for {want}; present (signer id/key id): {have}"

    async def sign(self, key_id: bytes, signer_id: bytes, digest: bytes) -> SignResult:
        """Sign ``digest`` with a ready module of the pool the request names.

        Raises SignerRequestError: SIGNER_NOT_FOUND (no such module), SIGNER_LOCKED (present
        but waiting for its password), SIGNING_FAILED (every module of the pool failed).
        """
        tried: set[ManagedModule] = set()
        last_error = ""
        for _ in range(self._max_sign_attempts):
            pool = self._pool(key_id, signer_id)
            if not pool:
                if tried:
                    break
                raise SignerRequestError(
                    ReturnCode.SIGNER_NOT_FOUND, self._not_found(key_id, signer_id)
                )
            candidates = [m for m in pool if m.ready and not m.dropped and m not in tried]
            if not candidates:
                if tried:
                    break
                raise SignerRequestError(
                    ReturnCode.SIGNER_LOCKED,
                    f"{pool[0].label} is present but waits for its password on the server",
                )
            managed = min(candidates, key=lambda m: (m.pending, m.uses))
            tried.add(managed)
            try:
                signature = await self._sign_with(managed, digest)
            except SignerUnavailableError as exc:
                last_error = f"{managed.label} unavailable: {exc}"
                self._console.warning(f"{managed.label} unavailable, dropped: {exc}")
                await self._drop(managed)
                continue
            except SignerLockedError as exc:
                last_error = f"{managed.label} locked: {exc}"
                managed.ready = False
                continue
            except SignerError as exc:
                raise SignerRequestError(
                    ReturnCode.SIGNING_FAILED, f"{managed.label} failed to sign: {exc}"
                ) from exc
            return SignResult(
                signature=signature,
                identity=managed.identity,
                module_key=managed.key,
                key_checked=managed.module.key_checked_at_load,
            )
        raise SignerRequestError(
            ReturnCode.SIGNING_FAILED,
            f"no module of the pool could sign ({len(tried)} tried); last error: {last_error}",
        )

    async def _sign_with(self, managed: ManagedModule, digest: bytes) -> bytes:
        def sign() -> bytes:
            with managed.thread_lock:
                return managed.module.sign_digest(digest)

        managed.pending += 1
        try:
            async with managed.queue:
                if managed.dropped:
                    raise SignerUnavailableError("module was removed while the request waited")
                if managed.module.signs_inline and managed.thread_lock.acquire(blocking=False):
                    try:  # an in-memory key: cheaper here than a worker-thread round trip
                        signature = managed.module.sign_digest(digest)
                    finally:
                        managed.thread_lock.release()
                else:
                    signature = await asyncio.to_thread(sign)
                managed.uses += 1
                return signature
        finally:
            managed.pending -= 1

    async def _drop(self, managed: ManagedModule) -> None:
        """Forget a failed module; the next scan re-opens it if it is still present."""
        if self._modules.get(managed.key) is managed:
            del self._modules[managed.key]
            self._dropped[managed.key] = managed.label
        if not managed.dropped:
            managed.dropped = True
            await self._close(managed)
