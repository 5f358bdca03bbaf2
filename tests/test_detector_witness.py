"""The backup's witness rows (spec/witness.md, "Integration plan"): with a witness, the detector
claims where it would acquire, waits W after the grant, acquires only with a current proof,
releases before its newest proof runs out, and gives a claim back when the master returns.

Driven through the real core with legacy heartbeats and no ARP probe (the probe's rows are
those of tests/test_detector.py); times are the core's inputs, never a clock."""

from __future__ import annotations

from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Alarm,
    Claim,
    ClaimDone,
    Probe,
    ProbeDone,
    Release,
    ReleaseClaim,
    ReleaseDone,
    RenewDone,
)
from failoverd.core.addresses import parse_triplet
from failoverd.core.detector import Detector
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing
from failoverd.core.witness import WitnessTiming

VIPS = frozenset({parse_triplet("eth0:10.0.0.100/24")})
MASTER = "10.0.1.1"
TIMING = Timing(interval=0.1)
WITNESS = WitnessTiming()  # R 0.1 s, V 0.4 s, release 0.05 s before, W 0.401 s


def backup(witness: WitnessTiming | None = WITNESS) -> Detector:
    return Detector(DetectorSettings(VIPS, TIMING, master=MASTER, arp_probe=False, witness=witness), 0.0)


def kinds(actions: list) -> list[type]:
    return [type(a) for a in actions if isinstance(a, (Acquire, Release, Claim, ReleaseClaim))]


def to_claiming(d: Detector) -> list:
    """The master silent past its failure deadline: the backup's claim."""
    d.receive_datagram(0.05, b"heartbeat", MASTER, "priv0")
    out = d.handle_timer(d.next_deadline())
    out += d.handle_timer(d.next_deadline())
    assert d.state == "claiming", d.state
    return out


def test_without_a_witness_the_deadline_acquires_as_before() -> None:
    d = backup(witness=None)
    d.receive_datagram(0.05, b"heartbeat", MASTER, "priv0")
    out = d.handle_timer(d.next_deadline()) + d.handle_timer(d.next_deadline())
    assert d.state == "acquiring" and kinds(out) == [Acquire] and d.snapshot(1.0)["witness"] is None


def test_the_deadline_claims_and_the_grant_waits_w_before_acquiring() -> None:
    d = backup()
    assert kinds(to_claiming(d)) == [Claim]
    sent, answered = 0.36, 0.37
    out = d.action_done(answered, ClaimDone("granted", sent_at=sent, answered_at=answered))
    assert d.state == "granted" and kinds(out) == []
    # The wait counts from reading the grant; the proof from sending the claim, renewed meanwhile.
    assert d.next_deadline() == WITNESS.holder_deadline(sent)  # before the wait ends, unless renewed
    d.action_done(0.47, RenewDone("proved", sent_at=0.46))
    d.action_done(0.57, RenewDone("proved", sent_at=0.56))
    assert d.next_deadline() == answered + WITNESS.wait_after_grant
    assert kinds(d.handle_timer(answered + WITNESS.wait_after_grant - 0.001)) == [] and d.state == "granted"
    out = d.handle_timer(answered + WITNESS.wait_after_grant)
    assert d.state == "acquiring" and kinds(out) == [Acquire]
    d.action_done(0.78, AcquireDone(acquired=VIPS))
    assert d.state == "failed_over" and d.held == VIPS
    assert d.snapshot(0.78)["witness"] == {"reachable": True, "claim": True, "proof_left": round(0.56 + 0.35 - 0.78, 3),
                                           "confirmation_left": None}


def held(d: Detector) -> float:
    """Granted, waited, acquired; returns the newest proof's sending time."""
    to_claiming(d)
    d.action_done(0.37, ClaimDone("granted", sent_at=0.36, answered_at=0.37))
    for sent in (0.46, 0.56, 0.66, 0.76):
        d.action_done(sent + 0.01, RenewDone("proved", sent_at=sent))
    d.handle_timer(0.771)
    d.action_done(0.78, AcquireDone(acquired=VIPS))
    assert d.state == "failed_over"
    return 0.76


