"""The link watch (failoverd/system/linkwatch.py) on real links in network namespaces.

Charter: a veth pair in two fresh namespaces; links set down and up with
``ip``, the watch hearing the kernel's RTMGRP_LINK messages; malformed
datagrams fed through a real socket pair to show they crash nothing.
"""

from __future__ import annotations

import socket
import struct

import pytest
import trio
from _netns import Pair, ip

from failoverd.system import rtnetlink
from failoverd.system.linkwatch import LinkWatcher

pytestmark = [pytest.mark.netns]

WAIT = 10.0  # a bound on each wait for the kernel's message, never an assertion about speed


class Reports:
    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[tuple[str, bool]](100)
        self.seen: list[tuple[str, bool]] = []

    def __call__(self, interface: str, up: bool) -> None:
        self.send.send_nowait((interface, up))

    async def next(self) -> tuple[str, bool]:
        with trio.fail_after(WAIT):
            report = await self.receive.receive()
        self.seen.append(report)
        return report

    def pending(self) -> list[tuple[str, bool]]:
        out = []
        while True:
            try:
                out.append(self.receive.receive_nowait())
            except trio.WouldBlock:
                return out


@pytest.mark.trio
async def test_the_state_at_start_then_admin_down_and_lost_carrier_are_reported(pair: Pair) -> None:
    reports = Reports()
    watcher = LinkWatcher(reports, ["va", "vmissing"], netns=pair.a)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        # Read at start: every watched interface, the missing one down.
        assert sorted(reports.pending()) == [("va", True), ("vmissing", False)]
        ip("-n", pair.a, "link", "set", "va", "down")
        assert await reports.next() == ("va", False)
        ip("-n", pair.a, "link", "set", "va", "up")
        assert await reports.next() == ("va", True)
        # The peer's end goes down: va stays admin-up but loses its carrier.
        ip("-n", pair.b, "link", "set", "vb", "down")
        assert await reports.next() == ("va", False)
        ip("-n", pair.b, "link", "set", "vb", "up")
        assert await reports.next() == ("va", True)
        # An interface that appears (with carrier) counts from then on; removed, it is down.
        ip("-n", pair.a, "link", "add", "vmissing", "type", "veth", "peer", "name", "vother")
        ip("-n", pair.a, "link", "set", "vother", "up")
        ip("-n", pair.a, "link", "set", "vmissing", "up")
        assert await reports.next() == ("vmissing", True)
        ip("-n", pair.a, "link", "del", "vmissing")
        assert await reports.next() == ("vmissing", False)
        nursery.cancel_scope.cancel()
    # Only changes of watched interfaces were reported (vother's never).
    assert all(name in ("va", "vmissing") for name, _ in reports.seen)


@pytest.mark.trio
async def test_an_interface_renamed_away_counts_as_gone(pair: Pair) -> None:
    reports = Reports()
    watcher = LinkWatcher(reports, ["va", "vmark"], netns=pair.a)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        assert sorted(reports.pending()) == [("va", True), ("vmark", False)]
        ip("-n", pair.a, "link", "set", "va", "down")
        assert await reports.next() == ("va", False)
        ip("-n", pair.a, "link", "set", "va", "name", "vrenamed")
        ip("-n", pair.a, "link", "set", "vrenamed", "up")
        # A marker after it (the kernel's messages come in order): the renamed link's up is not va's.
        ip("-n", pair.a, "link", "add", "vmark", "type", "veth", "peer", "name", "vmarkpeer")
        ip("-n", pair.a, "link", "set", "vmarkpeer", "up")
        ip("-n", pair.a, "link", "set", "vmark", "up")
        assert await reports.next() == ("vmark", True)
        ip("-n", pair.a, "link", "set", "vrenamed", "down", "name", "va")
        ip("-n", pair.a, "link", "set", "va", "up")
        assert await reports.next() == ("va", True)
        nursery.cancel_scope.cancel()


def _link_message(name: str, index: int, flags: int, kind: int = rtnetlink.RTM_NEWLINK) -> bytes:
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 1, index, flags, 0)
    body += rtnetlink._attribute(rtnetlink.IFLA_IFNAME, name.encode() + b"\0")
    body += rtnetlink._attribute(rtnetlink.IFLA_OPERSTATE, bytes([rtnetlink.IF_OPER_UP]))
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


@pytest.mark.trio
async def test_malformed_and_unexpected_datagrams_crash_nothing() -> None:
    reports = Reports()
    watcher = LinkWatcher(reports, ["pub0"])
    up = rtnetlink.IFF_UP | rtnetlink.IFF_LOWER_UP
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    with ours, kernel:
        watcher._apply({"pub0": rtnetlink.LinkState("pub0", 4, True)}, whole=True)
        assert reports.pending() == [("pub0", True)]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher._receive, ours)
            kernel.send(b"\xff" * 7)  # shorter than a header: nothing in it
            kernel.send(struct.pack("=IHHII", 9999, rtnetlink.RTM_NEWLINK, 0, 0, 0) + b"\0" * 8)  # a length past the end
            kernel.send(struct.pack("=IHHII", 20, rtnetlink.RTM_NEWLINK, 0, 0, 0) + b"\0" * 4)  # shorter than ifinfomsg
            kernel.send(struct.pack("=IHHII", 20, rtnetlink.RTM_NEWADDR, 0, 0, 0) + b"\0" * 4)  # not a link message
            kernel.send(_link_message("eth9", 9, 0))  # not watched
            kernel.send(_link_message("pub0", 4, rtnetlink.IFF_UP))  # admin-up, no carrier
            assert await reports.next() == ("pub0", False)
            kernel.send(_link_message("pub0", 4, up))
            assert await reports.next() == ("pub0", True)
            nursery.cancel_scope.cancel()
    assert watcher.malformed == 1 and reports.pending() == []


def test_a_link_is_up_only_admin_up_with_carrier_and_an_operstate_that_is_up() -> None:
    up = rtnetlink.IFF_UP | rtnetlink.IFF_LOWER_UP
    assert rtnetlink.link_is_up(up, rtnetlink.IF_OPER_UP)
    assert rtnetlink.link_is_up(up, None) and rtnetlink.link_is_up(up, rtnetlink.IF_OPER_UNKNOWN)
    assert not rtnetlink.link_is_up(rtnetlink.IFF_UP, rtnetlink.IF_OPER_UP)
    assert not rtnetlink.link_is_up(rtnetlink.IFF_LOWER_UP, None)
    assert not rtnetlink.link_is_up(up, 2)  # IF_OPER_DOWN
    (gone,) = rtnetlink.link_events(_link_message("pub0", 4, up, kind=rtnetlink.RTM_DELLINK))
    assert gone == rtnetlink.LinkState("pub0", 4, False, False)
