"""The ARP conflict watcher on a real veth pair between two namespaces.

Charter: two fresh namespaces per test (unique names, deleted in a
``finally``), 10.x addresses only, every async test under ``trio.fail_after``.
Namespace "a" is this host (the watcher runs there); "b" is the other host,
which sends the ARP. A negative case is never a wait for silence: packets on
one interface are handled in order, so each test ends its negative cases with
a *sentinel* that must be reported, and only then checks that nothing else was.
Without root the namespace tests skip.
"""

from __future__ import annotations

import ipaddress

import pytest
import trio
from _netns import Pair, ip

from failoverd.core.addresses import Triplet, parse_triplet
from failoverd.system.arp import (
    ARP_REPLY,
    ARP_REQUEST,
    ZERO_MAC,
    Announcer,
    ArpPacket,
    ArpSocket,
    Prober,
    announcement_packet,
    probe_packet,
)
from failoverd.system.arpwatch import ConflictWatcher

pytestmark = [pytest.mark.netns]

LIMIT = 10.0


class Reports:
    """What the watcher reported, in order; waits for one without polling."""

    def __init__(self) -> None:
        self.items: list[frozenset[Triplet]] = []
        self._arrived = trio.Event()

    def __call__(self, triplets: frozenset[Triplet]) -> None:
        self.items.append(triplets)
        self._arrived.set()

    async def until(self, triplet: Triplet) -> None:
        while not any(triplet in item for item in self.items):
            self._arrived = trio.Event()
            await self._arrived.wait()

    @property
    def claimed(self) -> set[Triplet]:
        return set().union(*self.items) if self.items else set()


def garp(mac: bytes, triplet: Triplet) -> ArpPacket:
    return announcement_packet(mac, triplet.address)


async def send(sock: ArpSocket, *packets: ArpPacket) -> None:
    for packet in packets:
        await sock.send(packet)


WATCHED = parse_triplet("va:10.63.0.1/24")
OTHER = parse_triplet("va:10.63.0.2/24")
SENTINEL = parse_triplet("va:10.63.0.9/24")


@pytest.mark.trio
async def test_a_foreign_gratuitous_arp_and_a_foreign_reply_are_reported(pair: Pair) -> None:
    reports = Reports()
    watcher = ConflictWatcher(reports, netns=pair.a)
    watcher.watch([WATCHED, OTHER])
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            assert watcher.interfaces == {"va"}
            async with await ArpSocket.open("va", netns=pair.a) as ours:
                our_mac = ours.mac
            async with await ArpSocket.open("vb", netns=pair.b) as other_host:
                await send(other_host, garp(other_host.mac, WATCHED))
                await reports.until(WATCHED)
                # A reply sent to us alone (not broadcast) claims the address just the same.
                asker = ipaddress.IPv4Address("10.63.0.50")
                await other_host.send(ArpPacket(ARP_REPLY, other_host.mac, OTHER.address, our_mac, asker), our_mac)
                await reports.until(OTHER)
            nursery.cancel_scope.cancel()
    assert reports.items[0] == {WATCHED}
    assert reports.claimed == {WATCHED, OTHER}
    assert watcher.seen == len(reports.items)


@pytest.mark.trio
async def test_the_other_kernel_answering_our_probe_is_a_conflict(pair: Pair) -> None:
    """Not a crafted frame: the other host's own kernel replies for an address it has configured."""
    ip("-n", pair.b, "addr", "add", f"{WATCHED.address}/24", "dev", "vb")
    reports = Reports()
    watcher = ConflictWatcher(reports, netns=pair.a)
    watcher.watch([WATCHED])
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            await Prober(count=2, spacing=0.05, wait=0.2, netns=pair.a).probe([WATCHED])
            await reports.until(WATCHED)
            nursery.cancel_scope.cancel()
    assert reports.claimed == {WATCHED}


