"""The frame path in a thread of its own (CoreShell.run_frames, runtime/shell.py).

Real UDP sockets on loopback and the real clock: the daemons run this path,
so it is tested as they run it. The tests assert who runs what and in which
order, never how fast.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
import trio
from _netns import Pair, ip

from failoverd.core.actions import Acquire, AcquireDone, Action, Release, Result, StateChanged, Transmit
from failoverd.core.addresses import parse_triplet
from failoverd.runtime.executor import Executor
from failoverd.runtime.memory import MemorySystem, MemoryTransport
from failoverd.runtime.shell import CoreShell
from failoverd.runtime.udp import HeartbeatSocket
from failoverd.system.namespace import in_netns

LOOPBACK = "127.0.0.1"


class EchoCore:
    """Answers ``ping`` with a frame ``pong`` (to its own socket) and a state change; wakes ``silence`` after input."""

    def __init__(self, now: float, silence: float = 3600.0) -> None:
        self.silence = silence
        self.last = now
        self.seen: list[tuple[bytes, int]] = []
        self.fired: list[tuple[float, float]] = []
        """(when the timer fired, the last input before it)."""

    def receive_datagram(self, now: float, data: bytes, source: str, path: str) -> list[Action]:
        self.seen.append((data, threading.get_ident()))
        self.last = now
        if data == b"boom":
            raise RuntimeError("a core bug, raised in the frame thread")
        if data == b"ping":
            return [Transmit(b"pong", (LOOPBACK,)), StateChanged("quiet", "answered", "ping")]
        if data == b"first":
            return [StateChanged("a", "b", "from the frame thread")]
        return []

    def handle_timer(self, now: float) -> list[Action]:
        self.fired.append((now, self.last))
        self.last = now
        return []

    def health_changed(self, now: float, healthy: bool, reason: str = "") -> list[Action]:
        return [StateChanged("b", "c", "from the Trio thread")]

    def next_deadline(self) -> float | None:
        return self.last + self.silence

    def snapshot(self, now: float) -> dict[str, Any]:
        return {"seen": len(self.seen)}


class Followed:
    """The shell's on_action follower: every action dispatched, with the thread that dispatched it."""

    def __init__(self) -> None:
        self.actions: list[tuple[Action, int]] = []

    def __call__(self, now: float, action: Action) -> None:
        self.actions.append((action, threading.get_ident()))

    def changes(self) -> list[str]:
        return [a.trigger for a, _ in self.actions if isinstance(a, StateChanged)]


def _send(sock: HeartbeatSocket, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(data, (LOOPBACK, sock.port))


async def _until(condition: Any, what: str) -> None:
    with trio.move_on_after(20):
        while not condition():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"not within 20 s: {what}")


def _shell(core: EchoCore, sock: HeartbeatSocket, followed: Followed) -> CoreShell:
    return CoreShell(core, system=None, transport=sock, notifier=None, on_action=followed)  # type: ignore[arg-type]


@pytest.mark.trio
async def test_a_frame_is_answered_from_the_frame_thread_and_the_rest_runs_in_trio() -> None:
    trio_thread = threading.get_ident()
    followed = Followed()
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:
        core = EchoCore(trio.current_time())
        shell = _shell(core, sock, followed)
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.run_frames, sock)
            _send(sock, b"ping")
            # The answer goes to the shell's own port: the thread reads it back.
            await _until(lambda: [d for d, _ in core.seen] == [b"ping", b"pong"], "the pong read back")
            await _until(lambda: followed.changes() == ["ping"], "the state change dispatched")
            nursery.cancel_scope.cancel()
    assert all(thread != trio_thread for _, thread in core.seen), "the core was called in the Trio thread"
    (frame, frame_thread), (change, change_thread) = followed.actions
    assert isinstance(frame, Transmit) and frame_thread != trio_thread
    assert isinstance(change, StateChanged) and change_thread == trio_thread
    assert sock.sent == 1


