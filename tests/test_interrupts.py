"""Stopping queries: time limits and the Ctrl-C watcher, on a stand-in connection."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from clirun import fresh_process_signals

from hardstat import interrupts


class Target:
    def __init__(self) -> None:
        self.stopped = threading.Event()

    def interrupt(self) -> None:
        self.stopped.set()


def test_time_limit_interrupts_and_says_why() -> None:
    target = Target()
    with interrupts.cli_session(), interrupts.time_limit(0.2, target):
        assert target.stopped.wait(5)
        assert interrupts.stop_reason() == "timeout" and interrupts.time_limit_seconds() == 0.2
    with interrupts.cli_session():
        assert interrupts.stop_reason() is None  # every command starts afresh


def test_no_limit_and_library_use_change_nothing() -> None:
    target = Target()
    with interrupts.time_limit(0, target):
        time.sleep(0.1)
    assert not target.stopped.is_set()
    with fresh_process_signals():
        interrupts.register(target)  # outside a CLI command: no handler installed
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_interrupts_registered_targets_then_restores() -> None:
    target = Target()
    with fresh_process_signals():
        with interrupts.cli_session():
            interrupts.register(target)
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            assert target.stopped.wait(5) and interrupts.stop_reason() == "interrupt"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.set_wakeup_fd(-1) == -1


def test_session_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDSTAT_TIMEOUT", "0.2")
    target = Target()
    with interrupts.cli_session():
        interrupts.register(target)
        assert target.stopped.wait(5) and interrupts.stop_reason() == "timeout"
