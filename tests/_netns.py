"""A veth pair between two network namespaces, for the tests of the system adapters.

Namespaces get unique names (``fo<hex>a``/``fo<hex>b``) and are deleted in a
``finally``, also when the test fails. Used through the ``pair`` fixture in
conftest.py.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10).stdout


@dataclass
class Pair:
    a: str  # namespace holding interface "va"
    b: str  # namespace holding interface "vb", the other end of the veth


@contextmanager
def veth_pair() -> Iterator[Pair]:
    suffix = secrets.token_hex(3)
    names = [f"fo{suffix}a", f"fo{suffix}b"]
    created: list[str] = []
    try:
        for name in names:
            ip("netns", "add", name)
            created.append(name)
        ip("-n", names[0], "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", names[1])
        for name, dev in zip(names, ("va", "vb")):
            ip("-n", name, "link", "set", "lo", "up")
            ip("-n", name, "link", "set", dev, "up")
        yield Pair(*names)
    finally:
        for name in created:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def addresses_on(ns: str, dev: str) -> set[str]:
    out = ip("-n", ns, "-o", "-4", "addr", "show", "dev", dev)
    return {line.split()[3] for line in out.splitlines()}


def is_root() -> bool:
    return os.geteuid() == 0
