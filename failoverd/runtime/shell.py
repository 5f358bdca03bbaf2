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
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

import trio

from failoverd.core.actions import Action, Addresses, Result
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
    ) -> None:
        self.core = core
        self.recorder = recorder
        self._on_action = on_action
        self._on_result = on_result
        self.executor = Executor(system, transport, notifier, self._result, self._dispatched, claims)
        # The timer task's scope while it waits (its deadline is the core's
        # next one); None while the timer fires or before it starts.
        self._waiting: trio.CancelScope | None = None
        self._last_fired = -math.inf
        self._input_since_fired = False
        self._spin_reported = False
        self.timer_firings = 0
        self.conflicts_seen = 0

    # --- inputs ----------------------------------------------------------------

    async def receive_from(self, sock: Any) -> None:
        """Feed every datagram ``sock`` (a :class:`~failoverd.runtime.udp.HeartbeatSocket`) receives to the core."""
        while True:
            datagram = await sock.receive()
            self.datagram(datagram.data, datagram.source, datagram.path)

    def datagram(self, data: bytes, source: str, path: str) -> None:
        now = trio.current_time()
        actions = self.core.receive_datagram(now, data, source, path)
        if self.recorder is not None:
            self.recorder.datagram(now, data, source, path, getattr(self.core, "last_verdict", ""))
        self._run(actions)

    def _result(self, result: Result) -> None:
        now = trio.current_time()
        # The follower sees each result just before the core does (the
        # metrics time an action from its dispatch to its result).
        if self._on_result is not None:
            self._on_result(now, result)
        if self.recorder is not None:
            self.recorder.result(now, result)
        self._run(self.core.action_done(now, result))

    def conflict(self, addresses: Addresses) -> None:
        """Another host's ARP claims ``addresses`` (see :mod:`failoverd.runtime.conflicts`)."""
        now = trio.current_time()
        self.conflicts_seen += 1
        if self.recorder is not None:
            self.recorder.conflict(now, addresses)
        self._run(self.core.conflict_seen(now, addresses))

    def health(self, healthy: bool, reason: str = "") -> None:
        """The health checks' combined verdict changed (see :mod:`failoverd.runtime.health`)."""
        now = trio.current_time()
        if self.recorder is not None:
            self.recorder.health(now, healthy, reason)
        self._run(self.core.health_changed(now, healthy, reason))

    def link(self, interface: str, up: bool) -> None:
        """The link of one of the core's interfaces went down or came up (see :mod:`failoverd.system.linkwatch`)."""
        now = trio.current_time()
        if self.recorder is not None:
            self.recorder.link(now, interface, up)
        self._run(self.core.link_changed(now, interface, up))

    def stop(self, *, release: bool = True) -> None:
        """Begin the core's orderly stop (``release``: let go of what it holds).

        The core's actions carry it out like any other; the executor's
        ``stopped`` event is set when the core says it is complete.
        """
        now = trio.current_time()
        if self.recorder is not None:
            self.recorder.stop(now, release)
        self._run(self.core.shutdown(now, release=release))

    def submit(self, actions: list[Action]) -> None:
        """Run actions the shell itself decided on (a tickle on SIGHUP)."""
        self._run(actions)

    def _run(self, actions: list[Action]) -> None:
        self.executor.submit(actions)
        self._input_since_fired = True
        if self._waiting is not None:
            wake = self._next_wake()
            # The master's next heartbeat stays put when a status frame comes
            # in: moving a scope's deadline costs even when it is the same.
            if wake != self._waiting.deadline:
                self._waiting.deadline = wake

    def _dispatched(self, action: Action) -> None:
        if self._on_action is not None:
            self._on_action(trio.current_time(), action)

    def snapshot(self) -> dict[str, Any]:
        return self.core.snapshot(trio.current_time())

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
                now = trio.current_time()
                self._last_fired = now
                self._input_since_fired = False
                self.timer_firings += 1
                if self.recorder is not None:
                    self.recorder.timer(now)
                self.executor.submit(self.core.handle_timer(now))
        finally:
            self._waiting = None
