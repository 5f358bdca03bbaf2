"""Making a socket inside another network namespace (the lab and the tests).

setns(2) switches only the calling thread, so :func:`in_netns` runs its
function in a fresh thread that is discarded afterwards: the caller's thread
(often one of Trio's reused workers) never changes namespace. A socket keeps
the namespace it was created in, so what is made there can be used here.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

NETNS_RUN_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000

T = TypeVar("T")


class NamespaceMissing(LookupError):
    """The named network namespace does not exist (we never create one)."""


def enter_netns(netns: str) -> None:
    """Move the calling thread (only) into network namespace ``netns``, for good."""
    path = os.path.join(NETNS_RUN_DIR, netns)
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path, "rb") as handle:
        if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns({path}): {os.strerror(code)}")


def in_netns(netns: str | None, make: Callable[[], T]) -> T:
    """Run ``make`` inside network namespace ``netns`` (None: here) and return its result."""
    if netns is None:
        return make()
    path = os.path.join(NETNS_RUN_DIR, netns)
    if not os.path.exists(path):
        raise NamespaceMissing(f"network namespace {netns!r} does not exist")
    outcome: list[T] = []
    failure: list[BaseException] = []

    def switch_and_make() -> None:
        try:
            enter_netns(netns)
            outcome.append(make())
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=switch_and_make, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
