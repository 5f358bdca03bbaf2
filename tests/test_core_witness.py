"""The witness rule's arithmetic (failoverd/core/witness.py, spec/witness.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failoverd.core.timing import Timing
from failoverd.core.witness import HolderProofs, OutageConfirmer, WitnessTiming, WitnessTimingError


@given(validity=st.floats(0.12, 30.0), drift=st.floats(0.0, 0.099))
def test_the_wait_outlasts_any_proof_on_any_two_clocks(validity: float, drift: float) -> None:
    timing = WitnessTiming(validity=validity, release_margin=0.01, drift=drift, renew_period=0.1)
    # The claimant's clock as fast as allowed, the holder's as slow: the wait, in real
    # seconds, must still end after the holder's proof has.
    shortest_wait = timing.wait_after_grant / (1 + drift)
    longest_proof = validity / (1 - drift)
    assert shortest_wait > longest_proof


def test_defaults_at_tenth_second_heartbeats_take_over_within_a_second() -> None:
    timing = WitnessTiming()
    assert timing.wait_after_grant == pytest.approx(0.401)
    heartbeats = Timing(interval=0.1)
    # 12 ms: the renewals' 99th percentile against the lab's cluster (spec/witness.md).
    bound = timing.takeover_bound(heartbeats.fail_after, round_trip=0.012, acquire=0.001)
    assert bound <= 1.0
    assert timing.holder_deadline(10.0) == pytest.approx(10.35)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"drift": 0.2}, "drift bound"),
        ({"drift": float("nan")}, "not a number"),
        ({"release_margin": 0.0}, "release margin"),
        ({"release_margin": 0.5}, "release margin"),
        ({"validity": 0.14}, "or a holder drops between two renewals"),
        ({"renew_period": 0.001}, "renew period"),
        ({"lease_ttl": 0}, "lease TTL"),
        ({"lease_ttl": 1.5}, "lease TTL"),
        ({"keep_on_outage": 1}, "keep on outage 1 must be true or false"),
    ],
)
def test_a_timing_that_cannot_work_is_refused(settings: dict[str, float], words: str) -> None:
    with pytest.raises(WitnessTimingError, match=words):
        WitnessTiming(**settings)


def test_the_newest_proof_decides_and_a_lost_claim_ends_it() -> None:
    proofs = HolderProofs(WitnessTiming())
    assert not proofs.may_hold(0.0) and proofs.deadline is None
    proofs.proved(1.0)
    proofs.proved(0.5)  # an older renewal answered late: changes nothing
    assert proofs.deadline == pytest.approx(1.35)
    assert proofs.may_hold(1.34) and not proofs.may_hold(1.35)
    proofs.lost()
    assert not proofs.may_hold(1.0)


def test_a_confirmation_keeps_like_a_proof_from_the_frame_it_answers_and_never_lets_an_address_be_added() -> None:
    proofs = HolderProofs(WitnessTiming(keep_on_outage=True))
    proofs.proved(1.0)
    proofs.confirmed(1.2)  # answers our frame sent at 1.2
    proofs.confirmed(1.1)  # an older one arriving later: changes nothing
    assert proofs.confirmation_deadline == pytest.approx(1.55) and proofs.keep_deadline == pytest.approx(1.55)
    assert not proofs.may_hold(1.4) and proofs.may_keep(1.4)  # kept, but nothing may be configured on it
    assert not proofs.may_keep(1.55)
    snapshot = proofs.snapshot(1.4, reachable=False, claim_held=True)
    assert snapshot["proof_left"] == pytest.approx(-0.05) and snapshot["confirmation_left"] == pytest.approx(0.15)
    proofs.lost()  # the claim is someone else's: nothing keeps
    assert not proofs.may_keep(1.4) and proofs.keep_deadline is None


def test_with_several_other_hosts_every_one_must_confirm_and_the_oldest_counts() -> None:
    """spec/witness.md, "With several backups": a confirmation bounds its sender alone, so the holder
    keeps only while one runs from every other host, until the earliest of their deadlines."""
    proofs = HolderProofs(WitnessTiming(keep_on_outage=True), confirmers=3)
    proofs.proved(1.0)
    proofs.confirmed(1.2, "master")
    proofs.confirmed(1.3, 50)
    assert proofs.confirmation_deadline is None and not proofs.may_keep(1.4)  # the third host has not confirmed
    proofs.confirmed(1.1, 60)
    assert proofs.confirmation_deadline == pytest.approx(1.45)  # 60's, the oldest: 1.1 + V - margin
    proofs.confirmed(1.25, 60)  # 60 again, newer: now the master's is the oldest
    proofs.confirmed(1.0, "master")  # an older one of the master's, late: changes nothing
    assert proofs.confirmation_deadline == pytest.approx(1.55) and proofs.may_keep(1.5)
    proofs.confirmers = 4  # the master hears a backup beyond --backups: it must confirm too
    assert proofs.confirmation_deadline is None
    proofs.lost()
    assert proofs.confirmed_at == {} and proofs.keep_deadline is None
    with pytest.raises(WitnessTimingError, match="at least one other host"):
        HolderProofs(WitnessTiming(), confirmers=0)


def test_the_confirmer_says_unreachable_only_after_a_recent_unanswered_question() -> None:
    timing = WitnessTiming(keep_on_outage=True)  # R 0.1 s, V 0.4 s
    confirmer = OutageConfirmer(timing)
    assert confirmer.due(0.0) and not confirmer.unreachable(0.0)
    confirmer.asked(0.0)
    assert not confirmer.due(0.5)  # one in flight at a time
    confirmer.answered(False, 0.0)
    assert confirmer.unreachable(0.3) and confirmer.unreachable(0.4) and not confirmer.unreachable(0.41)
    assert confirmer.due(0.1) and not confirmer.due(0.09)
    confirmer.asked(0.1)
    confirmer.answered(True, 0.1)  # any answer ends it at once
    assert not confirmer.unreachable(0.11)
