"""Telling systemd how the daemon is doing: readiness, status, reloads, stop, watchdog.

The protocol is sd_notify(3): one datagram of ``KEY=value`` lines to the
AF_UNIX socket named in ``$NOTIFY_SOCKET`` (a leading ``@`` means Linux's
abstract namespace). It is a handful of lines, documented as a stable
interface, so it is written here rather than taken from a library: the
python-systemd bindings need libsystemd and a compiler, and the small pure
Python packages for it are unmaintained. Nothing here ever blocks the daemon:
the socket is non-blocking, and a datagram systemd cannot take right now is
dropped (the next state change sends the state again).

Without ``$NOTIFY_SOCKET`` (not started by systemd, or ``Type=simple``) every
call does nothing. The variables are removed from the environment once read,
as ``sd_notify(unset_environment=1)`` does, so hooks and mail never inherit
them and cannot speak for the daemon.

Watchdog: with ``WatchdogSec=`` in the unit, systemd sets ``$WATCHDOG_USEC``
(and ``$WATCHDOG_PID``); :meth:`ServiceManager.run_watchdog` sends
``WATCHDOG=1`` at half that period from a task of the Trio loop, so a loop
that hangs stops the pings and systemd restarts the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

import trio

log = logging.getLogger(__name__)


class ServiceManager:
    """The daemon's line to systemd (or to nobody).

    Resource handling: one datagram socket, opened on the first message,
    closed by :meth:`close`.

    Error handling: a socket path that cannot be reached is logged once and
    the notification is dropped; nothing is raised to the caller.
    """

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.pop("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env.pop("WATCHDOG_USEC", ""), env.pop("WATCHDOG_PID", ""))
        self._sock: socket.socket | None = None
        self._failing = False
        self._status = ""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``fields`` as one message (``ready=1`` → ``READY=1``); True if it was sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{name.upper()}={value}" for name, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message, self.address)
        except OSError as error:
            if not self._failing:
                self._failing = True
                log.warning("cannot notify systemd at %s: %s", self.address, error.strerror or error)
            return False
        if self._failing:
            self._failing = False
            log.info("notifying systemd again")
        return True

    def ready(self, status: str) -> None:
        """Sockets are bound and the state is known."""
        self._status = status
        self.notify(ready=1, status=status)

    def status(self, status: str) -> None:
        """The state in words, on every change (``systemctl status`` shows it)."""
        if status != self._status:
            self._status = status
            self.notify(status=status)

    def reloading(self) -> None:
        # MONOTONIC_USEC lets Type=notify-reload units tell this reload from an older one.
        self.notify(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def reloaded(self) -> None:
        self.notify(ready=1, status=self._status)

    def stopping(self) -> None:
        self.notify(stopping=1, status="stopping")

    async def run_watchdog(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Ping the watchdog at half its period until cancelled (returns at once without one)."""
        task_status.started()
        if self.address is None or self.watchdog_interval is None:
            return
        period = self.watchdog_interval / 2
        while True:
            self.notify(watchdog=1)
            await trio.sleep(period)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # the abstract namespace
    if value.startswith("/"):
        return value
    log.warning("ignoring NOTIFY_SOCKET=%r: neither an absolute path nor @abstract", value)
    return None


def _watchdog_interval(usec: str, pid: str) -> float | None:
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. the launcher that exec'd us would have our pid)
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a number of microseconds", usec)
        return None
    if value <= 0:
        return None
    return value / 1_000_000
