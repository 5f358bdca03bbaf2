"""The executor sends a core's frames before it dispatches the rest of the same input.

The backup's "I hold nothing" is what a returning master's add waits for;
the detector lists the state change first, and its log line and followers
used to run before the frame left. Real UDP over loopback (a datagram sent
there is in the receiver's queue when ``sendto`` returns); the check runs
inside the log call of the state change.
"""

from __future__ import annotations

import logging
import socket

import pytest

from failoverd.core.actions import StateChanged, Transmit
from failoverd.runtime.executor import Executor
from failoverd.runtime.memory import MemorySystem
from failoverd.runtime.udp import HeartbeatSocket


class FrameArrivedYet(logging.Handler):
    """At each log line, whether the receiver already has the frame."""

    def __init__(self, receiver: socket.socket) -> None:
        super().__init__()
        self.receiver = receiver
        self.seen: list[tuple[str, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.receiver.recv(2048, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            arrived = True
        except BlockingIOError:
            arrived = False
        self.seen.append((record.getMessage(), arrived))


@pytest.mark.trio
async def test_the_status_frame_leaves_before_the_state_change_is_logged() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, HeartbeatSocket.bind(0, "127.0.0.1") as sender:
        receiver.bind(("127.0.0.2", sender.port))  # the transport sends to its own port at the target
        handler = FrameArrivedYet(receiver)
        logger = logging.getLogger("failoverd.runtime.executor")
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.INFO)
        try:
            dispatched: list[str] = []
            executor = Executor(MemorySystem(), sender, None, on_result=lambda result: None,
                                on_dispatch=lambda action: dispatched.append(type(action).__name__))
            executor.submit([StateChanged("recovering", "monitoring", "released"), Transmit(b"I hold nothing", ("127.0.0.2",))])
        finally:
            logger.setLevel(level)
            logger.removeHandler(handler)
        assert handler.seen == [("state recovering -> monitoring (released)", True)]
        assert dispatched == ["Transmit", "StateChanged"]
        assert receiver.recv(2048) == b"I hold nothing"


@pytest.mark.trio
@pytest.mark.parametrize("frames", [1, 2])
async def test_every_frame_is_sent_once_in_the_cores_order(frames: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, HeartbeatSocket.bind(0, "127.0.0.1") as sender:
        receiver.bind(("127.0.0.2", sender.port))
        executor = Executor(MemorySystem(), sender, None, on_result=lambda result: None)
        payloads = [f"frame {n}".encode() for n in range(frames)]
        executor.submit([StateChanged("a", "b", "c"), *(Transmit(p, ("127.0.0.2",)) for p in payloads)])
        receiver.settimeout(5)
        assert [receiver.recv(2048) for _ in payloads] == payloads
        assert sender.sent == frames
