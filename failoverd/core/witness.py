"""The witness rule's arithmetic (spec/witness.md, "The rule"): how long a proof lets a
holder keep an address, and how long a host waits after a grant before configuring it.

Sans-IO like the rest of the core: times are the caller's monotonic clock readings
(Trio's), never read here.

A proof is a renewal whose answer said "still mine", counted from the instant its
request was *sent*. The holder must have removed the address by ``sent_at +
validity``, so it starts removing at ``sent_at + validity - release_margin``. A
claimant waits ``wait_after_grant`` from reading its grant's answer, which is long
enough on any clock whose rate is within ``drift`` of real time:
``wait >= validity * (1 + drift) / (1 - drift)``. Only intervals measured on one
host's own clock enter; clock offsets never do.

With ``keep_on_outage`` (``--etcd-unreachable keep``, keep-and-refuse-new) a holder whose
proof ran out because etcd does not answer keeps its addresses while its peer *confirms*
that it cannot reach etcd either: a frame of the peer, with the flag "witness unreachable",
that acknowledges our frame sent at ``h``. The acknowledgement proves the confirmation was
made after ``h``, by a host that held no grant of a claim then, so a grant it reads later is
read after ``h`` and its wait ends after ``h + validity`` on any clock within the drift: a
confirmation is a proof sent at ``h`` (:meth:`HolderProofs.confirmed`), against that one host.
With several backups every other host that could claim (the master and each other backup) must
confirm, each counted from the frame of ours it acknowledges: the oldest of those counts. It keeps
an address held, never configures one. The peer's side is :class:`OutageConfirmer`. spin checks it: witness.pml,
``KEEP=1``.

Error handling: :class:`WitnessTimingError` for a timing that cannot work (the
message says which value and why); a proof or confirmation older than the newest one is ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class WitnessTimingError(ValueError):
    """A witness timing that cannot work; the message says why."""


@dataclass(frozen=True)
class WitnessTiming:
    renew_period: float = 0.1
    """Seconds between renewals (one in flight at a time); the heartbeat interval."""
    validity: float = 0.4
    """Seconds a proof lets the holder keep the address, from sending the renewal."""
    release_margin: float = 0.05
    """Seconds before the proof's end at which the holder starts removing the address."""
    drift: float = 1e-3
    """Bound on any host clock's rate error (10^-4 crystal, 5 * 10^-4 NTP slew, and room)."""
    lease_ttl: int = 2
    """The claim's etcd lease, whole seconds: only removes an abandoned claim; safety never uses it."""
    keep_on_outage: bool = False
    """``--etcd-unreachable keep``: a holder keeps its addresses past its proof while its peer
    confirms it cannot reach etcd either (keep-and-refuse-new); False: ``drop``."""

    def __post_init__(self) -> None:
        for name in ("renew_period", "validity", "release_margin", "drift"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
                raise WitnessTimingError(f"witness {name.replace('_', ' ')} {value!r} is not a number")
        if not 0.01 <= self.renew_period <= 60:
            raise WitnessTimingError(f"witness renew period {self.renew_period!r} s is outside 0.01..60 s")
        if not 0 <= self.drift < 0.1:
            raise WitnessTimingError(f"clock drift bound {self.drift!r} is outside 0..0.1")
        if not 0 < self.release_margin < self.validity:
            raise WitnessTimingError(
                f"release margin {self.release_margin!r} s must be positive and shorter than the "
                f"proof validity {self.validity!r} s")
        if self.validity - self.release_margin <= self.renew_period:
            raise WitnessTimingError(
                f"proof validity {self.validity:g} s less the release margin {self.release_margin:g} s must "
                f"exceed the renew period {self.renew_period:g} s, or a holder drops between two renewals")
        if not isinstance(self.keep_on_outage, bool):
            raise WitnessTimingError(f"keep on outage {self.keep_on_outage!r} must be true or false")
        if not isinstance(self.lease_ttl, int) or not 1 <= self.lease_ttl <= 3600:
            raise WitnessTimingError(f"claim lease TTL {self.lease_ttl!r} must be whole seconds, 1..3600")

    @property
    def wait_after_grant(self) -> float:
        """``validity * (1 + drift) / (1 - drift)``, rounded up to the next whole millisecond."""
        exact = self.validity * (1 + self.drift) / (1 - self.drift)
        return math.floor(exact * 1000 + 1) / 1000  # strictly more than the bound: the two timers never tie

    def holder_deadline(self, sent_at: float) -> float:
        """When a holder whose newest proof was sent at ``sent_at`` starts removing the address."""
        return sent_at + self.validity - self.release_margin

    @property
    def takeover_watch(self) -> float:
        """Seconds a held claim must stay unchanged before a claimant takes it over: one and a
        half renew periods, so a holder alive and connected to etcd (which rewrites it every
        period) always moves it first, and the takeover's comparison fails."""
        return 1.5 * self.renew_period

    def takeover_bound(self, fail_after: float, round_trip: float, acquire: float) -> float:
        """Seconds from a holder's death to the address on the claimant: the fail deadline,
        a read, the takeover's watch and its transaction, the wait, the acquire (spec/witness.md)."""
        return fail_after + 2 * round_trip + self.takeover_watch + self.wait_after_grant + acquire


class HolderProofs:
    """The holder's side of the rule: the newest proof (and, keeping on an outage, the newest
    confirmation of each other host), and whether the address may stay.

    ``confirmers``: how many other hosts could claim the address (the master and every other
    backup, spec/witness.md "With several backups"). A confirmation keeps an address only while
    one runs from *every* one of them: a host that did not confirm may have read a grant at any
    moment, so nothing bounds when it configures. The caller may raise the number when it
    learns of more (the master hearing more backups than ``--backups``)."""

    def __init__(self, timing: WitnessTiming, *, confirmers: int = 1) -> None:
        if confirmers < 1:
            raise WitnessTimingError(f"confirmers {confirmers!r}: a holder has at least one other host")
        self.timing = timing
        self.confirmers = confirmers
        self.newest_sent_at: float | None = None
        self.confirmed_at: dict[object, float] = {}
        """Per confirming host: when we sent the newest frame its confirmation acknowledged."""
        self.uncounted_claimer = False
        """A host that could claim but whose confirmation nothing counts was heard: confirmations
        never keep an address again in this run (:meth:`claimer_uncounted`)."""

    def claimer_uncounted(self) -> None:
        """An authentic frame of a host that could claim and that we cannot take a confirmation
        from (a backup no --peer of ours names): keeping on the others' confirmations could
        overlap its claim, so from now on a proof alone keeps the addresses."""
        self.uncounted_claimer = True

    def proved(self, sent_at: float) -> None:
        """A renewal sent at ``sent_at`` found the claim current (an older one changes nothing)."""
        if self.newest_sent_at is None or sent_at > self.newest_sent_at:
            self.newest_sent_at = sent_at

    def confirmed(self, acked_at: float, host: object = None) -> None:
        """Another host (``host``: any key naming it; one per host) confirmed, in a frame
        acknowledging ours sent at ``acked_at``, that it cannot reach etcd either: worth a proof
        sent then, for the addresses held now (the caller takes it only while holding them, and
        only with ``keep_on_outage``)."""
        known = self.confirmed_at.get(host)
        if known is None or acked_at > known:
            self.confirmed_at[host] = acked_at

    @property
    def newest_confirmed_at(self) -> float | None:
        """The frame of ours that every other host's confirmation acknowledged, the oldest of
        their newest (None: some host has not confirmed)."""
        if self.uncounted_claimer or len(self.confirmed_at) < self.confirmers:
            return None
        return min(self.confirmed_at.values())

    def lost(self) -> None:
        """The claim is someone else's, or given back: no proof or confirmation counts any more."""
        self.newest_sent_at = None
        self.confirmed_at.clear()

    def snapshot(self, now: float, *, reachable: bool, claim_held: bool) -> dict[str, Any]:
        """The witness part of a core's status snapshot."""
        deadline = self.deadline
        confirmed = self.confirmation_deadline
        return {
            "reachable": reachable,
            "claim": claim_held,
            "proof_left": None if deadline is None or not claim_held else round(deadline - now, 3),
            "confirmation_left": None if confirmed is None or not claim_held or confirmed <= now
            else round(confirmed - now, 3),
        }

    @property
    def deadline(self) -> float | None:
        """When to start removing the address (None: no proof, remove it now)."""
        return None if self.newest_sent_at is None else self.timing.holder_deadline(self.newest_sent_at)

    def may_hold(self, now: float) -> bool:
        """The newest proof lets us hold (and configure) the address now."""
        deadline = self.deadline
        return deadline is not None and now < deadline

    @property
    def confirmation_deadline(self) -> float | None:
        """When the newest confirmation stops keeping the address (None: none)."""
        at = self.newest_confirmed_at
        return None if at is None else self.timing.holder_deadline(at)

    def confirmation_keeps(self, now: float) -> bool:
        """The newest confirmation keeps an address already held (it never lets one be configured)."""
        deadline = self.confirmation_deadline
        return deadline is not None and now < deadline

    def may_keep(self, now: float) -> bool:
        """An address already held may stay: a proof, or a peer's confirmation, runs."""
        return self.may_hold(now) or self.confirmation_keeps(now)

    @property
    def keep_deadline(self) -> float | None:
        """When to start removing an address already held (None: no proof nor confirmation, now)."""
        ends = [d for d in (self.deadline, self.confirmation_deadline) if d is not None]
        return max(ends) if ends else None


class OutageConfirmer:
    """The non-holder's side of keep-and-refuse-new: does this host confirm, in the frames it
    sends, that it cannot reach etcd? (heartbeatd also schedules its questions with it under
    ``drop``, to learn when etcd answers it before a failback: it never confirms then.)

    Only while it asks etcd (:class:`~failoverd.core.actions.Reach`, one renew period apart,
    one in flight) and the newest question, sent within ``validity``, got no answer, with no
    answer since. The core adds the rule that makes it safe: a host that has read a grant of
    its current claim, or holds or may hold the addresses, never confirms. Safety does not
    rest on the questions: the model (witness.pml, ``KEEP=1``) lets any host that has read no
    grant confirm at any moment. They keep a host that *does* reach etcd from confirming, so
    a holder cut from etcd alone drops, and the peer, which reaches etcd, can take over; the
    ``validity`` horizon makes an unanswered question from long ago (the questions stopped,
    the peer stopped holding) confirm nothing.
    """

    def __init__(self, timing: WitnessTiming) -> None:
        self.timing = timing
        self.in_flight = False
        self.next_at = float("-inf")
        """When the next question is due (while one is wanted and none in flight)."""
        self.unanswered_at: float | None = None
        """When the newest question that got no answer was sent, if none answered since."""

    def due(self, now: float) -> bool:
        return not self.in_flight and now >= self.next_at

    def ask_now(self, now: float) -> None:
        """The next question is due at once (unless one is in flight: its answer comes first)."""
        self.next_at = min(self.next_at, now)

    def asked(self, now: float) -> None:
        self.in_flight = True
        self.next_at = now + self.timing.renew_period

    def answered(self, reachable: bool, sent_at: float) -> None:
        self.in_flight = False
        if reachable:
            self.unanswered_at = None
        elif self.unanswered_at is None or sent_at > self.unanswered_at:
            self.unanswered_at = sent_at

    def reached(self) -> None:
        """etcd answered another request of ours (a claim or a renewal): whatever an earlier
        question found, it is reachable now (a question in flight stays in flight)."""
        self.unanswered_at = None

    def unreachable(self, now: float) -> bool:
        """etcd did not answer our newest question, sent within the last ``validity``."""
        at = self.unanswered_at
        return at is not None and now - at <= self.timing.validity
