"""Opening a raw AF_PACKET socket (system/packetsocket.bind_packet_socket): its own interface only, from its bind on.

A socket created with its protocol is hooked to every interface at once:
frames from other interfaces that come in before the bind are queued and
read as the bound interface's (and the bind waits for an RCU grace period).
Real namespaces (conftest's ``pair``), real frames on ``lo`` and on the veth;
every wait bounded.
"""

from __future__ import annotations

import socket

import pytest
from _netns import Pair

from failoverd.system.namespace import in_netns
from failoverd.system.netlink import InterfaceMissing
from failoverd.system.packetsocket import bind_packet_socket

ETH_P_ARP = 0x0806
FROM_LO = bytes.fromhex("02000000aa01")
FROM_PEER = bytes.fromhex("02000000bb02")


def arp_frame(source_mac: bytes) -> bytes:
    """A broadcast ARP request from ``source_mac`` (for 192.0.2.1, from 192.0.2.2: TEST-NET, nobody's)."""
    arp = (bytes.fromhex("0001080006040001") + source_mac + socket.inet_aton("192.0.2.2")
           + b"\0" * 6 + socket.inet_aton("192.0.2.1"))
    return b"\xff" * 6 + source_mac + ETH_P_ARP.to_bytes(2, "big") + arp + b"\0" * 18


def sender(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((interface, 0))
    return sock


def test_frames_on_another_interface_before_the_bind_are_not_received(pair: Pair) -> None:
    def open_on_va() -> socket.socket:
        with sender("lo") as on_lo:
            # Between the socket's creation and its bind, an ARP frame comes in on lo.
            return bind_packet_socket("va", ETH_P_ARP, prepare=lambda _sock: on_lo.send(arp_frame(FROM_LO)))

    watched = in_netns(pair.a, open_on_va)
    with watched:
        with in_netns(pair.b, lambda: sender("vb")) as on_vb:
            on_vb.send(arp_frame(FROM_PEER))
        watched.settimeout(10)
        heard = []
        for _ in range(20):  # bounded: the peer's frame comes, after whatever was queued before it
            heard.append(watched.recv(2048)[6:12])
            if heard[-1] == FROM_PEER:
                break
        assert heard[-1] == FROM_PEER
        assert FROM_LO not in heard


def test_a_missing_interface_is_named_and_leaves_no_socket(pair: Pair) -> None:
    prepared: list[socket.socket] = []
    with pytest.raises(InterfaceMissing, match="nosuch0"):
        in_netns(pair.a, lambda: bind_packet_socket("nosuch0", ETH_P_ARP, prepare=prepared.append))
    assert prepared and prepared[0].fileno() == -1
