"""The lab's only way to change the system: the ``ip`` command, always aimed at a named namespace.

Every function here takes the namespace explicitly and passes it as ``ip -n NS`` or
``ip netns exec NS``; nothing can address the root namespace's interfaces by accident. Every call
has a timeout, and a failure raises :class:`NetnsError` carrying the command and ``ip``'s own words.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence

from failoverd.lab.topology import NAMESPACE_RE

IP_TIMEOUT = 10.0


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message holds the command line and its stderr."""


def ip_binary() -> str:
    path = shutil.which("ip")
    if path is None:
        raise NetnsError("the 'ip' command (iproute2) is not installed")
    return path


def _run(argv: Sequence[str], timeout: float = IP_TIMEOUT, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{' '.join(argv)}: no answer within {timeout:g} s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise NetnsError(f"{' '.join(argv)}: exit {done.returncode}: {detail}")
    return done.stdout


def _check_ns(ns: str) -> str:
    # Refuse anything that is not a lab namespace name: a typo must never reach the root namespace.
    if not NAMESPACE_RE.match(ns):
        raise NetnsError(f"{ns!r} is not a lab namespace name")
    return ns


def ip(ns: str, *args: str, timeout: float = IP_TIMEOUT) -> str:
    """``ip -n NS ARGS...``"""
    return _run([ip_binary(), "-n", _check_ns(ns), *args], timeout)


def ip_batch(ns: str, commands: Sequence[str], timeout: float = IP_TIMEOUT) -> None:
    """Several ``ip`` commands in one process, all inside NS (``ip -n NS -batch -``)."""
    if commands:
        _run([ip_binary(), "-n", _check_ns(ns), "-batch", "-"], timeout, stdin="\n".join(commands) + "\n")


def exec_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` inside NS."""
    if not argv:
        raise ValueError("empty command")
    return [ip_binary(), "netns", "exec", _check_ns(ns), *argv]


def list_namespaces() -> list[str]:
    out = _run([ip_binary(), "-json", "netns", "list"])
    if not out.strip():
        return []
    return [entry["name"] for entry in json.loads(out)]


def add_namespace(ns: str) -> None:
    _run([ip_binary(), "netns", "add", _check_ns(ns)])


def delete_namespace(ns: str) -> None:
    """Delete NS; a namespace that is already gone is not an error."""
    if ns in list_namespaces():
        _run([ip_binary(), "netns", "delete", _check_ns(ns)])


def pids(ns: str) -> list[int]:
    """Every process whose network namespace is NS."""
    out = _run([ip_binary(), "netns", "pids", _check_ns(ns)])
    return [int(word) for word in out.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            # A zombie has exited; only its parent's wait() is missing.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def kill_all(ns: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process in NS and wait (bounded) until none is left; return the PIDs killed."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = [pid for pid in pids(ns) if pid != os.getpid()]
        for pid in remaining:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            if pid not in killed:
                killed.append(pid)
        living = [pid for pid in remaining if _alive(pid)]
        if not living:
            return killed
        if time.monotonic() > deadline:
            raise NetnsError(f"processes {living} in {ns} survived SIGKILL for {timeout:g} s")
        time.sleep(0.01)


def links(ns: str) -> dict[str, dict]:
    """``ip -j link show`` inside NS, keyed by interface name."""
    return {entry["ifname"]: entry for entry in json.loads(ip(ns, "-json", "link", "show"))}
