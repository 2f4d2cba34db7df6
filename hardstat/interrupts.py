"""Stopping long queries: Ctrl-C and time limits for DuckDB connections (no heavy imports).

DuckDB runs a query in C++ without returning to Python, so Python's own Ctrl-C handling (a
``KeyboardInterrupt`` once the interpreter runs again) never fires while a query runs, and with
its progress bar off DuckDB does not look for signals itself. While a CLI command runs
(:func:`cli_session`), every connection opened by :func:`hardstat.analysis.logs.connect` is
registered here; the first Ctrl-C then reaches a watcher thread through Python's signal wakeup
file descriptor (written by the C-level handler at once, whatever the main thread is doing) and
the thread calls ``interrupt()`` on the connections, so the query stops within milliseconds
(and keeps calling it every 0.2 s, since DuckDB forgets an interrupt that arrives before a query
executes). A
second Ctrl-C ends the process at once (exit 130). :func:`time_limit` interrupts a connection
the same way when a query runs past its limit. :func:`stop_reason` tells the error translation
why a query stopped (``"interrupt"`` or ``"timeout"``).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_session = False
_targets: list[Any] = []
_reason: str | None = None
_limit: float | None = None
_armed: _Watcher | None = None
_session_timer: threading.Timer | None = None


def stop_reason() -> str | None:
    """``"interrupt"`` after Ctrl-C, ``"timeout"`` after a time limit ran out, else None."""
    return _reason


def time_limit_seconds() -> float | None:
    """The limit that ran out (for the message), when :func:`stop_reason` is ``"timeout"``."""
    return _limit


def _stop(reason: str) -> None:
    global _reason
    with _lock:
        if _reason is None:
            _reason = reason
        targets = list(_targets)
    for target in targets:
        with contextlib.suppress(Exception):  # a closed connection cannot be interrupted
            target.interrupt()


@contextlib.contextmanager
def cli_session() -> Iterator[None]:
    """The span of one CLI command: connections registered during it can be stopped by
    Ctrl-C; afterwards the previous signal handling is back."""
    global _session, _reason, _limit, _session_timer
    _session, _reason, _limit = True, None, None
    try:
        yield
    finally:
        _disarm()
        if _session_timer is not None:
            _session_timer.cancel()
            _session_timer = None
        with _lock:
            _targets.clear()
        _session, _reason = False, None  # a stop ends with its command


def register(target: Any) -> None:
    """Make ``target`` (anything with ``interrupt()``, e.g. a DuckDB connection) stoppable by
    Ctrl-C during a CLI command; outside one (library use) nothing changes. With
    ``HARDSTAT_TIMEOUT=SECONDS`` in the environment, the command's queries are stopped once
    that many seconds have passed since the first connection opened (the analyses and the
    report have no ``--timeout`` option of their own)."""
    global _session_timer, _limit
    if not _session:
        return
    with _lock:
        _targets.append(target)
    _arm()
    seconds = _env_seconds("HARDSTAT_TIMEOUT")
    if seconds and _session_timer is None:
        _limit = seconds
        _session_timer = threading.Timer(seconds, _stop, ("timeout",))
        _session_timer.daemon = True
        _session_timer.start()


def _env_seconds(name: str) -> float | None:
    try:
        value = float(os.environ.get(name, "") or 0)
    except ValueError:
        return None
    return value if value > 0 else None


@contextlib.contextmanager
def time_limit(seconds: float | None, target: Any) -> Iterator[None]:
    """Interrupt ``target`` if the block runs longer than ``seconds`` (None or 0: no limit)."""
    global _limit
    if not seconds:
        yield
        return
    _limit = seconds

    def expire() -> None:
        _stop("timeout")
        with contextlib.suppress(Exception):
            target.interrupt()

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


class _Watcher:
    """SIGINT through the wakeup fd: the first interrupts the registered connections, the
    second ends the process."""

    def __init__(self) -> None:
        self.read, self.write = os.pipe()
        os.set_blocking(self.write, False)
        os.set_blocking(self.read, False)
        self.previous_fd = signal.set_wakeup_fd(self.write, warn_on_full_buffer=False)
        self.previous_handler = signal.signal(signal.SIGINT, self._handler)
        self.done = threading.Event()
        self.presses = 0
        self.thread = threading.Thread(target=self._watch, name="hardstat-interrupt", daemon=True)
        self.thread.start()

    @staticmethod
    def _handler(signum: int, frame: Any) -> None:
        _stop("interrupt")
        raise KeyboardInterrupt

    def _watch(self) -> None:
        while not self.done.is_set():
            ready, _, _ = select.select([self.read], [], [], 0.2)
            if not ready:
                if _reason == "interrupt":
                    # DuckDB forgets an interrupt that lands before its query executes (a new
                    # query clears the flag): after Ctrl-C, stop whatever runs next as well
                    _stop("interrupt")
                continue
            try:
                data = os.read(self.read, 64)
            except OSError:
                continue
            for signum in data:
                if signum != signal.SIGINT:
                    continue
                self.presses += 1
                _stop("interrupt")
                if self.presses >= 2:
                    with contextlib.suppress(OSError):
                        os.write(2, b"Error: interrupted (Ctrl-C twice)\n")
                    os._exit(130)

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=1)
        signal.signal(signal.SIGINT, self.previous_handler)
        signal.set_wakeup_fd(self.previous_fd)
        for fd in (self.read, self.write):
            with contextlib.suppress(OSError):
                os.close(fd)


def _arm() -> None:
    """Install the watcher once, in the main thread, where nobody else handles SIGINT and no
    wakeup fd is in use (an event loop's, say)."""
    global _armed
    if _armed is not None or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return
    previous = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(previous)
    if previous != -1:
        return
    _armed = _Watcher()


def _disarm() -> None:
    global _armed
    if _armed is not None:
        _armed.close()
        _armed = None
