"""Drives one sans-IO core with real time: inputs in, actions out, one timer.

Every input (a datagram, an action's result, a timer expiry, an ARP
conflict seen on the wire, a change of the health checks' verdict, a link
going down or up, a stop request) is one synchronous call into
the core with ``trio.current_time()`` as ``now``, immediately followed by
handing the returned actions to the :class:`~failoverd.runtime.executor.Executor`
and re-arming the single timer; nothing awaits in between, so the core
sees inputs strictly one at a time and in the order they happened.

Re-arming moves the deadline of the timer task's cancel scope in place; it
does not wake the task. An idle daemon gets an input every interval (the
backup a heartbeat, the master a status frame), and each input used to wake
the timer task only for it to close its scope and open a new one: a task
switch and two cancel scopes per frame, about a fifth of an idle daemon's
CPU. Now the timer task runs only when a deadline is reached.

A core whose ``next_deadline`` stays in the past after ``handle_timer`` would
make the timer spin; the shell never wakes it more often than every
:data:`MIN_TIMER_SPACING` seconds and logs the first occurrence, so such a bug
costs a little CPU instead of the whole machine.

The frame path in a thread (:meth:`CoreShell.run_frames`, what the daemons
run): the heartbeat socket and the timer are served by one plain thread
blocked in ``epoll``, which calls the core, sends the frames the core returns
and hands everything else to the Trio loop, in order. An idle daemon's whole
work is a frame in and a frame out per interval, and a wake-up of the Trio
loop costs four to five times one of a bare thread (measured here, one
datagram every 10 ms into an otherwise idle process: 52–67 µs of CPU per
datagram in a thread blocked in ``recv``, 281–294 µs through Trio's
``wait_readable``: what a cold Trio run loop touches per wake-up, not its
system calls), so the Trio loop now sleeps through the heartbeats and wakes
only for what it is there for: an action to run, a result, a check, a
control request. One re-entrant lock serialises every call into the core
(the thread's and the Trio loop's), the frames sent and the followers, and
whoever reads the core's counters at scrape time. A batch's frames go out
from the thread at once (the executor sends frames first anyway); the rest
of a batch waits in a queue that the Trio loop drains before any input of
its own reaches the core, so the executor sees every action in the order the
core made it. :meth:`run_timer` and :meth:`receive_from` stay for a core on
an in-memory transport and the virtual clock (the tests).

The early add (``adds_early``, heartbeatd): when the frame thread's core
decides to acquire (the backup's counted "I hold nothing", or a timer: any
acquire the core decides here), the thread has the executor's adder thread
add the first address there and then, when nothing is queued or running
before it and no hook must run before the add
(:meth:`~failoverd.runtime.executor.Executor.add_early`,
:meth:`~failoverd.system.takeover.Takeover.add_early`); the acquire is then
queued as always and its task goes on from the add. The hand-over to the
Trio loop, its wake-up and the executor's queue were about a millisecond of
a failback's 2 – 3 ms on a quiet machine (docs/benchmarks.md, seventh pass).
The add is made only for an acquire the core returned (for a failback, on a
status the core counted: sealed after the backup's delete returned,
spec/wire.md): what the core refuses, nothing adds. The frame thread itself
does no netlink request: one may wait on the kernel's RTNL lock, and the
heartbeats must not (see :mod:`failoverd.runtime.executor`).
"""

from __future__ import annotations

import logging
import math
import os
import select
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import trio

from failoverd.core.actions import Acquire, Action, Addresses, Announce, Release, Result
from failoverd.runtime.executor import Executor
from failoverd.runtime.ports import Claims, Notifications, System, Transport

log = logging.getLogger(__name__)

MIN_TIMER_SPACING = 0.001


class Core(Protocol):
    def receive_datagram(self, now: float, data: bytes, source: str, path: str) -> list[Action]: ...

    def handle_timer(self, now: float) -> list[Action]: ...

    def action_done(self, now: float, result: Result) -> list[Action]: ...

    def conflict_seen(self, now: float, addresses: Addresses) -> list[Action]: ...

    def health_changed(self, now: float, healthy: bool, reason: str = "") -> list[Action]: ...

    def link_changed(self, now: float, interface: str, up: bool) -> list[Action]: ...

    def shutdown(self, now: float, *, release: bool = True) -> list[Action]: ...

    def next_deadline(self) -> float | None: ...

    def snapshot(self, now: float) -> dict[str, Any]: ...


class Recorder(Protocol):
    """Sees every input the core gets (for a trace); must never block."""

    def datagram(self, now: float, data: bytes, source: str, path: str, verdict: str) -> None: ...

    def timer(self, now: float) -> None: ...

    def result(self, now: float, result: Result) -> None: ...

    def conflict(self, now: float, addresses: Addresses) -> None: ...

    def health(self, now: float, healthy: bool, reason: str) -> None: ...

    def link(self, now: float, interface: str, up: bool) -> None: ...

    def stop(self, now: float, release: bool) -> None: ...