@pytest.mark.trio
async def test_a_daemons_followers_see_every_action_but_the_frames() -> None:
    """follow_frames=False (the daemons): the frame still goes out, its follower call does not happen."""
    followed = Followed()
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:
        core = EchoCore(trio.current_time())
        shell = CoreShell(core, system=None, transport=sock, notifier=None,  # type: ignore[arg-type]
                          on_action=followed, follow_frames=False)
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.run_frames, sock)
            _send(sock, b"ping")
            await _until(lambda: [d for d, _ in core.seen] == [b"ping", b"pong"], "the pong read back")
            await _until(lambda: followed.changes() == ["ping"], "the state change dispatched")
            nursery.cancel_scope.cancel()
    assert sock.sent == 1
    assert [type(a) for a, _ in followed.actions] == [StateChanged]


@pytest.mark.trio
async def test_what_the_frame_thread_made_first_reaches_the_executor_first() -> None:
    followed = Followed()
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:
        core = EchoCore(trio.current_time())
        shell = _shell(core, sock, followed)
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.run_frames, sock)
            for round_ in range(1, 21):
                _send(sock, b"first")
                await _until(lambda: len(core.seen) == round_, "the frame read")  # noqa: B023 (awaited at once)
                # At once, in the Trio thread: the thread's batch may still be queued.
                shell.health(False, "a check failed")
            await _until(lambda: len(followed.changes()) == 40, "every change dispatched")
            nursery.cancel_scope.cancel()
    assert followed.changes() == ["from the frame thread", "from the Trio thread"] * 20


@pytest.mark.trio
async def test_the_timer_fires_in_the_frame_thread_never_before_its_deadline() -> None:
    followed = Followed()
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:
        core = EchoCore(trio.current_time(), silence=0.2)
        shell = _shell(core, sock, followed)
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.run_frames, sock)
            for _ in range(5):
                _send(sock, b"heartbeat")
                await trio.sleep(0.05)
            await _until(lambda: len(core.fired) >= 2, "two silences")
            nursery.cancel_scope.cancel()
    assert all(fired - last >= 0.2 for fired, last in core.fired), core.fired
    assert shell.timer_firings == len(core.fired)


@pytest.mark.trio
async def test_a_deadline_moved_earlier_by_the_trio_thread_wakes_the_frame_thread() -> None:
    followed = Followed()
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:
        core = EchoCore(trio.current_time())  # an hour: the thread waits in epoll with that timeout
        shell = _shell(core, sock, followed)
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.run_frames, sock)
            await trio.sleep(0.05)
            with shell.lock:
                core.silence = 0.1
            shell.health(True)  # any input in the Trio thread tells the thread to look again
            await _until(lambda: core.fired, "the earlier deadline")
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_cancelled_the_frame_thread_returns_and_reads_no_more() -> None:
    followed = Followed()
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:
        core = EchoCore(trio.current_time())
        shell = _shell(core, sock, followed)
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.run_frames, sock)
            _send(sock, b"heartbeat")
            await _until(lambda: len(core.seen) == 1, "the frame read")
            nursery.cancel_scope.cancel()
        _send(sock, b"heartbeat")
        await trio.sleep(0.2)
        assert len(core.seen) == 1, "a frame was read after the task was cancelled"
        assert sock.receive_nowait() is not None  # still queued: nobody reads


@pytest.mark.trio
async def test_an_error_in_the_frame_thread_stops_the_task_with_it() -> None:
    followed = Followed()
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:
        core = EchoCore(trio.current_time())
        shell = _shell(core, sock, followed)
        with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="raised in the frame thread"), flatten_subgroups=True):
            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    await nursery.start(shell.run_frames, sock)
                    _send(sock, b"boom")
                    await trio.sleep_forever()


@pytest.mark.trio
async def test_halted_the_frame_thread_hands_over_what_it_queued_and_feeds_the_core_no_more() -> None:
    """A backup's stop: what the thread queued reaches the executor at once, and no input follows it."""
    followed = Followed()
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:
        core = EchoCore(trio.current_time(), silence=0.05)
        shell = _shell(core, sock, followed)
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.run_frames, sock)
            _send(sock, b"first")
            await _until(lambda: len(core.seen) == 1, "the frame read")
            shell.halt_frames()  # in the same step: the task that drains the queue has not run
            assert followed.changes() == ["from the frame thread"]
            fired = len(core.fired)
            _send(sock, b"first")
            await trio.sleep(0.3)  # six of the core's deadlines
            assert len(core.seen) == 1 and len(core.fired) == fired
            nursery.cancel_scope.cancel()


