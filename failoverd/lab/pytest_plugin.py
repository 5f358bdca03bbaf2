"""Pytest fixtures for tests that need a lab.

Load it once for the whole suite from ``tests/conftest.py``::

    pytest_plugins = ["failoverd.lab.pytest_plugin"]

or import the fixtures into a test module (``from failoverd.lab.pytest_plugin import lab``).

* ``lab``: a fresh lab for one test, destroyed afterwards whatever happened.
* ``lab_factory``: ``lab_factory(seed=..., frame_log=...)`` builds further labs for one test.
* ``requires_netns``: a mark that skips a test cleanly unless it can build namespaces (root and
  ``ip`` present); it also applies the ``netns`` marker.

Every lab test is bounded in time: unless the test is already inside a ``time_limit``, the
fixtures raise :class:`LabTimeout` in the test after ``DEFAULT_TIME_LIMIT`` seconds, and the lab is
still removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from failoverd.lab.lab import Lab

DEFAULT_TIME_LIMIT = 120.0


class LabTimeout(Exception):
    """A lab test ran past its time limit."""


def netns_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    return None


requires_netns = pytest.mark.skipif(netns_unavailable_reason() is not None,
                                    reason=netns_unavailable_reason() or "")


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise LabTimeout in the main thread if the block runs longer than ``seconds``.

    Uses SIGALRM; does nothing outside the main thread or when SIGALRM already has a handler.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise LabTimeout(f"lab test exceeded its time limit of {seconds:g} s")

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., Lab]]:
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    labs: list[Lab] = []

    def make(**kwargs: Any) -> Lab:
        lab = Lab(**kwargs)
        labs.append(lab)
        return lab.create()

    with time_limit(DEFAULT_TIME_LIMIT):
        try:
            yield make
        finally:
            errors = []
            for lab in labs:
                try:
                    lab.destroy()
                except Exception as exc:  # report every lab that was not removed, not just the first
                    errors.append(exc)
            if errors:
                raise errors[0]


@pytest.fixture
def lab(lab_factory: Callable[..., Lab]) -> Lab:
    return lab_factory(seed=1)