class FrameSocket(Protocol):
    """What the frame thread needs of the heartbeat socket (:class:`~failoverd.runtime.udp.HeartbeatSocket`)."""

    def fileno(self) -> int: ...

    def receive_nowait(self) -> Any: ...

    def watch_interface_names(self) -> int | None: ...

    def interface_names_changed(self) -> None: ...

    def unwatch_interface_names(self) -> None: ...


class CoreShell:
    def __init__(
        self,
        core: Core,
        *,
        system: System,
        transport: Transport,
        notifier: Notifications | None,
        recorder: Recorder | None = None,
        on_action: Callable[[float, Action], None] | None = None,
        on_result: Callable[[float, Result], None] | None = None,
        claims: Claims | None = None,
        follow_frames: bool = True,
        adds_early: bool = False,
    ) -> None:
        """``on_action`` sees every action dispatched; with ``follow_frames`` off, every one but the frames.

        ``adds_early``: an acquire the frame thread's core decides has its first
        address added by the frame thread at once, when it can be (see the module).
        """
        self.core = core
        self.recorder = recorder
        self._on_action = on_action
        self._on_result = on_result
        self.executor = Executor(system, transport, notifier, self._result, self._dispatched, claims,
                                 follow_frames=follow_frames)
        self._adds_early = adds_early
        self.lock = threading.RLock()
        """Held by every call into the core, from either thread, and by whoever reads it (see the module)."""
        # The timer task's scope while it waits (its deadline is the core's
        # next one); None while the timer fires or before it starts.
        self._waiting: trio.CancelScope | None = None
        self._last_fired = -math.inf
        self._input_since_fired = False
        self._spin_reported = False
        self.timer_firings = 0
        self.conflicts_seen = 0
        # The frame thread's, while it runs (run_frames): the clock both
        # threads read, how the loop wakes it, and what it left for the loop.
        self._clock: trio.abc.Clock | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._wake_fd: int | None = None
        self._stopping = False
        self._pending: deque[list[Action]] = deque()
        self._pending_ready = trio.Event()

    # --- inputs ----------------------------------------------------------------

    async def receive_from(self, sock: Any) -> None:
        """Feed every datagram ``sock`` (a :class:`~failoverd.runtime.udp.HeartbeatSocket`) receives to the core."""
        while True:
            datagram = await sock.receive()
            self.datagram(datagram.data, datagram.source, datagram.path)

    def datagram(self, data: bytes, source: str, path: str) -> None:
        with self.lock:
            now = self._now()
            actions = self.core.receive_datagram(now, data, source, path)
            if self.recorder is not None:
                self.recorder.datagram(now, data, source, path, getattr(self.core, "last_verdict", ""))
            self._run(actions)

    def _result(self, result: Result) -> None:
        with self.lock:
            now = self._now()
            # The follower sees each result just before the core does (the
            # metrics time an action from its dispatch to its result).
            if self._on_result is not None:
                self._on_result(now, result)
            if self.recorder is not None:
                self.recorder.result(now, result)
            self._run(self.core.action_done(now, result))

    def conflict(self, addresses: Addresses) -> None:
        """Another host's ARP claims ``addresses`` (see :mod:`failoverd.runtime.conflicts`)."""
        with self.lock:
            now = self._now()
            self.conflicts_seen += 1
            if self.recorder is not None:
                self.recorder.conflict(now, addresses)
            self._run(self.core.conflict_seen(now, addresses))

    def health(self, healthy: bool, reason: str = "") -> None:
        """The health checks' combined verdict changed (see :mod:`failoverd.runtime.health`)."""
        with self.lock:
            now = self._now()
            if self.recorder is not None:
                self.recorder.health(now, healthy, reason)
            self._run(self.core.health_changed(now, healthy, reason))

    def link(self, interface: str, up: bool) -> None:
        """The link of one of the core's interfaces went down or came up (see :mod:`failoverd.system.linkwatch`)."""
        with self.lock:
            now = self._now()
            if self.recorder is not None:
                self.recorder.link(now, interface, up)
            self._run(self.core.link_changed(now, interface, up))

    def stop(self, *, release: bool = True) -> None:
        """Begin the core's orderly stop (``release``: let go of what it holds).

        The core's actions carry it out like any other; the executor's
        ``stopped`` event is set when the core says it is complete.
        """
        with self.lock:
            now = self._now()
            if self.recorder is not None:
                self.recorder.stop(now, release)
            self._run(self.core.shutdown(now, release=release))

    def submit(self, actions: list[Action]) -> None:
        """Run actions the shell itself decided on (a tickle on SIGHUP)."""
        with self.lock:
            self._run(actions)

    def rekey(self, key: bytes) -> None:
        """The core's :meth:`rekey`, between two of its inputs (SIGHUP after the key file changed)."""
        with self.lock:
            self.core.rekey(key)  # type: ignore[attr-defined]

    def _run(self, actions: list[Action]) -> None:
        # In the Trio thread, with the lock held: what the frame thread left
        # for the executor was made before these, so it goes first.
        self._drain_pending()
        self.executor.submit(actions)
        self._input_since_fired = True
        if self._waiting is not None:
            wake = self._next_wake()
            # The master's next heartbeat stays put when a status frame comes
            # in: moving a scope's deadline costs even when it is the same.
            if wake != self._waiting.deadline:
                self._waiting.deadline = wake
        self._wake_frames()

    def _dispatched(self, action: Action) -> None:
        if self._on_action is not None:
            self._on_action(self._now(), action)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return self.core.snapshot(self._now())

    def _now(self) -> float:
        # Trio's system clock reads perf_counter, which any thread may; the
        # virtual clock of the tests only ever runs without the frame thread.
        return trio.current_time() if self._clock is None else self._clock.current_time()

    # --- the timer -------------------------------------------------------------

    def _next_wake(self) -> float:
        """When the timer must fire next: the core's deadline, never sooner than the spacing allows."""
        deadline = self.core.next_deadline()
        if deadline is None:
            return math.inf
        if deadline < self._last_fired + MIN_TIMER_SPACING:
            # handle_timer(last_fired) dealt with everything due by then,
            # so without an input since, a deadline at or before it is a
            # core bug; one just after it is legitimate and only rounded
            # up. An input may make an old deadline due (a backup that
            # yields to an ARP conflict returns to monitoring with its
            # silence long counted): that one is not a bug.
            if deadline <= self._last_fired and not self._input_since_fired and not self._spin_reported:
                self._spin_reported = True
                log.error(
                    "the core asked to be woken at %.3f, before its last wake-up at %.3f; "
                    "waking it at most every %g s (a bug in the core)",
                    deadline, self._last_fired, MIN_TIMER_SPACING,
                )
            return self._last_fired + MIN_TIMER_SPACING
        return deadline

    def _fire(self, now: float) -> list[Action]:
        """The timer is due: the core's ``handle_timer`` (with the lock held)."""
        self._last_fired = now
        self._input_since_fired = False
        self.timer_firings += 1
        if self.recorder is not None:
            self.recorder.timer(now)
        return self.core.handle_timer(now)

    async def run_timer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Call ``handle_timer`` at each ``next_deadline``; inputs move the deadline (see the module)."""
        task_status.started()
        try:
            while True:
                with trio.CancelScope(deadline=self._next_wake()) as waiting:
                    self._waiting = waiting
                    await trio.sleep_forever()
                # Only the deadline cancels this scope (an outer cancellation
                # propagates past it), so getting here means it was reached.
                self._waiting = None
                with self.lock:
                    self.executor.submit(self._fire(trio.current_time()))
        finally:
            self._waiting = None

    # --- the frame thread (see the module) --------------------------------------

    async def run_frames(self, sock: FrameSocket, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve ``sock``'s datagrams and the core's timer from a thread of their own until cancelled."""
        read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._clock = trio.lowlevel.current_clock()
        self._token = trio.lowlevel.current_trio_token()
        self._stopping = False
        self._wake_fd = write_fd
        if self._adds_early:
            self.executor.start_adder()  # before the first failback, not on its path
        try:
            async with trio.open_nursery() as nursery:

                async def stop_on_cancel() -> None:
                    try:
                        await trio.sleep_forever()
                    finally:
                        self._stopping = True
                        self._wake_frames()

                async def hand_to_executor() -> None:
                    # What the thread queued, in order; whatever is still queued
                    # when this task ends goes before the loop's next input (_run).
                    while True:
                        await self._pending_ready.wait()
                        self._pending_ready = trio.Event()
                        with self.lock:
                            self._drain_pending()

                nursery.start_soon(stop_on_cancel)
                nursery.start_soon(hand_to_executor)
                task_status.started()
                # Not abandoned on cancellation: stop_on_cancel tells the
                # thread to return, and nothing outlives this task.
                await trio.to_thread.run_sync(self._serve_frames, sock, read_fd)
                nursery.cancel_scope.cancel()
        finally:
            with self.lock:
                self._wake_fd = None
            os.close(read_fd)
            os.close(write_fd)

    def halt_frames(self) -> None:
        """From now on no datagram and no timer reaches the core from the frame thread; what it queued
        goes to the executor now, so a stop that drops queued changes sees them (a backup's stop)."""
        with self.lock:
            self._stopping = True
            self._drain_pending()
        self._wake_frames()

    def _halted(self) -> bool:
        return self._stopping

    def _serve_frames(self, sock: FrameSocket, wake_fd: int) -> None:
        """The frame thread: one ``epoll`` wait for a datagram, the timer, a link change or the loop's word."""
        assert self._clock is not None
        clock = self._clock
        # The arrival interfaces' names are kept while this thread runs, and
        # forgotten when the kernel says a link changed (udp.py): no ioctl per frame.
        names_fd = sock.watch_interface_names()
        try:
            self._serve_frames_with(sock, wake_fd, names_fd, clock)
        finally:
            sock.unwatch_interface_names()

    def _serve_frames_with(self, sock: FrameSocket, wake_fd: int, names_fd: int | None, clock: trio.abc.Clock) -> None:
        with select.epoll() as poller:
            poller.register(sock.fileno(), select.EPOLLIN)
            poller.register(wake_fd, select.EPOLLIN)
            if names_fd is not None:
                poller.register(names_fd, select.EPOLLIN)
            with self.lock:
                wake = self._next_wake()
            while True:
                timeout = -1.0 if wake == math.inf else max(0.0, wake - clock.current_time())
                readable = False
                for fd, _events in poller.poll(timeout):
                    if fd == wake_fd:
                        while _read_some(wake_fd):
                            pass
                    elif fd == names_fd:
                        # Before the datagram is read: one that came in after a rename gets the new name.
                        sock.interface_names_changed()
                    else:
                        readable = True
                if self._stopping:
                    return
                # One datagram per wake-up: epoll is level-triggered, so the
                # next wait returns at once while more are queued, and the
                # timer is looked at between any two. Reading on until EAGAIN
                # cost an exception per wake-up, a tenth of an idle master's CPU.
                datagram = sock.receive_nowait() if readable else None
                # One lock, one clock reading and one look at the core's
                # deadline per wake-up (one more when the timer fires):
                # an idle daemon does this once per frame, run cold.
                with self.lock:
                    if self._halted():  # halted while this thread waited for the lock
                        return
                    now = clock.current_time()
                    if datagram is not None:
                        actions = self.core.receive_datagram(now, datagram.data, datagram.source, datagram.path)
                        if self.recorder is not None:
                            verdict = getattr(self.core, "last_verdict", "")
                            self.recorder.datagram(now, datagram.data, datagram.source, datagram.path, verdict)
                        self._input_since_fired = True
                        self._hand_over(actions)
                    wake = self._next_wake()
                    if now >= wake:
                        self._hand_over(self._fire(now))
                        wake = self._next_wake()

    def _hand_over(self, actions: list[Action]) -> None:
        """In the frame thread, with the lock held: frames out now, an early add, the rest queued for the Trio loop."""
        rest = self.executor.send_frames(actions)
        if not rest:
            return
        adder_wakes = self._adds_early and not self._pending and self._add_early(rest)
        self._pending.append(rest)
        if len(self._pending) == 1 and not adder_wakes:
            self._wake_trio()

    def _wake_trio(self) -> None:
        """Any thread: the Trio loop drains what is queued (at once, if it is running)."""
        if self._token is not None:
            # The event is looked up when the callback runs, in the Trio
            # thread: the task may have replaced it since (and a set cannot fail).
            try:
                self._token.run_sync_soon(self._pending_arrived)
            except trio.RunFinishedError:
                pass  # the adder thread, after the daemon's loop ended: nothing is left to drain

    def _add_early(self, actions: list[Action]) -> bool:
        """The first address of an acquire the core just decided, added now by the adder thread (see the
        module); whether it is, and so wakes the Trio loop itself once the add is done.

        Only when the acquire is the batch's first address change and nothing
        is queued for the Trio loop (the caller): no change can be before it.
        The Trio loop is woken after the add, not before: woken, it would run
        Python while the adder waits for the interpreter's lock (measured:
        the failback's gap grew by 1 – 3 ms), and the acquire it would start
        waits for the add anyway. Batches queued meanwhile wait behind this one.
        """
        for action in actions:
            if isinstance(action, Acquire):
                return self.executor.add_early(action, then=self._wake_trio)
            if isinstance(action, (Release, Announce)):
                return False
        return False

    def _pending_arrived(self) -> None:
        self._pending_ready.set()

    def _drain_pending(self) -> None:
        while self._pending:
            self.executor.submit_rest(self._pending.popleft())

    def _wake_frames(self) -> None:
        """Tell the frame thread to look at the core's deadline again (or that it is to stop)."""
        if self._wake_fd is not None:
            try:
                os.write(self._wake_fd, b"\0")
            except BlockingIOError:
                pass  # full: the thread has words enough to wake for


def _read_some(fd: int) -> bool:
    try:
        return bool(os.read(fd, 512))
    except BlockingIOError:
        return False