def test_a_holder_releases_before_its_newest_proof_runs_out() -> None:
    d = backup()
    newest = held(d)
    out = d.action_done(0.87, RenewDone("unreachable", sent_at=0.86, detail="no endpoint answered"))
    assert any(isinstance(a, Alarm) and "unreachable" in a.message and a.mail for a in out)
    deadline = WITNESS.holder_deadline(newest)
    assert d.next_deadline() == deadline
    assert kinds(d.handle_timer(deadline - 0.001)) == [] and d.state == "failed_over"
    out = d.handle_timer(deadline)
    assert d.state == "recovering" and kinds(out) == [ReleaseClaim, Release]
    # The master is still silent: once the address is gone, the backup asks the witness again.
    out = d.action_done(deadline + 0.001, ReleaseDone(released=VIPS))
    assert d.state == "claiming" and d.held == frozenset() and kinds(out) == [Claim]


def test_a_lost_claim_releases_at_once() -> None:
    d = backup()
    held(d)
    out = d.action_done(0.87, RenewDone("lost", sent_at=0.86, detail="the key holds another claim"))
    assert d.state == "recovering" and kinds(out) == [Release]  # lost: nothing to give back
    assert any(isinstance(a, Alarm) and "claim is lost" in a.message for a in out)


def test_a_refused_or_unreachable_claim_takes_nothing_and_tries_again() -> None:
    for outcome, words in (("refused", "refused our claim (held by master-host"), ("unreachable", "witness is unreachable")):
        d = backup()
        to_claiming(d)
        out = d.action_done(0.37, ClaimDone(outcome, detail="held by master-host (revision 9)"
                                            if outcome == "refused" else "timed out"))
        assert d.state == "contested" and kinds(out) == []
        assert any(isinstance(a, Alarm) and words in a.message and a.mail for a in out), out
        # The retry claims again (no ARP probe here: straight from the retry's probe answer).
        retry = d.next_deadline()
        assert retry is not None and kinds(d.handle_timer(retry)) == []


def test_the_master_heard_during_the_wait_gets_the_claim_given_back() -> None:
    d = backup()
    to_claiming(d)
    d.action_done(0.37, ClaimDone("granted", sent_at=0.36, answered_at=0.37))
    out = d.receive_datagram(0.5, b"heartbeat", MASTER, "priv0")
    assert d.state == "monitoring" and kinds(out) == [ReleaseClaim]
    # Heard while the claim was in flight: its grant is given back on arrival.
    d = backup()
    to_claiming(d)
    d.receive_datagram(0.36, b"heartbeat", MASTER, "priv0")
    out = d.action_done(0.37, ClaimDone("granted", sent_at=0.35, answered_at=0.37))
    assert d.state == "monitoring" and kinds(out) == [ReleaseClaim]


def test_the_proof_running_out_during_the_wait_acquires_nothing() -> None:
    d = backup()
    to_claiming(d)
    d.action_done(0.37, ClaimDone("granted", sent_at=0.36, answered_at=0.37))
    out = d.handle_timer(WITNESS.holder_deadline(0.36))  # no renewal answered: before W ends
    assert d.state == "contested" and kinds(out) == [ReleaseClaim]


def test_failback_gives_the_claim_back_after_the_addresses_are_gone() -> None:
    d = backup()
    held(d)
    out = d.receive_datagram(0.8, b"heartbeat", MASTER, "priv0")
    assert d.state == "recovering" and kinds(out) == [Release]
    out = d.action_done(0.81, ReleaseDone(released=VIPS))
    assert d.state == "monitoring" and kinds(out) == [ReleaseClaim]


def test_restarted_holding_with_a_witness_releases_what_it_cannot_prove() -> None:
    # Adopted at start (a backup restarted while holding): no proof of any claim, so no keeping them.
    d = Detector(DetectorSettings(VIPS, TIMING, master=MASTER, arp_probe=False, witness=WITNESS), 0.0, held=VIPS)
    assert d.state == "failed_over"
    out = d.handle_timer(0.0)
    assert d.state == "recovering" and kinds(out) == [Release]


def test_a_claim_refused_again_and_again_alarms_in_the_same_words() -> None:
    # The executor mails one text once per MAIL_REPEAT; the retries come every interval.
    d = backup()
    to_claiming(d)
    texts = []
    for _ in range(3):
        out = d.action_done(d._now + 0.01, ClaimDone("refused", detail="held by heartbeatd@master"))
        texts += [a.message for a in out if isinstance(a, Alarm) and a.mail]
        for _ in range(20):  # the retry: a probe (answered silent), then the claim again
            deadline = d.next_deadline()
            assert deadline is not None
            if any(isinstance(a, Probe) for a in d.handle_timer(deadline)):
                d.action_done(deadline + 0.01, ProbeDone(answered=frozenset()))
            if d.state == "claiming":
                break
        assert d.state == "claiming", d.state
    assert len(texts) == 3 and len(set(texts)) == 1, texts
