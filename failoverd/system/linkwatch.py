"""The links of the interfaces a daemon's addresses live on: up or down, as the kernel says.

Theory of operation: one ``NETLINK_ROUTE`` socket joined to the kernel's link
multicast group (``RTMGRP_LINK``) hears every ``RTM_NEWLINK`` (a link's flags,
carrier or operstate changed) and ``RTM_DELLINK`` (an interface was removed)
of its network namespace. An interface counts as *down* when it is not
admin-up (``IFF_UP``), has no carrier (``IFF_LOWER_UP``), has an operstate
other than up (or unknown, what drivers without one say), or does not exist.
The state is read once at start (a dump, after joining the group, so no change
falls between the two) and every watched interface's state is reported then;
after that only changes are reported, to ``report(interface, up)``.

Why watch at all: the kernel keeps an IPv4 address on a down link, so a
host whose links were cut keeps its failover address configured, and when the
links return it answers for it beside the peer that took over meanwhile. The
cores step down (or release) on a down link; see :meth:`failoverd.core.master.Master.link_changed`.

Error handling: nothing the kernel sends crashes the watcher. A socket
that cannot be opened is logged and tried again every :data:`REOPEN_DELAY`;
nothing is reported meanwhile (the core goes on as without a link watch). A datagram
whose framing is malformed is logged (at most once per :data:`LOG_EVERY`)
and skipped; a socket that overran (``ENOBUFS``: changes were lost) is
re-synchronised with a fresh dump, reporting what changed meanwhile; any
other error on the socket is logged and the socket reopened after
:data:`REOPEN_DELAY`, also with a fresh dump. An interface renamed away
from a watched name counts as gone.

Resource handling: :meth:`LinkWatcher.run` owns its socket; it is closed
when the run ends (cancelled).
"""

from __future__ import annotations

import errno
import logging
import math
import socket
from collections.abc import Callable, Iterable

import trio

from failoverd.system.namespace import in_netns
from failoverd.system.rtnetlink import RTMGRP_LINK, LinkState, RouteSocket, link_events

log = logging.getLogger(__name__)

REOPEN_DELAY = 1.0
"""Seconds before a socket that failed is opened again (and the state read afresh)."""

LOG_EVERY = 10.0
"""At most one log line about a malformed datagram in this many seconds."""

_RECEIVE_SIZE = 1 << 16

LinkReport = Callable[[str, bool], None]
"""Called with an interface's name and whether its link is up now."""


def _open_group(netns: str | None) -> tuple[socket.socket, dict[str, LinkState]]:
    """The multicast socket (non-blocking) and every link's state, read after joining the group."""

    def make() -> tuple[socket.socket, dict[str, LinkState]]:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
        try:
            sock.bind((0, RTMGRP_LINK))
            with RouteSocket.open() as rt:
                return sock, rt.link_states()
        except BaseException:
            sock.close()
            raise

    return in_netns(netns, make)


def _read_states(netns: str | None) -> dict[str, LinkState]:
    def make() -> dict[str, LinkState]:
        with RouteSocket.open() as rt:
            return rt.link_states()

    return in_netns(netns, make)


class LinkWatcher:
    """Reports the links of ``interfaces`` to ``report`` (see the module); in namespace ``netns`` if given."""

    def __init__(self, report: LinkReport, interfaces: Iterable[str], *, netns: str | None = None) -> None:
        self._report = report
        self.interfaces = frozenset(interfaces)
        self.netns = netns
        self.up: dict[str, bool] = {}
        """The last state reported for each watched interface."""
        self._names: dict[int, str] = {}
        """Interface index -> the watched name it had (to see a rename away from it)."""
        self.malformed = 0
        self.resyncs = 0
        self._logged_at = -math.inf

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch until cancelled; started once every interface's state at start has been reported."""
        started = False
        while True:
            try:
                sock, states = await trio.to_thread.run_sync(_open_group, self.netns)
            except OSError as error:
                # Nothing is reported: the core goes on as it would without a link
                # watch (a watch that cannot start must not make a master release).
                log.error("cannot watch the links of %s: %s (retrying every %g s)",
                          ", ".join(sorted(self.interfaces)), error, REOPEN_DELAY)
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(REOPEN_DELAY)
                continue
            with sock:
                self._apply(states, whole=True)
                if not started:
                    started = True
                    task_status.started()
                try:
                    await self._receive(sock)
                except OSError as error:
                    log.error("link watch failed: %s; reading the links afresh in %g s", error, REOPEN_DELAY)
            await trio.sleep(REOPEN_DELAY)

    async def _receive(self, sock: socket.socket) -> None:
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = sock.recv(_RECEIVE_SIZE)
            except BlockingIOError:
                continue
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    raise
                # The kernel dropped changes for us: what is the state now?
                self.resyncs += 1
                log.warning("link changes were lost (the socket overran): reading the links afresh")
                self._apply(await trio.to_thread.run_sync(_read_states, self.netns), whole=True)
                continue
            try:
                events = link_events(data)
            except OSError as error:
                self.malformed += 1
                now = trio.current_time()
                if now >= self._logged_at + LOG_EVERY:
                    self._logged_at = now
                    log.warning("ignoring a malformed link message (%s); %d so far", error, self.malformed)
                continue
            self._apply({event.name: event for event in events}, whole=False)

    def _apply(self, states: dict[str, LinkState], *, whole: bool) -> None:
        """Report the watched interfaces whose state changed (``whole``: ``states`` is every link there is)."""
        seen: dict[str, bool] = {}
        for state in states.values():
            previous = self._names.get(state.index)
            if previous is not None and previous != state.name and state.present:
                seen.setdefault(previous, False)  # renamed away from the watched name
                del self._names[state.index]
            if state.name in self.interfaces:
                seen[state.name] = state.up
                if state.present:
                    self._names[state.index] = state.name
                else:
                    self._names.pop(state.index, None)
        if whole:
            for name in self.interfaces - states.keys():
                seen[name] = False  # no such interface
        for name in sorted(seen):
            up = seen[name]
            if self.up.get(name) != up:
                first = name not in self.up
                self.up[name] = up
                if not (first and up):
                    log.log(logging.INFO if up else logging.WARNING, "link %s %s", name,
                            "up" if up else "down (not up, no carrier, or missing)")
                self._report(name, up)
