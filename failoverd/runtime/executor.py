"""Carries out a core's actions: address changes strictly in order, everything else without waiting.

How each action runs, and why:

- ``Acquire``, ``Release``, ``Announce`` go into one queue worked by one
  task, so two address changes never overlap and each result reaches the
  core in the order the core asked for them. A release's result reaches
  the core as soon as its addresses are gone, before its PostRel hooks run
  (the backup's "I hold nothing" status is what a returning master waits
  for); the next change still starts only after those hooks.
- An early add (:meth:`Executor.add_early`, heartbeatd's failback): the
  frame thread, where the core decided to acquire, wakes the executor's
  adder thread, which has the system add the first address at once when no
  address change is running or queued and no hook must run before it; the
  ``Acquire`` then goes through the queue like any other, and its task waits
  for that add and goes on from it (log lines, gratuitous ARP, PostAcq hooks,
  the other addresses). The add is not made in the frame thread itself: a
  netlink request can wait for the kernel's RTNL lock (another process
  reconfiguring the network) for as long as it likes, and the frame thread
  must go on sending heartbeats meanwhile, or the backup that has just
  released would see the master silent and take the address back while the
  master's add completes (review). Such an acquire is never dropped by a
  stop: its address may be on the host, and only its result tells the core.
- ``Probe`` runs in a task of its own: an ARP probe lasts a good part of a
  second, and heartbeats must keep reaching the core meanwhile (a heartbeat
  during the probe is what ends a false suspicion). Its result comes back to
  the core as an event, like any other.
- ``Transmit`` is sent at once, never queued behind a slow acquire: the
  backup's status frame is what lets a returning master wait for the release.
  It is also sent before the other actions of the same input are dispatched
  (the core lists the state change first): the backup's "I hold nothing"
  then leaves before the state change's log line and followers, which
  the returning master's add would otherwise wait behind.
- ``Notify`` and mailed ``Alarm`` are handed to the notifier, which queues
  them (bounded) and sends them one at a time in a task of its own, each
  under its timeout: mail never delays a takeover.
- ``Alarm`` is logged at its level; ``StateChanged`` is logged, and both are
  kept in the timeline.
- ``Claim`` and ``ReleaseClaim`` (witness mode, spec/witness.md) run in
  tasks of their own through the :class:`~failoverd.runtime.ports.Claims`
  port, each bounded: a hung etcd never delays a heartbeat or an address
  change. A granted claim is renewed by a task of its own, one renewal in
  flight, the next sent a renew period after the previous one, each answer
  reported as a result, until the claim is given back or found lost. The
  renewal task starts before the grant is reported, so a ``ReleaseClaim``
  the core answers the grant with always finds it. ``Reach`` (does etcd answer
  us? for ``--etcd-unreachable keep``'s confirmations, and for heartbeatd's failback under
  either choice) is one bounded read in a task of its own.
- ``Stopped`` (the core finished its stop) sets :attr:`Executor.stopped`,
  which the daemon's stop waits for.

Resource handling: :meth:`Executor.run` owns every task it starts; cancelling
it cancels an address change in progress only at the system port's own
cancellation points (the shutdown path lets the current change finish, see
:meth:`Executor.finish_current`).

Error handling: an exception from the system port other than the results it
reports is a bug: it propagates and stops the daemon, rather than leaving the
core believing an address change is still in flight.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from failoverd.core.actions import (
    Acquire,
    Action,
    Alarm,
    Announce,
    Claim,
    Notify,
    Probe,
    Reach,
    Release,
    ReleaseClaim,
    ReleaseDone,
    Result,
    StateChanged,
    Stopped,
    Transmit,
)
from failoverd.core.addresses import names
from failoverd.runtime.ports import Claims, Notifications, System, Transport
from failoverd.system.takeover import EarlyAdd

log = logging.getLogger(__name__)

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}

AddressChange = Acquire | Release | Announce


MAIL_REPEAT = 600.0
"""Seconds before the same alarm text is mailed again."""


class Executor:
    """Runs actions for one core through the ports (:mod:`failoverd.runtime.ports`).

    Every result goes to ``on_result`` as it arrives (the shell feeds it to
    the core); ``on_dispatch`` sees every action as it is dispatched (for the
    followers: the timeline, the metrics, the conflict feed). Neither may block.
    """

    def __init__(
        self,
        system: System,
        transport: Transport,
        notifier: Notifications | None,
        on_result: Callable[[Result], None],
        on_dispatch: Callable[[Action], None] | None = None,
        claims: Claims | None = None,
        *,
        follow_frames: bool = True,
    ) -> None:
        self.system = system
        self.claims = claims
        self.transport = transport
        self.notifier = notifier
        self._on_result = on_result
        self._on_dispatch = on_dispatch
        # A daemon's followers look at no frame (follow_frames=False): not
        # calling them per frame spares an idle daemon a chain of calls per interval.
        self._on_frame = on_dispatch if follow_frames else None
        self._queue_in, self._queue_out = trio.open_memory_channel[AddressChange](math.inf)
        self._background: trio.Nursery | None = None
        self._current: AddressChange | None = None
        self._idle = trio.Event()
        self._idle.set()
        self._accepting_changes = True
        self.pending_changes = 0
        self.probes_running = 0
        self._mailed: dict[str, float] = {}
        self.stopped = trio.Event()
        """Set when the core says its stop is complete (a ``Stopped`` action)."""
        self._renewing: trio.CancelScope | None = None
        self.claim_tasks = 0
        """Claims and give-backs in flight (the stop waits for the give-back)."""
        self._claims_idle = trio.Event()
        self._claims_idle.set()
        self._early: _EarlySlot | None = None
        """An acquire whose first add was handed to the adder thread (add_early), until its task takes it on."""
        self._adder: queue.SimpleQueue[_EarlySlot | None] | None = None
        """The adder thread's requests, once it runs (the first early add starts it)."""

    @property
    def current(self) -> AddressChange | None:
        """The address change being carried out now, if any."""
        return self._current

    # --- dispatch (synchronous: called right after the core returns) ---------

    def submit(self, actions: list[Action]) -> None:
        # Frames first (see the module), then the rest in the core's order.
        self.submit_rest(self.send_frames(actions))

    def send_frames(self, actions: list[Action]) -> list[Action]:
        """Send the frames among ``actions`` (never waits; any thread); return the others, in order."""
        rest: list[Action] = []
        for action in actions:
            if isinstance(action, Transmit):
                if self._on_frame is not None:
                    self._on_frame(action)
                self.transport.send_nowait(action.payload, action.targets)
            else:
                rest.append(action)
        return rest

    def submit_rest(self, actions: list[Action]) -> None:
        """Run actions that are not frames, in order (the Trio thread)."""
        for action in actions:
            if self._on_dispatch is not None:
                self._on_dispatch(action)
            if isinstance(action, StateChanged):
                log.info(
                    "state %s -> %s (%s)", action.source, action.dest, action.trigger,
                    extra={"state": action.dest, "transition": f"{action.source} -> {action.dest}",
                           "reason": action.trigger},
                )
            elif isinstance(action, Alarm):
                log.log(_LEVELS.get(action.level, logging.ERROR), "%s", action.message,
                        extra={"path": action.path, "addresses": action.addresses})
                if action.mail:
                    self._notify(action)
            elif isinstance(action, Notify):
                log.info("notifying: %s is %s (%s)", action.peer, action.direction, names(action.addresses))
                self._notify(action)
            elif isinstance(action, Probe):
                self._start(self._probe, action)
            elif isinstance(action, (Acquire, Release, Announce)):
                self._enqueue(action)
            elif isinstance(action, Claim):
                self._start(self._claim, action)
            elif isinstance(action, ReleaseClaim):
                self._stop_renewing()
                self._start(self._release_claim, action)
            elif isinstance(action, Reach):
                self._start(self._reach, action)
            elif isinstance(action, Stopped):
                self.stopped.set()
            else:
                raise TypeError(f"the executor does not know how to run {action!r}")

    def add_early(self, action: Acquire, then: Callable[[], None] | None = None) -> bool:
        """Have the adder thread add ``action``'s first address now, if nothing stands before it; whether it will.

        Any thread, with the shell's lock held, before ``action`` is submitted
        (see the module); it does no I/O itself. Nothing stands before it when
        no address change is running or queued (every one is queued with the
        shell's lock held; a change that is ending may still count: then this
        declines) and the executor takes changes. The system may still decline
        (a hook must run before the add): the acquire then runs whole.
        ``then`` is called in the adder thread once the add is done (or declined).
        """
        if not self._accepting_changes or self.pending_changes or self._early is not None:
            return False
        adder = self.start_adder()
        self._early = _EarlySlot(action, then)
        adder.put(self._early)
        return True

    def start_adder(self) -> queue.SimpleQueue[_EarlySlot | None]:
        """The adder thread's requests, the thread started if it is not running (idle, it waits in ``get``)."""
        if self._adder is None:
            self._adder = queue.SimpleQueue()
            threading.Thread(target=self._add_early_serially, args=(self._adder,), name="failoverd-early-add",
                             daemon=True).start()
        return self._adder

    def _add_early_serially(self, requests: queue.SimpleQueue[_EarlySlot | None]) -> None:
        """The adder thread: one early add at a time, until told to end (None). Never raises: an
        unexpected error declines the early add, and the acquire's task then does it all."""
        while (slot := requests.get()) is not None:
            try:
                slot.result = self.system.add_early(slot.action.addresses)
            except Exception:
                log.exception("the early add of %s failed; acquiring the usual way", names(slot.action.addresses))
                slot.result = None
            finally:
                slot.done.set()
                if slot.then is not None:
                    slot.then()

    async def _take_early(self, action: Acquire) -> EarlyAdd | None:
        """What the adder thread did to ``action``'s first address (waiting for it if need be), or None."""
        slot = self._early
        if slot is None or slot.action is not action:
            return None
        if not slot.done.is_set():
            await trio.to_thread.run_sync(slot.done.wait)  # bounded by the netlink socket's timeout
        self._early = None
        return slot.result

    def _enqueue(self, action: AddressChange) -> None:
        if not self._accepting_changes and not self._added_early(action):
            log.warning("stopping: not starting %s", _describe(action))
            return
        self.pending_changes += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self._queue_in.send_nowait(action)

    def _added_early(self, action: AddressChange) -> bool:
        return self._early is not None and self._early.action is action

    def _notify(self, action: Notify | Alarm) -> None:
        if self.notifier is None or self._background is None:
            return
        if isinstance(action, Alarm):
            # The same alarm again (an acquire retried every interval and
            # failing every time) is logged each time but mailed at most once
            # per MAIL_REPEAT seconds: an operator needs the first mail, not a
            # mailbox full of copies.
            now = trio.current_time()
            last = self._mailed.get(action.message)
            if last is not None and now - last < MAIL_REPEAT:
                return
            self._mailed[action.message] = now
        self.notifier.start_soon(self._background, action)

    def _start(self, function: Callable, action: Action) -> None:
        if self._background is None:
            raise RuntimeError("the executor is not running")
        self._background.start_soon(function, action)

    # --- tasks ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Work the address-change queue until cancelled; background tasks live in here too."""
        async with trio.open_nursery() as nursery:
            self._background = nursery
            task_status.started()
            try:
                async for action in self._queue_out:
                    await self._change(action)
            finally:
                self._background = None
                if self._adder is not None:
                    self._adder.put(None)  # the adder thread ends after what it is doing
                    self._adder = None

    async def _change(self, action: AddressChange) -> None:
        self._current = action
        try:
            if isinstance(action, Acquire):
                result: Result | None = await self.system.acquire(action.addresses, await self._take_early(action))
            elif isinstance(action, Release):
                result = await self._release(action)
            else:
                log.info("%s", _describe(action))
                await self.system.announce(action.addresses)
                result = None
        finally:
            self._current = None
            self.pending_changes -= 1
            if self.pending_changes == 0:
                self._idle.set()
        if result is not None:
            self._report(result)

    async def _release(self, action: Release) -> ReleaseDone | None:
        """Release; the result goes to the core as soon as the addresses are gone.

        The backup's "I hold nothing" must not wait for its PostRel hooks: a
        returning master holds nothing until it gets it. The hooks still
        finish before the next address change starts (this is the queue's
        task). Returns the result only if the system did not report it early.
        """
        reported: list[ReleaseDone] = []

        def removed(result: ReleaseDone) -> None:
            reported.append(result)
            self._report(result)

        result = await self.system.release(action.addresses, on_removed=removed)
        return None if reported else result

    async def _probe(self, action: Probe) -> None:
        self.probes_running += 1
        try:
            result = await self.system.probe(action.addresses)
        finally:
            self.probes_running -= 1
        self._report(result)

    # --- the witness ---------------------------------------------------------

    def _witness(self) -> Claims:
        if self.claims is None:
            raise RuntimeError("a witness action without a witness: the core and the runtime disagree")
        return self.claims

    def _claim_started(self) -> None:
        self.claim_tasks += 1
        if self._claims_idle.is_set():
            self._claims_idle = trio.Event()

    def _claim_ended(self) -> None:
        self.claim_tasks -= 1
        if self.claim_tasks == 0:
            self._claims_idle.set()

    async def _claim(self, action: Claim) -> None:
        claims = self._witness()
        self._claim_started()
        try:
            result = await claims.claim()
        finally:
            self._claim_ended()
        if result.outcome == "granted" and self._background is not None:
            self._stop_renewing()
            scope = self._renewing = trio.CancelScope()
            self._background.start_soon(self._renew, claims, scope, result.sent_at)
        self._report(result)

    async def _renew(self, claims: Claims, scope: trio.CancelScope, granted_at: float) -> None:
        """Renew every renew period (counted from the previous sending) until lost or cancelled."""
        with scope:
            sent_at = granted_at
            while True:
                await trio.sleep_until(sent_at + claims.renew_period)
                renewal = await claims.renew()
                sent_at = max(renewal.sent_at, sent_at + claims.renew_period)
                self._report(renewal)
                if renewal.outcome == "lost":
                    return

    def _stop_renewing(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            self._renewing = None

    async def _reach(self, action: Reach) -> None:
        self._report(await self._witness().reach())

    async def _release_claim(self, action: ReleaseClaim) -> None:
        self._claim_started()
        try:
            await self._witness().release()
        finally:
            self._claim_ended()

    async def finish_claims(self) -> None:
        """Wait until no claim or give-back is in flight (the stop's give-back reaches etcd)."""
        await self._claims_idle.wait()

    def _report(self, result: Result) -> None:
        self._on_result(result)

    # --- shutdown ------------------------------------------------------------

    def stop_accepting_changes(self) -> list[AddressChange]:
        """Refuse further address changes; return (and drop) those still queued, but an acquire added early."""
        self._accepting_changes = False
        dropped = []
        kept = []
        while True:
            try:
                action = self._queue_out.receive_nowait()
            except trio.WouldBlock:
                break
            if self._added_early(action):
                kept.append(action)  # begun: its address is on the host (the module)
                continue
            dropped.append(action)
            self.pending_changes -= 1
        for action in kept:
            self._queue_in.send_nowait(action)
        if self.pending_changes == 0:
            self._idle.set()
        return dropped

    def accept_changes(self) -> None:
        """Carry out address changes again (the stop's own release, once the one in progress finished)."""
        self._accepting_changes = True

    async def finish_current(self) -> None:
        """Wait until no address change is running or queued."""
        await self._idle.wait()


def _describe(action: Action) -> str:
    if isinstance(action, Acquire):
        return f"acquiring {names(action.addresses)}"
    if isinstance(action, Release):
        return f"releasing {names(action.addresses)}"
    if isinstance(action, Announce):
        return f"announcing {names(action.addresses)}"
    return repr(action)


@dataclass(eq=False)
class _EarlySlot:
    """One early add handed to the adder thread: its acquire, and what the system did (set when ``done``)."""

    action: Acquire
    then: Callable[[], None] | None = None
    result: EarlyAdd | None = None
    done: threading.Event = field(default_factory=threading.Event)
