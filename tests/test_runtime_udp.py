"""The heartbeat socket on loopback: what a received frame says about where it came from.

Real sockets on 127.0.0.1, and (IPv6) on a veth pair between two namespaces this test creates;
the daemons' end-to-end tests cover the lab's interfaces.
"""

from __future__ import annotations

import socket

import pytest
import trio
from _netns import Pair, ip

from failoverd.runtime.udp import HeartbeatSocket
from failoverd.system.namespace import in_netns


@pytest.mark.trio
async def test_a_frame_carries_its_sender_and_the_interface_it_arrived_on() -> None:
    with trio.fail_after(10), HeartbeatSocket.bind(0, "127.0.0.1") as sock:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for n in range(3):
                sender.sendto(b"heartbeat %d" % n, ("127.0.0.1", sock.port))
            frames = [await sock.receive() for _ in range(3)]
    assert [f.data for f in frames] == [b"heartbeat 0", b"heartbeat 1", b"heartbeat 2"]
    assert {(f.source, f.path) for f in frames} == {("127.0.0.1", "lo")}


@pytest.mark.trio
async def test_a_receive_waiting_on_an_idle_socket_is_cancellable() -> None:
    with HeartbeatSocket.bind(0, "127.0.0.1") as sock:
        with trio.move_on_after(0.05) as waited:
            await sock.receive()
    assert waited.cancelled_caught


# --- IPv6 (issue 13): a dual-stack socket between two namespaces ------------------


@pytest.mark.trio
@pytest.mark.netns
async def test_dual_stack_socket_names_ipv6_and_link_local_senders_as_configured(pair: Pair) -> None:
    for ns, dev, end in ((pair.a, "va", "a"), (pair.b, "vb", "b")):
        for prefix in ("fe80::", "2001:db8::"):
            ip("-n", ns, "addr", "add", f"{prefix}{end}/64", "dev", dev, "nodad")
    ip("-n", pair.a, "addr", "add", "192.0.2.1/24", "dev", "va")
    ip("-n", pair.b, "addr", "add", "192.0.2.2/24", "dev", "vb")
    with trio.fail_after(10), in_netns(pair.b, lambda: HeartbeatSocket.bind(0, ipv6=True)) as receiver, \
            in_netns(pair.a, lambda: HeartbeatSocket.bind(0, ipv6=True)) as sender:
        sender.port = receiver.port  # send to the receiver's port
        # In the sender's namespace, where its interface names mean something.
        in_netns(pair.a, lambda: sender.send_nowait(b"global", ["2001:db8::b"]))
        in_netns(pair.a, lambda: sender.send_nowait(b"link-local", ["fe80::b%va"]))
        in_netns(pair.a, lambda: sender.send_nowait(b"ipv4", ["192.0.2.2"]))
        # The original's broadcast targets still work from a dual-stack socket (a mixed heartbeatd).
        in_netns(pair.a, lambda: sender.send_nowait(b"broadcast", ["192.0.2.255"]))
        frames = {f.data: f for f in [await receiver.receive() for _ in range(4)]}
    assert sender.sent == 4 and sender.dropped == 0
    assert (frames[b"broadcast"].source, frames[b"broadcast"].path) == ("192.0.2.1", "vb")
    assert (frames[b"global"].source, frames[b"global"].path) == ("2001:db8::a", "vb")
    # The scope is the receiver's interface: what its failoverd is configured with.
    assert (frames[b"link-local"].source, frames[b"link-local"].path) == ("fe80::a%vb", "vb")
    # An IPv4 sender on the dual-stack socket is not reported as ::ffff:192.0.2.1.
    assert (frames[b"ipv4"].source, frames[b"ipv4"].path) == ("192.0.2.1", "vb")
