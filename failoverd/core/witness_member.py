"""One host's part in the etcd witness (spec/witness.md), the same in the backup's core and the
master's: the claim it holds, the proofs and confirmations that keep its addresses, its
questions to etcd, and the alarms they raise.

:mod:`failoverd.core.witness` is the rule's arithmetic (what a proof or a confirmation is
worth); this is the bookkeeping a core does around it, written once for both cores. Each
core holds one :class:`WitnessMember` (None without a witness) and keeps what differs: the
state it holds the addresses in (the master's ``holding``, the backup's ``failed_over``),
when it asks etcd, who confirms its holding and how the alarms name them, and what it does
once etcd answers (the master's held-back failback). The transitions' callbacks and
conditions stay the cores' methods, named as the tables name them; they call in here.

Sans-IO like the rest of the core: every call that needs a time takes ``now``, and the
actions go to the core's ``emit``, in the order the core's own would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from failoverd.core.actions import Action, Addresses, Alarm, ClaimDone, Reach, ReachDone, ReleaseClaim, RenewDone
from failoverd.core.addresses import names
from failoverd.core.witness import HolderProofs, OutageConfirmer


class WitnessMember:
    """A core's claim on the etcd witness and what keeps its addresses: the grant, the proofs and
    confirmations (``proofs``), the questions to etcd (``confirmer``), and their alarms.

    ``proofs`` and ``confirmer`` are the core's own (it reads them in its conditions); the
    core decides how many hosts confirm (``HolderProofs.confirmers``) and whether it asks etcd
    at all (``confirmer``: None, it never does). ``confirmers_named`` and ``they`` are how the
    alarms name the confirming hosts ("the backup's confirmation", "it"). ``emit`` takes each
    action. ``after_reach`` is told, after the alarm, each time a claim, a renewal or a question
    found etcd answering or not."""

    def __init__(
        self,
        proofs: HolderProofs,
        confirmer: OutageConfirmer | None,
        *,
        confirmers_named: str,
        they: str,
        emit: Callable[[Action], None],
        after_reach: Callable[[bool], None] | None = None,
    ) -> None:
        self.timing = proofs.timing
        self.proofs = proofs
        self.confirmer = confirmer
        self._confirmers_named = confirmers_named
        self._they = they
        self._emit = emit
        self._after_reach = after_reach
        self.claim_result = ClaimDone("unreachable")
        """The newest claim's answer (the core's claimed rows read it)."""
        self.renewal = RenewDone("unreachable")
        """The newest renewal's answer."""
        self.claim_held = False
        """The witness granted us the claim and it was not given back: the shell renews it."""
        self.wait_until = float("inf")
        """Granted: when the wait after the grant is over and the addresses may be configured."""
        self.reachable = True
        """The last claim, renewal or question was answered (for status, metrics and the alarm)."""
        self.kept_reported = False
        """The alarm "keeping on the confirmations" was raised for this outage."""

    # --- the claim -----------------------------------------------------------

    def take_grant(self) -> None:
        """The grant is ours (to wait on, or to give back at once)."""
        self.claim_held = True

    def granted(self) -> None:
        """Our claim was granted: the claim is a proof from its sending, and the wait runs from its answer."""
        self.take_grant()
        self.note_reachable(True)
        self.proofs.proved(self.claim_result.sent_at)
        self.wait_until = self.claim_result.answered_at + self.timing.wait_after_grant

    def give_claim_back(self) -> None:
        """Let go of the claim, if we hold it: its proofs and confirmations count no more."""
        self.kept_reported = False  # a new outage, if any, is reported afresh
        if self.claim_held:
            self.claim_held = False
            self.proofs.lost()
            self._emit(ReleaseClaim())

    def take_renewal(self, now: float, held: Addresses) -> bool:
        """The newest renewal's answer: a newer proof, the claim lost, or no answer (the proof runs
        on). True: it proved the claim we hold."""
        renewal = self.renewal
        if not self.claim_held:
            return False  # from a claim given back since
        if renewal.outcome == "proved":
            self.note_reachable(True)
            self.proofs.proved(renewal.sent_at)
            if self.kept_reported and self.proofs.may_hold(now):
                self.kept_reported = False
                self._emit(Alarm("info", f"the etcd witness proves our claim again: {names(held)} "
                                 f"no longer kept on {self._confirmers_named}"))
            return True
        if renewal.outcome == "lost":
            self.note_reachable(True)
            self.proofs.lost()
            self.claim_held = False  # the shell stops renewing a lost claim by itself
            self.kept_reported = False
            self._emit(Alarm("critical", f"the etcd witness's claim is lost ({renewal.detail})", True))
        else:
            self.note_reachable(False, renewal.detail)
        return False

    def proof_ran_out(self, held: Addresses, *, give_claim_back: bool) -> None:
        """Neither a proof nor the confirmations keep ``held`` any more: say so, as the core releases
        it. ``give_claim_back``: at once (the backup); else once the release is done (the master)."""
        kept, self.kept_reported = self.kept_reported, False
        if give_claim_back:
            self.give_claim_back()
        if kept:
            self._emit(Alarm(
                "critical", f"etcd unreachable and {self._confirmers_named} ran out: releasing {names(held)} "
                "before another host could be granted it", True))
            return
        self._emit(Alarm(
            "critical", f"no current proof of the etcd witness's claim: releasing {names(held)} before "
            "another host could be granted it", True))

    # --- etcd answering (or not) ---------------------------------------------

    def claim_done(self, result: ClaimDone) -> None:
        """A claim's answer, for the core's claimed rows."""
        self.claim_result = result
        self._etcd_answered(result.outcome)

    def renewal_done(self, result: RenewDone) -> None:
        """A renewal's answer, for the core's renewed rows (:meth:`take_renewal`)."""
        self.renewal = result
        self._etcd_answered(result.outcome)

    def _etcd_answered(self, outcome: str) -> None:
        if self.confirmer is not None and outcome != "unreachable":
            self.confirmer.reached()  # an old unanswered question confirms nothing once etcd answered

    def reach_done(self, result: ReachDone) -> None:
        """A question's answer: what our frames confirm, and (holding no claim, whose renewals
        say it better) whether etcd is reachable."""
        if self.confirmer is None:
            return
        reachable = result.outcome == "answered"
        self.confirmer.answered(reachable, result.sent_at)
        if not self.claim_held:
            self.note_reachable(reachable, result.detail)

    def note_reachable(self, reachable: bool, why: str = "") -> None:
        """etcd answered a request of ours, or did not (``why``): alarmed when that changes, then
        told to ``after_reach``."""
        if reachable and not self.reachable:
            self._emit(Alarm("info", "the etcd witness answers again"))
        elif not reachable and self.reachable:
            self._emit(Alarm("critical", f"the etcd witness is unreachable ({why})", True))
        self.reachable = reachable
        if self._after_reach is not None:
            self._after_reach(reachable)

    # --- --etcd-unreachable keep (spec/witness.md, "When etcd is unreachable from every host") ---

    def take_confirmation(self, acked_at: float | None, host: object, *, holding: bool, held: Addresses) -> None:
        """``host`` confirmed, in a frame acknowledging ours sent at ``acked_at``, that it cannot reach
        etcd: it counts only with keep, for a claim and addresses we hold now (``holding``: in the
        core's holding state), never to configure one (core/witness.py)."""
        if self.timing.keep_on_outage and self.claim_held and held and holding and acked_at is not None:
            self.proofs.confirmed(acked_at, host)

    def confirms(self, now: float, *, may_hold: bool) -> bool:
        """Do our frames say "witness unreachable"? Never once we read a grant of our claim, nor
        while we hold or may hold the addresses (``may_hold``; core/witness.py)."""
        return (self.timing.keep_on_outage and self.confirmer is not None and not self.claim_held and not may_hold
                and self.confirmer.unreachable(now))

    # --- timers --------------------------------------------------------------

    def timers(self, now: float, *, asking: bool, holding: bool, held: Addresses) -> None:
        """Not state changes: the question to etcd when due (``asking``: the core wants one), and the
        alarm that a confirmation keeps ``held`` (``holding``: in the core's holding state)."""
        if asking:
            assert self.confirmer is not None
            if self.confirmer.due(now):
                self.confirmer.asked(now)
                self._emit(Reach())
        if (self.timing.keep_on_outage and holding and not self.kept_reported
                and not self.proofs.may_hold(now) and self.proofs.may_keep(now)):
            self.kept_reported = True
            self._emit(Alarm("critical", f"etcd unreachable, keeping {names(held)} on "
                             f"{self._confirmers_named} that {self._they} cannot reach etcd either", True))

    def next_deadline(self, now: float, *, granted: bool, holding: bool, asking: bool) -> float | None:
        """The earliest of the witness's deadlines (None: none): the wait after the grant and the
        proof's end (``granted``), the end of what keeps the addresses and the alarm that a
        confirmation keeps them (``holding``), the next question (``asking``)."""
        candidates: list[float] = []
        if granted:
            deadline = self.proofs.deadline
            candidates += [self.wait_until, now if deadline is None else deadline]
        if holding:
            deadline = self.proofs.keep_deadline
            candidates.append(now if deadline is None else deadline)
            proof_ends = self.proofs.deadline
            if self.timing.keep_on_outage and not self.kept_reported and proof_ends is not None:
                candidates.append(proof_ends)  # to say we keep on a confirmation (timers)
        if asking:
            assert self.confirmer is not None
            if not self.confirmer.in_flight:
                candidates.append(self.confirmer.next_at)
        return min(candidates, default=None)

    # --- status --------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, Any]:
        """The witness part of a core's status snapshot."""
        return self.proofs.snapshot(now, reachable=self.reachable, claim_held=self.claim_held)
