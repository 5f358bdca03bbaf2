"""ARP probes and announcements on a real veth pair between two namespaces.

Charter: two fresh namespaces per test (unique names, deleted in a
``finally``), 10.x addresses only, every async test under ``trio.fail_after``.
The peer namespace's kernel answers ARP for its own addresses, which is the
"other host" of every probe here. Without root the namespace tests skip.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets

import pytest
import trio

from failoverd.core.addresses import parse_triplet
from failoverd.system.arp import (
    ARP_REPLY,
    ARP_REQUEST,
    ZERO_MAC,
    Announcer,
    ArpPacket,
    ArpSocket,
    Prober,
    announcement_packet,
    build_frame,
    conflicts,
    parse_frame,
    probe_packet,
)
from failoverd.system.namespace import NamespaceMissing

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
ADDRESS = ipaddress.IPv4Address("10.62.0.9")


# --- frames and the conflict rule (no privileges needed) --------------------


from _netns import Pair, ip


def test_frames_round_trip_and_are_padded() -> None:
    for packet in (probe_packet(MAC_A, ADDRESS), announcement_packet(MAC_A, ADDRESS)):
        frame = build_frame(MAC_A, packet)
        assert len(frame) == 60
        assert frame[:6] == b"\xff" * 6 and frame[6:12] == MAC_A
        assert parse_frame(frame) == packet


def test_probe_and_announcement_fields() -> None:
    probe = probe_packet(MAC_A, ADDRESS)
    assert (probe.op, str(probe.sender_ip), probe.target_mac, probe.target_ip) == (ARP_REQUEST, "0.0.0.0", ZERO_MAC, ADDRESS)
    assert probe.is_probe
    announcement = announcement_packet(MAC_A, ADDRESS)
    assert announcement.sender_ip == announcement.target_ip == ADDRESS
    assert not announcement.is_probe


def test_parse_rejects_what_is_not_ipv4_arp() -> None:
    frame = build_frame(MAC_A, probe_packet(MAC_A, ADDRESS))
    assert parse_frame(frame[:30]) is None
    assert parse_frame(frame[:12] + b"\x08\x00" + frame[14:]) is None  # IPv4 ethertype
    assert parse_frame(frame[:21] + b"\x09" + frame[22:]) is None  # ARP op 9


def test_conflict_rule() -> None:
    own = frozenset({MAC_A})
    other = ipaddress.IPv4Address("10.62.0.10")
    reply = ArpPacket(ARP_REPLY, MAC_B, ADDRESS, MAC_A, ipaddress.IPv4Address("0.0.0.0"))
    assert conflicts(reply, ADDRESS, own)
    assert not conflicts(reply, other, own)
    assert conflicts(announcement_packet(MAC_B, ADDRESS), ADDRESS, own)
    assert conflicts(probe_packet(MAC_B, ADDRESS), ADDRESS, own)  # simultaneous probe
    assert not conflicts(probe_packet(MAC_B, other), ADDRESS, own)
    assert not conflicts(probe_packet(MAC_A, ADDRESS), ADDRESS, own)
    assert not conflicts(announcement_packet(MAC_A, ADDRESS), ADDRESS, own)


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        Prober(count=-1)
    with pytest.raises(ValueError, match="wait"):
        Prober(wait=0)
    with pytest.raises(ValueError, match="spacing"):
        Announcer(spacing=-1)


# --- on the wire ------------------------------------------------------------

@pytest.mark.netns
@pytest.mark.trio
async def test_probe_is_answered_by_the_host_that_holds_the_address(pair: Pair) -> None:
    ip("-n", pair.b, "addr", "add", "10.62.0.9/24", "dev", "vb")
    held, free = parse_triplet("va:10.62.0.9/24"), parse_triplet("va:10.62.0.10/24")
    with trio.fail_after(10):
        answered = await Prober(count=2, spacing=0.05, wait=0.3, netns=pair.a).probe([held, free])
    assert answered == {held}


@pytest.mark.netns
@pytest.mark.trio
async def test_probe_is_silent_when_nobody_holds_the_address(pair: Pair) -> None:
    ip("-n", pair.b, "addr", "add", "10.62.1.1/24", "dev", "vb")  # the peer is alive, other address
    with trio.fail_after(10):
        answered = await Prober(count=2, spacing=0.05, wait=0.3, netns=pair.a).probe([parse_triplet("va:10.62.1.2/24")])
    assert answered == frozenset()


@pytest.mark.netns
@pytest.mark.trio
async def test_our_own_copy_of_the_address_is_not_a_conflict(pair: Pair) -> None:
    ip("-n", pair.a, "addr", "add", "10.62.2.1/24", "dev", "va")
    with trio.fail_after(10):
        answered = await Prober(count=2, spacing=0.05, wait=0.3, netns=pair.a).probe([parse_triplet("va:10.62.2.1/24")])
    assert answered == frozenset()


@pytest.mark.netns
@pytest.mark.trio
async def test_a_simultaneous_probe_from_another_host_is_a_conflict(pair: Pair) -> None:
    triplet = parse_triplet("va:10.62.3.1/24")
    prober = Prober(count=3, spacing=0.1, wait=0.3, netns=pair.a)
    with trio.fail_after(10):
        async with await ArpSocket.open("vb", netns=pair.b) as rival:
            async with trio.open_nursery() as nursery:
                async def probe_from_b() -> None:
                    for _ in range(5):
                        await rival.send(probe_packet(rival.mac, triplet.address))
                        await trio.sleep(0.05)
                nursery.start_soon(probe_from_b)
                answered = await prober.probe([triplet])
    assert answered == {triplet}


@pytest.mark.netns
@pytest.mark.trio
async def test_a_link_that_goes_down_mid_probe_ends_the_probe_not_the_caller(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="failoverd.system.arp")
    prober = Prober(count=2, spacing=0.1, wait=1.0, netns=pair.a)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            async def pull_the_cable() -> None:
                await trio.sleep(0.4)
                await trio.to_thread.run_sync(ip, "-n", pair.a, "link", "set", "va", "down")
            nursery.start_soon(pull_the_cable)
            answered = await prober.probe([parse_triplet("va:10.62.5.1/24")])
    assert answered == frozenset()
    assert "stopped listening" in caplog.text or "cannot probe" in caplog.text


@pytest.mark.netns
@pytest.mark.trio
async def test_probe_on_a_missing_interface_is_logged_and_silent(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="failoverd.system.arp")
    with trio.fail_after(10):
        answered = await Prober(count=1, wait=0.1, netns=pair.a).probe([parse_triplet("nosuchif:10.62.4.1")])
    assert answered == frozenset()
    assert "cannot probe nosuchif:10.62.4.1" in caplog.text


@pytest.mark.netns
@pytest.mark.trio
async def test_gratuitous_arp_reaches_the_other_side(pair: Pair) -> None:
    triplets = [parse_triplet("va:10.62.5.1/24"), parse_triplet("va:10.62.5.2")]
    seen: list[ArpPacket] = []
    with trio.fail_after(10):
        async with await ArpSocket.open("vb", netns=pair.b) as capture:
            async with await ArpSocket.open("va", netns=pair.a) as sender_side:
                va_mac = sender_side.mac

            async def collect() -> None:
                while len(seen) < 6:
                    packet = await capture.receive()
                    if packet is not None and packet.sender_mac == va_mac:
                        seen.append(packet)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect)
                await trio.sleep(0.05)  # the capture is listening
                await Announcer(count=3, spacing=0.05, netns=pair.a).announce(triplets)
                with trio.fail_after(3):
                    while len(seen) < 6:
                        await trio.sleep(0.01)
    assert sorted(str(p.sender_ip) for p in seen) == ["10.62.5.1"] * 3 + ["10.62.5.2"] * 3
    assert all(p.op == ARP_REQUEST and p.target_ip == p.sender_ip for p in seen)


@pytest.mark.netns
@pytest.mark.trio
async def test_announce_reports_started_after_the_first_round(pair: Pair) -> None:
    # The second round is due only after 60 s: start() returning inside the
    # 10 s bound proves it reported after the first, and cancelling proves the
    # rest of the burst is cancellable.
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(Announcer(count=2, spacing=60.0, netns=pair.a).announce, [parse_triplet("va:10.62.6.1")])
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_count_of_zero_turns_probing_and_announcing_off() -> None:
    triplet = parse_triplet("nosuchif:10.62.7.1")  # never touched, so no socket and no error
    with trio.fail_after(5):
        assert await Prober(count=0).probe([triplet]) == frozenset()
        await Announcer(count=0).announce([triplet])


@pytest.mark.trio
async def test_a_missing_namespace_is_an_error_and_is_not_created() -> None:
    name = f"fo{secrets.token_hex(3)}x"
    with trio.fail_after(5):
        with pytest.raises(NamespaceMissing, match=name):
            await ArpSocket.open("va", netns=name)
    assert not os.path.exists(f"/run/netns/{name}")  # noqa: ASYNC240


WITHOUT_A_WORKER = """
import threading
import trio
from failoverd.core.addresses import parse_triplet
from failoverd.system.arp import ArpSocket
from failoverd.system.arpwatch import ConflictWatcher