class PathCore(EchoCore):
    """Records the interface each datagram arrived on, as the frame thread reported it."""

    def __init__(self, now: float) -> None:
        super().__init__(now)
        self.paths: list[str] = []

    def receive_datagram(self, now: float, data: bytes, source: str, path: str) -> list[Action]:
        self.paths.append(path)
        return super().receive_datagram(now, data, source, path)


@pytest.mark.trio
@pytest.mark.netns
async def test_the_frame_thread_reports_a_renamed_interface_by_its_new_name(pair: Pair) -> None:
    """The thread keeps interface names (no ioctl per frame) and forgets them when a link changes."""
    ip("-n", pair.a, "addr", "add", "192.0.2.1/24", "dev", "va")
    ip("-n", pair.b, "addr", "add", "192.0.2.2/24", "dev", "vb")
    with in_netns(pair.b, lambda: HeartbeatSocket.bind(0)) as sock, \
            in_netns(pair.a, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sender:
        core = PathCore(trio.current_time())
        shell = _shell(core, sock, Followed())

        async def heard_after_sending(data: bytes) -> None:
            # Resent until it arrives: a link just set up may drop the first (its carrier is coming back).
            with trio.move_on_after(20):
                while not any(d == data for d, _ in core.seen):
                    sender.sendto(data, ("192.0.2.2", sock.port))
                    await trio.sleep(0.05)
                return
            raise AssertionError(f"{data!r} never reached the core")

        async with trio.open_nursery() as nursery:
            await nursery.start(shell.run_frames, sock)
            await heard_after_sending(b"before")  # the name "vb" is now kept
            ip("-n", pair.b, "link", "set", "vb", "down")
            ip("-n", pair.b, "link", "set", "vb", "name", "vb-renamed")
            ip("-n", pair.b, "link", "set", "vb-renamed", "up")
            await heard_after_sending(b"after")
            nursery.cancel_scope.cancel()
    # Nothing arrives while the link is down: every frame before the rename came in on "vb",
    # every one after it on the new name.
    before = sum(1 for d, _ in core.seen if d == b"before")
    assert set(core.paths[:before]) == {"vb"}
    assert core.paths[before:] and set(core.paths[before:]) == {"vb-renamed"}


# --- the early add (heartbeatd: adds_early) ----------------------------------

VIP = parse_triplet("eth0:192.0.2.10/24")


class FailbackCore(EchoCore):
    """Acquires on ``released`` (as a master on the backup's counted "I hold nothing"); ``stale`` it refuses."""

    def __init__(self, now: float) -> None:
        super().__init__(now)
        self.results: list[Result] = []

    def receive_datagram(self, now: float, data: bytes, source: str, path: str) -> list[Action]:
        super().receive_datagram(now, data, source, path)
        if data == b"released":
            return [StateChanged("waiting", "acquiring", "backup_released"), Acquire(frozenset({VIP}))]
        return []  # a stale status, a replay: the core counts nothing and acquires nothing

    def action_done(self, now: float, result: Result) -> list[Action]:
        self.results.append(result)
        return []


async def _failback(system: MemorySystem, *, adds_early: bool = True, before: list[Action] | None = None,
                    gate_release: bool = False) -> tuple[FailbackCore, list[str]]:
    """A stale status, then a counted release, through the frame thread; returns the core and what the
    system had done after the stale status."""
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:
        core = FailbackCore(trio.current_time())
        shell = CoreShell(core, system=system, transport=sock, notifier=None, adds_early=adds_early)
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.executor.run)
            await nursery.start(shell.run_frames, sock)
            if before is not None:
                shell.submit(before)
                await _until(lambda: system.log, "the change before it started")
            _send(sock, b"stale")
            await _until(lambda: len(core.seen) == 1, "the stale status read")
            stale_log = list(system.log)
            _send(sock, b"released")
            if gate_release:
                await _until(lambda: len(core.seen) == 2, "the release read")
                assert system.gate is not None
                system.gate.set()
            await _until(lambda: any(isinstance(r, AcquireDone) for r in core.results), "the acquire's result")
            nursery.cancel_scope.cancel()
    return core, [kind for kind, _ in stale_log]


