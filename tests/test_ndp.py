"""Duplicate Address Detection and unsolicited Neighbour Advertisements (IPv6's
ARP probe and gratuitous ARP) on a real veth pair between two namespaces.

Charter: as tests/test_arp.py: two fresh namespaces per test (deleted in a
``finally``), documentation-prefix addresses (2001:db8::/32) only, every async
test under ``trio.fail_after``. The peer namespace's kernel is the oracle for
the frames: it answers our Solicitations and takes our Advertisements into
its neighbour table only if their checksums and fields are right (it drops
anything else without a word). Without root the namespace tests skip.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct

import pytest
import trio
from _netns import Pair, ip

from failoverd.core.addresses import parse_triplet
from failoverd.system import ndp
from failoverd.system.arp import Announcer, Prober
from failoverd.system.namespace import in_netns

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
ADDRESS = ipaddress.IPv6Address("2001:db8:62::9")


def nodad(ns: str, dev: str, address: str) -> None:
    ip("-n", ns, "addr", "add", address, "dev", dev, "nodad")


# --- frames and the conflict rule (no privileges needed) --------------------


def test_probe_frame_is_rfc_4862s() -> None:
    frame = ndp.build_frame(ndp.probe_packet(MAC_A, ADDRESS))
    # Ethernet: to the solicited-node group's MAC, IPv6, from our MAC.
    assert frame[:6] == bytes.fromhex("3333ff000009") and frame[6:12] == MAC_A and frame[12:14] == b"\x86\xdd"
    version, length, next_header, hop_limit, src, dst = struct.unpack_from("!IHBB16s16s", frame, 14)
    assert (version >> 28, length, next_header, hop_limit) == (6, 24, 58, 255)
    assert ipaddress.IPv6Address(src) == ipaddress.IPv6Address("::")
    assert ipaddress.IPv6Address(dst) == ipaddress.IPv6Address("ff02::1:ff00:9")
    # ICMPv6 type 135, code 0, the target, and no source link-layer option.
    assert frame[54:56] == bytes([135, 0]) and frame[62:78] == ADDRESS.packed and len(frame) == 78
    packet = ndp.parse_frame(frame)
    assert packet is not None and packet.is_probe and packet.target == ADDRESS and packet.claimed is None


def test_announcement_frame_overrides_and_names_our_mac() -> None:
    frame = ndp.build_frame(ndp.announcement_packet(MAC_A, ADDRESS, router=True))
    assert frame[:6] == bytes.fromhex("333300000001")
    packet = ndp.parse_frame(frame)
    assert packet is not None
    assert packet.kind == ndp.NEIGHBOUR_ADVERTISEMENT and packet.source == packet.target == ADDRESS
    assert packet.destination == ndp.ALL_NODES and packet.lladdr == MAC_A
    assert packet.flags == ndp.FLAG_OVERRIDE | ndp.FLAG_ROUTER
    plain = ndp.parse_frame(ndp.build_frame(ndp.announcement_packet(MAC_A, ADDRESS)))
    assert plain is not None and plain.flags == ndp.FLAG_OVERRIDE


def test_checksum_is_rfc_4443s() -> None:
    # A checksum over the whole message (with the checksum in place) folds to zero.
    packet = ndp.announcement_packet(MAC_A, ADDRESS)
    body = ndp.build_frame(packet)[54:]
    assert ndp.checksum(packet.source, packet.destination, body) == 0
    assert ndp.checksum(packet.source, packet.destination, body[:2] + b"\0\0" + body[4:]) == struct.unpack_from(
        "!H", body, 2)[0]


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f[:21] + b"\xfe" + f[22:],  # hop limit 254: may have crossed a router
        lambda f: f[:56] + bytes([f[56] ^ 1]) + f[57:],  # checksum
        lambda f: f[:55] + b"\x01" + f[56:],  # code 1
        lambda f: f[:12] + b"\x08\x00" + f[14:],  # not IPv6
        lambda f: f[:60],  # cut short
        lambda f: f[:20] + b"\x11" + f[21:],  # UDP, not ICMPv6
    ],
)
def test_invalid_frames_are_ignored(damage) -> None:
    frame = ndp.build_frame(ndp.announcement_packet(MAC_A, ADDRESS))
    assert ndp.parse_frame(frame) is not None
    assert ndp.parse_frame(damage(frame)) is None


def test_a_probe_with_a_source_lladdr_option_is_invalid() -> None:
    packet = ndp.probe_packet(MAC_A, ADDRESS)
    bad = ndp.NdpPacket(packet.kind, MAC_A, packet.source, packet.destination, packet.target, 0, MAC_A)
    assert ndp.parse_frame(ndp.build_frame(bad)) is None


def test_conflict_rule() -> None:
    own = frozenset({MAC_A})
    answer = ndp.announcement_packet(MAC_B, ADDRESS)
    assert ndp.conflicts(answer, ADDRESS, own)
    assert not ndp.conflicts(answer, ipaddress.IPv6Address("2001:db8:62::10"), own)
    assert not ndp.conflicts(ndp.announcement_packet(MAC_A, ADDRESS), ADDRESS, own)  # our own
    assert ndp.conflicts(ndp.probe_packet(MAC_B, ADDRESS), ADDRESS, own)  # someone probing at the same time
    solicitation_from_it = ndp.NdpPacket(ndp.NEIGHBOUR_SOLICITATION, MAC_B, ADDRESS,
                                         ndp.solicited_node(ADDRESS), ipaddress.IPv6Address("2001:db8:62::1"))
    assert ndp.conflicts(solicitation_from_it, ADDRESS, own)


def test_solicited_node_group() -> None:
    assert ndp.solicited_node(ipaddress.IPv6Address("2001:db8::12:3456")) == ipaddress.IPv6Address("ff02::1:ff12:3456")
    assert ndp.multicast_mac(ipaddress.IPv6Address("ff02::1:ff12:3456")) == bytes.fromhex("3333ff123456")


# --- on the wire ---------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.trio
async def test_dad_is_answered_by_the_host_that_holds_the_address(pair: Pair) -> None:
    nodad(pair.b, "vb", "2001:db8:62::9/64")
    held, free = parse_triplet("va:2001:db8:62::9/64"), parse_triplet("va:2001:db8:62::10/64")
    with trio.fail_after(10):
        answered = await Prober(count=2, spacing=0.05, wait=0.3, netns=pair.a).probe([held, free])
    assert answered == {held}


@pytest.mark.netns
@pytest.mark.trio
async def test_dad_is_silent_when_nobody_holds_the_address(pair: Pair) -> None:
    nodad(pair.b, "vb", "2001:db8:62:1::1/64")  # the peer is alive, other address
    with trio.fail_after(10):
        answered = await Prober(count=2, spacing=0.05, wait=0.3, netns=pair.a).probe(
            [parse_triplet("va:2001:db8:62:1::2/64")])
    assert answered == frozenset()


@pytest.mark.netns
@pytest.mark.trio
async def test_our_own_copy_of_the_address_is_not_a_conflict(pair: Pair) -> None:
    nodad(pair.a, "va", "2001:db8:62:2::1/64")
    with trio.fail_after(10):
        answered = await Prober(count=2, spacing=0.05, wait=0.3, netns=pair.a).probe(
            [parse_triplet("va:2001:db8:62:2::1/64")])
    assert answered == frozenset()


@pytest.mark.netns
@pytest.mark.trio
async def test_a_simultaneous_dad_from_another_host_is_a_conflict(pair: Pair) -> None:
    triplet = parse_triplet("va:2001:db8:62:3::1/64")
    prober = Prober(count=3, spacing=0.1, wait=0.3, netns=pair.a)
    with trio.fail_after(10):
        async with await ndp.NdpSocket.open("vb", netns=pair.b) as rival:
            async with trio.open_nursery() as nursery:
                async def probe_from_b() -> None:
                    for _ in range(5):
                        await rival.send(ndp.probe_packet(rival.mac, triplet.address))
                        await trio.sleep(0.05)
                nursery.start_soon(probe_from_b)
                answered = await prober.probe([triplet])
    assert answered == {triplet}


@pytest.mark.netns
@pytest.mark.trio
async def test_a_mixed_pair_is_probed_each_by_its_own_protocol(pair: Pair) -> None:
    nodad(pair.b, "vb", "2001:db8:62:4::1/64")
    ip("-n", pair.b, "addr", "add", "10.62.40.1/24", "dev", "vb")
    v6, v4 = parse_triplet("va:2001:db8:62:4::1/64"), parse_triplet("va:10.62.40.1/24")
    free6, free4 = parse_triplet("va:2001:db8:62:4::2/64"), parse_triplet("va:10.62.40.2/24")
    with trio.fail_after(10):
        answered = await Prober(count=2, spacing=0.05, wait=0.3, netns=pair.a).probe([v6, v4, free6, free4])
    assert answered == {v6, v4}


def neighbour(ns: str, dev: str, address: str) -> str:
    return ip("-n", ns, "-6", "neigh", "show", address, "dev", dev).strip()


@pytest.mark.netns
@pytest.mark.trio
async def test_advertisements_move_the_neighbours_cache_to_us(pair: Pair) -> None:
    """The peer's kernel had the address at another MAC; our unsolicited NA (override) moves it."""
    nodad(pair.b, "vb", "2001:db8:62:5::b/64")
    for address in ("2001:db8:62:5::1", "2001:db8:62:5::2"):
        ip("-n", pair.b, "-6", "neigh", "replace", address, "lladdr", "02:00:00:00:00:99", "dev", "vb", "nud", "stale")
    mac_a = ip("-n", pair.a, "link", "show", "va").split("link/ether ")[1].split()[0]
    with trio.fail_after(10):
        await Announcer(count=2, spacing=0.05, netns=pair.a).announce(
            [parse_triplet("va:2001:db8:62:5::1/64"), parse_triplet("va:2001:db8:62:5::2")])
    for address in ("2001:db8:62:5::1", "2001:db8:62:5::2"):
        entry = neighbour(pair.b, "vb", address)
        assert f"lladdr {mac_a}" in entry, entry
        assert "router" not in entry


