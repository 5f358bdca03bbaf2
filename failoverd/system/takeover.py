"""The one acquire/release procedure, shared by the daemons and ProcessFailover.

Per address, in this order (the original ProcessFailover's, plus the
announcement):

    acquire:  Test -> PreAcq hooks -> add the address -> gratuitous ARP -> PostAcq hooks
    release:  Test -> PreRel hooks -> remove the address; then PostRel hooks

Addresses are handled one after another in sorted order, so two runs with the
same input do the same things in the same order. A release removes every
address first and runs the PostRel hooks afterwards (in the same order): the
result is complete once the last address is gone, and ``release`` hands it to
its ``on_removed`` callback right then, before any PostRel hook. That is what
lets the backup tell a returning master "I hold nothing" without making it
wait for the backup's hooks (see docs/hooks.md). The result sorts every input
triplet into exactly one set, so the core knows what this host holds even
after a partial failure. An address that was already there counts as
acquired (and still gets its announcement and PostAcq hooks): that is how a
restarted backup adopts what it held.

The gratuitous ARP burst for an address starts as soon as it is added and
runs alongside the following steps; ``acquire`` returns once every burst has
finished, so nothing it started outlives it.

The early add (:meth:`Takeover.add_early`): the first address's add, done
synchronously where the core decided to acquire (heartbeatd's frame thread,
the moment the backup's "I hold nothing" is counted), when no hook has to run
before it (no ``Test``, no ``PreAcq*`` in its directory). The acquire that
follows, given what the early add did, takes that address on from its add:
its log lines, the gratuitous ARP and its PostAcq hooks, then the other
addresses through their whole sequence, so the order above holds. Checked
by name only: a hook that is there, runnable or not, sends the address the
whole way (where an untrusted one is refused and logged, as always).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import trio

from failoverd.core.actions import AcquireDone, ProbeDone, ReleaseDone
from failoverd.core.addresses import Triplet, names
from failoverd.system.arp import Announcer, Prober
from failoverd.system.arpwatch import ConflictWatcher, Report
from failoverd.system.hooks import TEST, HookObserver, HookRunner, ObservedHooks
from failoverd.system.linkwatch import LinkWatcher
from failoverd.system.namespace import NamespaceMissing
from failoverd.system.netlink import (
    AddressChangeError,
    AddressManager,
    InterfaceError,
    log_added,
)
from failoverd.system.rtnetlink import NetlinkError

log = logging.getLogger(__name__)

Outcome = Literal["done", "failed", "refused"]

# What an address change can fail with; anything else is a bug and propagates.
_CHANGE_ERRORS = (InterfaceError, AddressChangeError, NamespaceMissing, NetlinkError, OSError)


@dataclass(frozen=True)
class EarlyAdd:
    """What :meth:`Takeover.add_early` did to one address: added, found there, or the error that stopped it."""

    triplet: Triplet
    added: bool
    error: Exception | None = None


class Takeover:
    """Acquires and releases failover addresses, hooks and announcements included.

    Also probes (RFC 5227) with ``prober`` (default: :class:`Prober`'s defaults
    in the address manager's namespace), reports what is on the interfaces
    and watches the wire for conflicts, so one object is the whole of the
    runtime's ``System`` port (:class:`failoverd.runtime.ports.System`) on a real host.

    Resource handling: every hook process and announcement task started by a
    call has ended when the call returns.

    Error handling: address changes that fail are logged and reported in the
    result's ``failed`` set; hooks never raise (see :mod:`failoverd.system.hooks`).
    If the caller cancels ``acquire`` or ``release`` midway, no result is
    returned and the caller must re-read the truth with
    :meth:`AddressManager.present`.
    """

    def __init__(
        self, addresses: AddressManager, hooks: HookRunner, announcer: Announcer, prober: Prober | None = None
    ) -> None:
        self.addresses = addresses
        self.hooks: HookRunner | ObservedHooks = hooks
        self._hook_runner = hooks
        self.announcer = announcer
        self.prober = prober if prober is not None else Prober(netns=addresses.netns)

    @classmethod
    def build(
        cls,
        *,
        hook_dir: Path,
        hook_timeout: float,
        probe_count: int,
        probe_spacing: float,
        garp_count: int,
        garp_spacing: float,
    ) -> Takeover:
        """This host's takeover as a daemon's options describe it (addresses in our own namespace)."""
        # One probe round lasts probe_count * spacing (Timing.probe_duration):
        # the last probe is followed by one more spacing of listening.
        prober = Prober(count=probe_count, spacing=probe_spacing, wait=max(probe_spacing, 0.01))
        announcer = Announcer(count=garp_count, spacing=garp_spacing)
        return cls(AddressManager(), HookRunner(hook_dir, hook_timeout), announcer, prober)

    async def present(self, triplets: Iterable[Triplet]) -> frozenset[Triplet]:
        """Which of the addresses are on their interfaces now (see :meth:`AddressManager.present`)."""
        return await self.addresses.present(triplets)

    def conflict_watcher(self, report: Report) -> ConflictWatcher:
        """A watcher of this host's wire, in the namespace its addresses are changed in."""
        return ConflictWatcher(report, netns=self.addresses.netns)

    def link_watcher(self, interfaces: Iterable[str], report: Callable[[str, bool], None]) -> LinkWatcher:
        """A watcher of these interfaces' links, in the namespace its addresses are changed in."""
        return LinkWatcher(report, interfaces, netns=self.addresses.netns)

    def observe_hooks(self, observer: HookObserver) -> None:
        """Tell ``observer`` what every hook run does from now on (see :class:`ObservedHooks`)."""
        self.hooks = ObservedHooks(self._hook_runner, observer)  # one observer: the latest

    async def probe(self, triplets: Iterable[Triplet]) -> ProbeDone:
        """Which of the addresses another host answers for (see :class:`Prober`)."""
        return ProbeDone(answered=await self.prober.probe(triplets))

    def add_early(self, triplets: Iterable[Triplet]) -> EarlyAdd | None:
        """The first address's add, now, on the calling thread, if no hook must run before it; else None.

        Synchronous and short (three netlink requests, no hook, no log line:
        the caller is on the failback's path); :meth:`acquire` given the
        result goes on from there. Error handling: a failed add is returned,
        not raised (the acquire logs it and counts the address failed).
        """
        ordered = sorted(set(triplets))
        if not ordered:
            return None
        first = ordered[0]
        names = self._hook_runner.names(first)
        if names is None or TEST in names or any(name.startswith("PreAcq") for name in names):
            return None
        try:
            return EarlyAdd(first, self.addresses.add_unlogged(first))
        except _CHANGE_ERRORS as error:
            return EarlyAdd(first, False, error)

    async def acquire(self, triplets: Iterable[Triplet], early: EarlyAdd | None = None) -> AcquireDone:
        """Acquire every address in order (see the module); ``early``: what :meth:`add_early` did to the first."""
        ordered = sorted(set(triplets))
        outcomes: dict[Triplet, Outcome] = {}
        async with trio.open_nursery() as announcements:
            for triplet in ordered:
                if early is not None and triplet == early.triplet:
                    outcomes[triplet] = await self._acquire_added_early(early, ordered, announcements)
                else:
                    outcomes[triplet] = await self._acquire_one(triplet, ordered, announcements)
        result = AcquireDone(
            acquired=_having(outcomes, "done"), failed=_having(outcomes, "failed"), refused=_having(outcomes, "refused")
        )
        log.info("acquire finished: %s", _summary(result.acquired, result.failed, result.refused, "acquired"))
        return result

    async def release(
        self, triplets: Iterable[Triplet], on_removed: Callable[[ReleaseDone], None] | None = None
    ) -> ReleaseDone:
        """Remove the addresses, then run their PostRel hooks; return what was released.

        ``on_removed`` gets the same (exact) result as soon as the last
        address is gone, before the first PostRel hook starts.
        """
        ordered = sorted(set(triplets))
        outcomes = {triplet: await self._remove_one(triplet, ordered) for triplet in ordered}
        result = ReleaseDone(
            released=_having(outcomes, "done"), failed=_having(outcomes, "failed"), refused=_having(outcomes, "refused")
        )
        if on_removed is not None:
            on_removed(result)
        log.info("release finished: %s", _summary(result.released, result.failed, result.refused, "released"))
        for triplet in ordered:
            if outcomes[triplet] == "done":
                await self.hooks.run_phase("PostRel", "release", triplet, ordered)
        return result

    async def announce(self, triplets: Iterable[Triplet]) -> None:
        """Gratuitous ARP for addresses already held (heartbeatd's tickle)."""
        await self.announcer.announce(triplets)

    async def _acquire_one(self, triplet: Triplet, everything: list[Triplet], announcements: trio.Nursery) -> Outcome:
        log.info("acquiring %s", triplet, extra={"addresses": (triplet,)})
        if not await self.hooks.test("acquire", triplet, everything):
            return "refused"
        await self.hooks.run_phase("PreAcq", "acquire", triplet, everything)
        try:
            added = await self.addresses.add(triplet)
        except _CHANGE_ERRORS as error:
            return self._not_acquired(triplet, error)
        return await self._after_add(triplet, added, everything, announcements)

    async def _acquire_added_early(self, early: EarlyAdd, everything: list[Triplet], announcements: trio.Nursery) -> Outcome:
        """The rest of an address's acquire after :meth:`add_early`: the same lines, ARP and PostAcq hooks."""
        triplet = early.triplet
        log.info("acquiring %s (its add tried at once: no Test or PreAcq hook)", triplet, extra={"addresses": (triplet,)})
        if early.error is not None:
            return self._not_acquired(triplet, early.error)
        if early.added:
            log_added(triplet)
        return await self._after_add(triplet, early.added, everything, announcements)

    def _not_acquired(self, triplet: Triplet, error: Exception) -> Outcome:
        log.error("%s not acquired: %s", triplet, error, extra={"addresses": (triplet,)})
        return "failed"

    async def _after_add(self, triplet: Triplet, added: bool, everything: list[Triplet], announcements: trio.Nursery) -> Outcome:
        if not added:
            log.info("%s was already on %s; keeping it", triplet.address, triplet.interface, extra={"addresses": (triplet,)})
        await announcements.start(self.announcer.announce, [triplet])
        await self.hooks.run_phase("PostAcq", "acquire", triplet, everything)
        return "done"

    async def _remove_one(self, triplet: Triplet, everything: list[Triplet]) -> Outcome:
        """Test, PreRel hooks, remove: everything of a release but the PostRel hooks."""
        log.info("releasing %s", triplet, extra={"addresses": (triplet,)})
        if not await self.hooks.test("release", triplet, everything):
            return "refused"
        await self.hooks.run_phase("PreRel", "release", triplet, everything)
        try:
            removed = await self.addresses.remove(triplet)
        except _CHANGE_ERRORS as error:
            log.error("%s not released: %s", triplet, error, extra={"addresses": (triplet,)})
            return "failed"
        if not removed:
            log.info("%s was not on %s; nothing to remove", triplet.address, triplet.interface, extra={"addresses": (triplet,)})
        return "done"


def _having(outcomes: dict[Triplet, Outcome], wanted: Outcome) -> frozenset[Triplet]:
    return frozenset(triplet for triplet, outcome in outcomes.items() if outcome == wanted)


def _summary(done: frozenset[Triplet], failed: frozenset[Triplet], refused: frozenset[Triplet], verb: str) -> str:
    return f"{verb} {names(done)}; failed {names(failed)}; refused by Test {names(refused)}"