@pytest.mark.trio
async def test_the_frame_thread_adds_early_only_on_an_acquire_the_core_decided() -> None:
    system = MemorySystem()
    system.adds_early = True
    core, after_stale = await _failback(system)
    assert after_stale == []  # the stale status: the core refused it, nothing was added
    # Added by the adder thread, woken where the core decided (not by the acquire's Trio task),
    # and the task went on from the add.
    assert system.kinds() == ["add-early", "acquire-after-early"]
    assert system.early_threads == ["failoverd-early-add"]
    assert core.results == [AcquireDone(acquired=frozenset({VIP}))]


@pytest.mark.trio
async def test_a_slow_early_add_never_holds_the_frame_thread_up() -> None:
    """Review: the add's netlink requests may wait for the kernel's RTNL lock (another process
    reconfiguring the network); made in the frame thread, they stopped the heartbeats, and the
    backup that had just released saw the master silent and took the address back while the
    master's add completed. The frame thread goes on reading and sending while the add waits."""
    system = MemorySystem()
    system.adds_early = True
    system.early_gate = threading.Event()
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:
        core = FailbackCore(trio.current_time())
        shell = CoreShell(core, system=system, transport=sock, notifier=None, adds_early=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.executor.run)
            await nursery.start(shell.run_frames, sock)
            _send(sock, b"released")
            await _until(lambda: system.early_threads, "the early add begun")
            for n in range(5):
                _send(sock, b"frame %d" % n)
            await _until(lambda: len(core.seen) == 6, "the frames read while the add waits")
            assert system.kinds() == [] and not core.results  # the add still waits; the acquire with it
            system.early_gate.set()
            await _until(lambda: core.results, "the acquire's result")
            nursery.cancel_scope.cancel()
    assert system.kinds() == ["add-early", "acquire-after-early"]
    assert core.results == [AcquireDone(acquired=frozenset({VIP}))]


@pytest.mark.trio
async def test_an_early_add_that_raises_leaves_the_acquire_to_run_whole_and_the_frame_thread_alive() -> None:
    system = MemorySystem()
    system.adds_early = True
    system.early_error = RuntimeError("a reply nothing could parse")
    core, _ = await _failback(system)
    assert system.kinds() == ["acquire"]  # declined: the acquire's task did it all
    assert core.results == [AcquireDone(acquired=frozenset({VIP}))]


@pytest.mark.trio
async def test_without_adds_early_or_with_a_hook_before_the_add_the_acquire_runs_whole_in_trio() -> None:
    system = MemorySystem()
    system.adds_early = True
    await _failback(system, adds_early=False)
    assert system.kinds() == ["acquire"]
    hooked = MemorySystem()  # adds_early off: the system declines, as one with a Test or PreAcq hook does
    await _failback(hooked)
    assert hooked.kinds() == ["acquire"]


@pytest.mark.trio
async def test_no_early_add_while_an_address_change_is_running() -> None:
    """A release still running when the core decides: the acquire waits its turn in the queue, whole."""
    system = MemorySystem()
    system.adds_early = True
    system.gate = trio.Event()
    await _failback(system, before=[Release(frozenset({VIP}))], gate_release=True)
    assert system.kinds() == ["release", "acquire"]
    assert system.max_active == 1
    assert system.early_threads == []


@pytest.mark.trio
async def test_a_stop_never_drops_an_acquire_whose_address_was_added_early() -> None:
    system = MemorySystem()
    system.adds_early = True
    executor = Executor(system, MemoryTransport(), None, on_result=lambda result: None)
    early, later = Acquire(frozenset({VIP})), Release(frozenset({VIP}))
    async with trio.open_nursery() as nursery:
        assert executor.add_early(early)
        assert not executor.add_early(Acquire(frozenset({VIP})))  # one at a time
        executor.submit([early, later])
        assert executor.stop_accepting_changes() == [later]
        with trio.fail_after(20):
            await nursery.start(executor.run)
            await executor.finish_current()
        nursery.cancel_scope.cancel()
    assert system.kinds() == ["add-early", "acquire-after-early"]
