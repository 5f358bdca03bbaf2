"""The heartbeat socket on loopback: what a received frame says about where it came from.

Real sockets on 127.0.0.1; the daemons' end-to-end tests cover the lab's interfaces.
"""

from __future__ import annotations

import socket

import pytest
import trio

from failoverd.runtime.udp import HeartbeatSocket


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
