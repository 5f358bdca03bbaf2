"""heartbeatd's witness rows (spec/witness.md, "Integration plan"): with a witness the master
claims where it would add its managed addresses, waits W after the grant, adds them only with
a current proof, releases before its newest proof runs out (or at once when the claim is
lost), and gives the claim back once its addresses are gone.

Driven through the real core (legacy heartbeats and no ARP probe unless a test needs them:
the presumption of a silent backup is then the shortest way to a claim); times are the
core's inputs, never a clock."""

from __future__ import annotations

from _drive import KEY, VIPS

from failoverd.core import wire
from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Alarm,
    Claim,
    ClaimDone,
    Release,
    ReleaseClaim,
    ReleaseDone,
    RenewDone,
    Stopped,
    Transmit,
)
from failoverd.core.master import Master
from failoverd.core.settings import MasterSettings
from failoverd.core.witness import WitnessTiming

WITNESS = WitnessTiming()  # R 0.1 s, V 0.4 s, released 0.05 s before, W 0.401 s
FAIL_AFTER = 0.3


def master(*, witness: WitnessTiming | None = WITNESS, held: frozenset = frozenset(), key: bytes | None = None) -> Master:
    settings = MasterSettings(["10.0.1.2"], 0.1, managed=VIPS, backup_fail_after=FAIL_AFTER, arp_probe=False,
                              witness=witness)
    return Master(settings, 0.0, held=held, key=key, epoch=9)


def kinds(actions: list) -> list[type]:
    return [type(a) for a in actions if isinstance(a, (Acquire, Release, Claim, ReleaseClaim, Stopped))]


def run_until(m: Master, until: float) -> list:
    """Every timer the core asks for up to ``until``."""
    out: list = []
    for _ in range(1000):
        deadline = m.next_deadline()
        if deadline is None or deadline > until:
            return out
        out += m.handle_timer(deadline)
    raise AssertionError("the core asked for more than 1000 timers")


def to_holding(m: Master) -> float:
    """Presumed, claimed, granted, renewed through the wait, added: returns the claim's sending time."""
    out = run_until(m, FAIL_AFTER)
    assert m.state == "claiming" and kinds(out) == [Claim]
    sent = FAIL_AFTER + 0.001
    m.action_done(sent + 0.004, ClaimDone("granted", sent_at=sent, answered_at=sent + 0.004))
    t = sent
    while m.state == "granted":
        t += WITNESS.renew_period
        m.action_done(t + 0.003, RenewDone("proved", sent_at=t))
        out = run_until(m, t + 0.1)
    assert m.state == "acquiring" and kinds(out) == [Acquire]
    m.action_done(t + 0.11, AcquireDone(acquired=VIPS))
    assert m.state == "holding"
    return t


def test_without_a_witness_the_presumption_adds_the_addresses_as_before() -> None:
    m = master(witness=None)
    assert kinds(run_until(m, FAIL_AFTER)) == [Acquire] and m.snapshot(1.0)["witness"] is None


def test_the_master_claims_and_adds_only_after_w_with_a_current_proof() -> None:
    m = master()
    assert kinds(run_until(m, FAIL_AFTER)) == [Claim] and m.state == "claiming"
    sent, answered = 0.301, 0.305
    assert kinds(m.action_done(answered, ClaimDone("granted", sent_at=sent, answered_at=answered))) == []
    assert m.state == "granted" and m.snapshot(answered)["witness"]["claim"] is True
    # Renewed through the wait; nothing is added before answered + W.
    for k in range(1, 5):
        m.action_done(sent + k * 0.1 + 0.003, RenewDone("proved", sent_at=sent + k * 0.1))
    out = run_until(m, answered + WITNESS.wait_after_grant - 0.001)
    assert m.state == "granted" and kinds(out) == []
    out = run_until(m, answered + WITNESS.wait_after_grant)
    assert m.state == "acquiring" and kinds(out) == [Acquire]


def test_a_proof_that_runs_out_while_holding_releases_before_another_could_be_granted() -> None:
    m = master()
    last = to_holding(m)
    deadline = WITNESS.holder_deadline(last)
    assert m.next_deadline() <= deadline
    m.action_done(last + 0.15, RenewDone("unreachable", sent_at=last + 0.1, detail="no endpoint answered"))
    assert m.state == "holding" and not m.snapshot(last + 0.15)["witness"]["reachable"]
    out = run_until(m, deadline)
    assert m.state == "releasing" and kinds(out) == [Release]
    assert any(isinstance(a, Alarm) and "no current proof" in a.message for a in out)
    # The claim is given back once the addresses are gone, not before.
    out = m.action_done(deadline + 0.01, ReleaseDone(released=VIPS))
    assert m.state == "waiting" and kinds(out) == [ReleaseClaim]
    # etcd did not answer us: we claim again a retry interval later (nothing else would start it).
    assert kinds(run_until(m, deadline + 0.01 + 0.1 - 0.001)) == []
    assert kinds(run_until(m, deadline + 0.01 + 0.1)) == [Claim]


def test_a_lost_claim_releases_at_once() -> None:
    m = master()
    last = to_holding(m)
    out = m.action_done(last + 0.12, RenewDone("lost", sent_at=last + 0.1, detail="another host's claim"))
    assert m.state == "releasing" and kinds(out) == [Release]
    assert any(isinstance(a, Alarm) and "claim is lost" in a.message for a in out)
    # Lost: nothing to give back (the shell stopped renewing by itself).
    assert kinds(m.action_done(last + 0.13, ReleaseDone(released=VIPS))) == []


def test_a_refused_claim_waits_a_retry_interval_before_claiming_again() -> None:
    m = master()
    run_until(m, FAIL_AFTER)
    out = m.action_done(0.31, ClaimDone("refused", detail="held by failoverd@backup"))
    assert m.state == "waiting" and kinds(out) == []
    assert any(isinstance(a, Alarm) and "refused our claim (held by failoverd@backup)" in a.message for a in out)
    assert kinds(run_until(m, 0.31 + 0.1 - 0.001)) == []  # not at once, though the backup is still "dead"
    assert kinds(run_until(m, 0.31 + 0.1)) == [Claim] and m.state == "claiming"


def test_an_unreachable_witness_makes_heartbeats_say_leaving_while_nothing_is_held() -> None:
    m = master(key=KEY)
    run_until(m, FAIL_AFTER)
    m.action_done(0.31, ClaimDone("unreachable", detail="no endpoint answered"))
    frames = [wire.decode(a.payload, KEY) for a in m.handle_timer(m.next_deadline()) if isinstance(a, Transmit)]
    assert frames and all(f.leaving and not f.holds for f in frames)


def test_restarted_holding_with_a_witness_releases_what_it_cannot_prove() -> None:
    m = master(held=VIPS)
    assert m.state == "holding"
    out = m.handle_timer(0.0)
    assert m.state == "releasing" and kinds(out) == [Release]


def test_the_stop_releases_then_gives_the_claim_back() -> None:
    m = master()
    last = to_holding(m)
    out = m.shutdown(last + 0.12)
    assert m.state == "releasing" and kinds(out) == [Release]
    assert kinds(m.action_done(last + 0.13, ReleaseDone(released=VIPS))) == [ReleaseClaim, Stopped]


def test_a_grant_answered_after_the_stop_is_given_back() -> None:
    m = master()
    run_until(m, FAIL_AFTER)
    assert kinds(m.shutdown(0.302)) == []
    out = m.action_done(0.305, ClaimDone("granted", sent_at=0.301, answered_at=0.305))
    assert m.state == "stopped" and kinds(out) == [ReleaseClaim, Stopped]
