"""Ctrl-C handling: SIGINT becomes a flag checked at safe points; LIBERO's reset retry no longer swallows it."""

import os
import signal

import pytest
from robosuite.utils.errors import RandomizationError

from bench.core.interrupt import deferred_interrupts, interrupted, raise_if_interrupted
from envs.libero import _reset_retrying


class FlakyEnv:
    """Stands in for LIBERO's ControlEnv: ``.env.reset`` fails as scripted, then returns an observation."""

    def __init__(self, failures):
        self.failures = list(failures)
        self.env = self
        self.calls = 0

    def reset(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {"obs": self.calls}


def test_reset_retries_randomization_errors_only():
    env = FlakyEnv([RandomizationError("placement"), RandomizationError("placement")])
    assert _reset_retrying(env) == {"obs": 3}
    with pytest.raises(KeyboardInterrupt):
        _reset_retrying(FlakyEnv([RandomizationError("x"), KeyboardInterrupt()]))
    with pytest.raises(ValueError, match="broken"):  # LIBERO's `finally: continue` looped forever on this
        _reset_retrying(FlakyEnv([ValueError("broken")]))


def test_first_sigint_sets_a_flag_second_raises():
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run as a background job of a script
    with deferred_interrupts():
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupted()
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
        with pytest.raises(KeyboardInterrupt):
            _reset_retrying(FlakyEnv([]))  # the reset loop checks the flag too
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert not interrupted()
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back