async def main():
    with trio.fail_after(10):
        async with await ArpSocket.open("va") as sock:
            assert sock.interface == "va"
        watcher = ConflictWatcher(lambda report: None)
        watcher.watch([parse_triplet("va:10.62.9.1/24")])
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            assert watcher.interfaces == frozenset({"va"})
            nursery.cancel_scope.cancel()

trio.run(main)
print(" ".join(t.name for t in threading.enumerate() if t.name.startswith("Trio thread")) or "none")
"""


def test_in_the_callers_namespace_sockets_open_without_a_worker_thread(pair: Pair) -> None:
    # The daemons run in their own namespace (netns None): opening an ARP
    # socket or the conflict watcher then wakes no worker thread, which would
    # contend for the GIL with the failback's address change beside it. A
    # fresh interpreter in the namespace, so no other test's threads count.
    import subprocess
    import sys

    done = subprocess.run(["ip", "netns", "exec", pair.a, sys.executable, "-c", WITHOUT_A_WORKER],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["none"]


# --- opening and closing (system/packetsocket.py) ---------------------------------


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.netns
@pytest.mark.trio
async def test_closing_wakes_a_receiver_and_closes_the_descriptor(pair: Pair) -> None:
    """The close is handed to a thread (the kernel's grace period must not stop every task), yet a task
    waiting on the socket is woken at once, and the descriptor is closed: no leak after many rounds."""
    with trio.fail_after(20):
        sock = await ArpSocket.open("va", netns=pair.a)
        woken: list[BaseException] = []

        async def receive() -> None:
            try:
                await sock.receive()
            except trio.ClosedResourceError as error:
                woken.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.sleep(0.05)  # the receiver is parked on the socket
            sock.close()
        assert len(woken) == 1
        sock.close()  # a second close is harmless

        before = _open_descriptors()
        for _ in range(50):
            async with await ArpSocket.open("va", netns=pair.a):
                pass
        while _open_descriptors() > before:  # the closing threads finish within the bound above
            await trio.sleep(0.01)
    assert _open_descriptors() <= before


@pytest.mark.netns
def test_closing_outside_a_trio_run_closes_at_once(pair: Pair) -> None:
    sock = trio.run(ArpSocket.open, "va", pair.a)
    descriptor = sock._sock.fileno()
    sock.close()
    with pytest.raises(OSError):
        os.fstat(descriptor)
