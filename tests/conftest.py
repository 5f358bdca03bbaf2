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


def pytest_configure(config: pytest.Config) -> None:
    # An input a core's table does not expect is a bug: raise it here
    # (daemons count and alarm it instead; see failoverd.core.machine).
    from failoverd.core.machine import DeclaredMachine

    DeclaredMachine.strict = True