@pytest.mark.trio
async def test_our_own_frames_unwatched_addresses_and_probes_are_not_reported(pair: Pair) -> None:
    reports = Reports()
    watcher = ConflictWatcher(reports, netns=pair.a)
    watcher.watch([WATCHED, SENTINEL])
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            # Our own announcements (sent from this host: PACKET_OUTGOING here).
            await Announcer(count=2, spacing=0.01, netns=pair.a).announce([WATCHED])
            async with await ArpSocket.open("va", netns=pair.a) as ours:
                our_mac = ours.mac
            async with await ArpSocket.open("vb", netns=pair.b) as other_host:
                await send(
                    other_host,
                    # RFC 5227 probes for the address: nobody claims it yet.
                    probe_packet(other_host.mac, WATCHED.address),
                    # Another host's ARP for an address we do not watch.
                    garp(other_host.mac, OTHER),
                    ArpPacket(ARP_REQUEST, other_host.mac, OTHER.address, ZERO_MAC, WATCHED.address),
                    # Our own MAC as the sender (e.g. our frame reflected back to us).
                    garp(our_mac, WATCHED),
                    garp(other_host.mac, SENTINEL),
                )
                await reports.until(SENTINEL)
            nursery.cancel_scope.cancel()
    assert reports.items == [frozenset({SENTINEL})]


@pytest.mark.trio
async def test_the_mac_of_any_interface_of_this_host_is_ours(pair: Pair) -> None:
    ip("-n", pair.a, "link", "add", "vx", "type", "veth", "peer", "name", "vy")
    second_mac = bytes.fromhex(
        ip("-n", pair.a, "-br", "link", "show", "dev", "vx").split()[2].replace(":", "")
    )
    reports = Reports()
    watcher = ConflictWatcher(reports, netns=pair.a, own_macs=[bytes.fromhex("02aabbccddee")])
    watcher.watch([WATCHED, SENTINEL])
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            async with await ArpSocket.open("vb", netns=pair.b) as other_host:
                await send(
                    other_host,
                    garp(second_mac, WATCHED),
                    garp(bytes.fromhex("02aabbccddee"), WATCHED),
                    garp(other_host.mac, SENTINEL),
                )
                await reports.until(SENTINEL)
            nursery.cancel_scope.cancel()
    assert reports.items == [frozenset({SENTINEL})]


@pytest.mark.trio
async def test_changes_to_the_watched_set_take_effect(pair: Pair) -> None:
    reports = Reports()
    watcher = ConflictWatcher(reports, netns=pair.a)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            assert watcher.interfaces == frozenset(), "listening while holding nothing"
            async with await ArpSocket.open("vb", netns=pair.b) as other_host:
                watcher.watch([WATCHED])
                while "va" not in watcher.interfaces:
                    await trio.sleep(0.01)
                # The socket is open once listed; the frame sent now reaches it.
                await send(other_host, garp(other_host.mac, OTHER), garp(other_host.mac, WATCHED))
                await reports.until(WATCHED)
                assert reports.claimed == {WATCHED}

                # Same interface, another address: the change applies to the very next packet.
                watcher.watch([OTHER])
                await send(other_host, garp(other_host.mac, WATCHED), garp(other_host.mac, OTHER))
                await reports.until(OTHER)
                assert reports.items == [frozenset({WATCHED}), frozenset({OTHER})]

                # Nothing watched: the interface is closed.
                watcher.watch([])
                while watcher.interfaces:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_missing_interface_is_retried_until_it_exists(pair: Pair) -> None:
    late = parse_triplet("vlate:10.63.1.1/24")
    reports = Reports()
    watcher = ConflictWatcher(reports, netns=pair.a)
    watcher.watch([late])
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)  # started, though the interface cannot be opened yet
            ip("-n", pair.a, "link", "add", "vlate", "type", "veth", "peer", "name", "vpeer", "netns", pair.b)
            ip("-n", pair.a, "link", "set", "vlate", "up")
            ip("-n", pair.b, "link", "set", "vpeer", "up")
            async with await ArpSocket.open("vpeer", netns=pair.b) as other_host:
                # Sent until the watcher's retry has opened the interface and seen one.
                with trio.move_on_after(LIMIT - 1):
                    while not reports.items:
                        await send(other_host, garp(other_host.mac, late))
                        await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    assert reports.claimed == {late}


