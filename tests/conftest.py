"""Shared pytest set-up.

Testing charter: network traffic only on loopback or inside namespaces a test
creates (and always removes); timing by virtual clocks in the core tests and by
generous ``fail_after`` bounds around real processes; no test asserts speed.
"""

pytest_plugins = ["failoverd.lab.pytest_plugin"]

from collections.abc import Iterator

import pytest
from _netns import Pair, is_root, veth_pair


@pytest.fixture
def pair() -> Iterator[Pair]:
    """Two namespaces joined by a veth pair va/vb, both up (root only)."""
    if not is_root():
        pytest.skip("needs root to create network namespaces")
    with veth_pair() as created:
        yield created


@pytest.fixture(autouse=True)
def package_logger_restored() -> Iterator[None]:
    """A test that configures the daemons' logging (logsetup.configure: propagation off, its
    own handler and listener thread) leaves the package logger as it found it, so that a later
    test's caplog still sees the records, whatever order the tests run in."""
    import logging

    from failoverd.cli import logsetup

    logger = logging.getLogger(logsetup.PACKAGE_LOGGER)
    saved = (logger.propagate, logger.level, list(logger.handlers))
    yield
    if (logger.propagate, logger.level, list(logger.handlers)) != saved:
        logsetup.shutdown()
        logger.propagate, logger.level = saved[0], saved[1]
        logger.handlers[:] = saved[2]


def pytest_configure(config: pytest.Config) -> None:
    # An input a core's table does not expect is a bug: raise it here
    # (daemons count and alarm it instead; see failoverd.core.machine).
    from failoverd.core.machine import DeclaredMachine

    DeclaredMachine.strict = True