@pytest.mark.netns
@pytest.mark.trio
async def test_a_forwarding_interface_advertises_as_a_router(pair: Pair) -> None:
    nodad(pair.b, "vb", "2001:db8:62:6::b/64")
    ip("-n", pair.b, "-6", "neigh", "replace", "2001:db8:62:6::1", "lladdr", "02:00:00:00:00:99", "dev", "vb",
       "nud", "stale")
    ip("netns", "exec", pair.a, "sysctl", "-qw", "net.ipv6.conf.va.forwarding=1")
    with trio.fail_after(10):
        await Announcer(count=1, netns=pair.a).announce([parse_triplet("va:2001:db8:62:6::1/64")])
    assert "router" in neighbour(pair.b, "vb", "2001:db8:62:6::1")


@pytest.mark.netns
@pytest.mark.trio
async def test_the_socket_sees_neighbour_discovery_only(pair: Pair) -> None:
    """The kernel's filter drops every other IPv6 frame: a datagram does not wake the listener."""
    nodad(pair.a, "va", "2001:db8:62:7::a/64")
    nodad(pair.b, "vb", "2001:db8:62:7::b/64")
    ip("-n", pair.a, "-6", "neigh", "replace", "2001:db8:62:7::b", "lladdr",
       ip("-n", pair.b, "link", "show", "vb").split("link/ether ")[1].split()[0], "dev", "va", "nud", "permanent")
    seen: list[bytes] = []
    with trio.fail_after(10):
        async with await ndp.NdpSocket.open("vb", netns=pair.b) as capture:
            raw = capture._sock
            async with trio.open_nursery() as nursery:
                async def collect() -> None:
                    while True:
                        data, _ = await raw.recvfrom(2048)
                        seen.append(data)
                nursery.start_soon(collect)
                def send_datagrams() -> None:
                    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
                        for _ in range(3):
                            udp.sendto(b"not neighbour discovery", ("2001:db8:62:7::b", 9))

                await trio.to_thread.run_sync(in_netns, pair.a, send_datagrams)
                async with await ndp.NdpSocket.open("va", netns=pair.a) as sender:
                    await sender.send(ndp.announcement_packet(sender.mac, ipaddress.IPv6Address("2001:db8:62:7::a")))
                with trio.fail_after(3):
                    while not seen:
                        await trio.sleep(0.01)
                await trio.sleep(0.1)
                nursery.cancel_scope.cancel()
    kinds = {(frame[20], frame[54]) for frame in seen}  # (next header, ICMPv6 type)
    assert kinds <= {(58, ndp.NEIGHBOUR_SOLICITATION), (58, ndp.NEIGHBOUR_ADVERTISEMENT)}, kinds
    assert (58, ndp.NEIGHBOUR_ADVERTISEMENT) in kinds


@pytest.mark.netns
@pytest.mark.trio
async def test_dad_on_a_missing_interface_is_logged_and_silent(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="failoverd.system.arp")
    with trio.fail_after(10):
        answered = await Prober(count=1, wait=0.1, netns=pair.a).probe([parse_triplet("nosuchif:2001:db8:62::1")])
    assert answered == frozenset()
    assert "cannot probe nosuchif:2001:db8:62::1" in caplog.text