@pytest.mark.trio
async def test_an_interface_that_goes_down_and_up_is_watched_again(pair: Pair) -> None:
    reports = Reports()
    watcher = ConflictWatcher(reports, netns=pair.a)
    watcher.watch([WATCHED])
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            ip("-n", pair.a, "link", "set", "va", "down")
            ip("-n", pair.a, "link", "set", "va", "up")
            async with await ArpSocket.open("vb", netns=pair.b) as other_host:
                with trio.move_on_after(LIMIT - 1):
                    while not reports.items:
                        await send(other_host, garp(other_host.mac, WATCHED))
                        await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    assert reports.claimed == {WATCHED}


# --- IPv6 (issue 13): Neighbour Discovery ------------------------------------------

WATCHED6 = parse_triplet("va:2001:db8:63::1/64")
OTHER6 = parse_triplet("va:2001:db8:63::2/64")
SENTINEL6 = parse_triplet("va:2001:db8:63::9/64")


@pytest.mark.trio
async def test_a_foreign_neighbour_advertisement_is_reported_and_ipv4_is_watched_beside_it(pair: Pair) -> None:
    from failoverd.system import ndp

    reports = Reports()
    watcher = ConflictWatcher(reports, netns=pair.a)
    watcher.watch([WATCHED6, WATCHED])
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            assert watcher.interfaces == {"va"}
            async with await ndp.NdpSocket.open("vb", netns=pair.b) as other_host:
                await other_host.send(ndp.announcement_packet(other_host.mac, WATCHED6.address))
                await reports.until(WATCHED6)
            async with await ArpSocket.open("vb", netns=pair.b) as other_host:
                await send(other_host, garp(other_host.mac, WATCHED))
                await reports.until(WATCHED)
            nursery.cancel_scope.cancel()
    assert reports.items == [frozenset({WATCHED6}), frozenset({WATCHED})]


@pytest.mark.trio
async def test_the_other_kernel_answering_our_dad_is_a_conflict(pair: Pair) -> None:
    """Not a crafted frame: the other host's own kernel defends an address it has configured."""
    ip("-n", pair.b, "addr", "add", f"{WATCHED6.address}/64", "dev", "vb", "nodad")
    reports = Reports()
    watcher = ConflictWatcher(reports, netns=pair.a)
    watcher.watch([WATCHED6])
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            await Prober(count=2, spacing=0.05, wait=0.2, netns=pair.a).probe([WATCHED6])
            await reports.until(WATCHED6)
            nursery.cancel_scope.cancel()
    assert reports.claimed == {WATCHED6}


@pytest.mark.trio
async def test_our_own_nas_unwatched_addresses_and_dad_probes_are_not_reported(pair: Pair) -> None:
    from failoverd.system import ndp

    reports = Reports()
    watcher = ConflictWatcher(reports, netns=pair.a)
    watcher.watch([WATCHED6, SENTINEL6])
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            await Announcer(count=2, spacing=0.01, netns=pair.a).announce([WATCHED6])
            async with await ndp.NdpSocket.open("va", netns=pair.a) as ours:
                our_mac = ours.mac
            async with await ndp.NdpSocket.open("vb", netns=pair.b) as other_host:
                for packet in (
                    ndp.probe_packet(other_host.mac, WATCHED6.address),  # DAD: nobody claims it yet
                    ndp.announcement_packet(other_host.mac, OTHER6.address),  # not watched
                    ndp.announcement_packet(our_mac, WATCHED6.address),  # our own MAC
                    ndp.announcement_packet(other_host.mac, SENTINEL6.address),
                ):
                    await other_host.send(packet)
                await reports.until(SENTINEL6)
            nursery.cancel_scope.cancel()
    assert reports.items == [frozenset({SENTINEL6})]
