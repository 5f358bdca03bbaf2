"""The etcd witness with several backups (spec/witness.md, "With several backups"): heartbeatd's
core and two failoverd cores with peers, all three claiming one address through one etcd.

The real cores, authenticated, exchange their frames under a virtual clock: the master
(``--backups 2``, one heartbeat target per backup), the higher backup ``b1`` (priority 200) and the
lower ``b2`` (priority 100), each listing the other as ``--peer``. The etcd they claim from is a
small linearizable stand-in (one register: the claim's owner and when it was last written), whose
reachability each host sees apart (a cut host's requests time out). A takeover compares revisions
as the real client does (a claim held by another succeeds only if nothing wrote it during the
takeover's watch); ``takeover="at_will"`` grants every claim instead, the adversary of
witness.pml, so that safety is seen to rest on the wait after a grant and the proofs, not on the
revisions. Nothing here reads a clock; every run is bounded, and "never two holders" is asserted
at every address change.

Testing charter: no sockets, no sleeps, no timed assertions; figures are the virtual clock's.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from failoverd.core import wire
from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Alarm,
    Claim,
    ClaimDone,
    Probe,
    ProbeDone,
    Reach,
    ReachDone,
    Release,
    ReleaseClaim,
    ReleaseDone,
    RenewDone,
    StateChanged,
    Transmit,
)
from failoverd.core.addresses import parse_triplet
from failoverd.core.detector import Detector
from failoverd.core.master import Master
from failoverd.core.settings import DetectorSettings, MasterSettings
from failoverd.core.timing import Timing
from failoverd.core.witness import HolderProofs, WitnessTiming

KEY = b"witness-backups-key-0123"
VIPS = frozenset({parse_triplet("eth0:10.0.0.100/24")})
ADDRESS = {"master": "10.0.1.1", "b1": "10.0.1.2", "b2": "10.0.1.3"}
HOST_AT = {a: h for h, a in ADDRESS.items()}
PRIORITY = {"b1": 200, "b2": 100}
KEEP = WitnessTiming(keep_on_outage=True)  # R 0.1 s, V 0.4 s, released 0.05 s before, W 0.401 s
DROP = WitnessTiming()
LATENCY = 0.001  # a frame's way, and an address change
ETCD_RTT = 0.004
TIMEOUT = 0.1  # an unanswered request's deadline
MAX_STEPS = 400_000


@dataclass
class Trio:
    """heartbeatd and two failoverd with peers, their frames, their address changes and their etcd."""

    witness: WitnessTiming = KEEP
    master_backups: int = 2
    """heartbeatd's ``--backups``."""
    takeover: str = "revision"
    """``revision``: a held claim is taken over only if unchanged through the watch; ``at_will``: always."""
    now: float = 0.0
    reaches: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(ADDRESS, True))
    deliver: Callable[[str, str, bytes], bool] = lambda source, to, payload: True
    """Whether a frame from ``source`` to ``to`` arrives (a test's cut or filter)."""
    down: set[str] = field(default_factory=set)
    """Hosts killed: their frames, timers and answers are gone, and so are their addresses."""
    owner: str | None = None
    written: float = float("-inf")
    """When etcd last wrote the claim (a claim or a renewal): its revision, in effect."""
    configured: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(ADDRESS, False))
    sent: list[tuple[float, str, str, wire.Heartbeat]] = field(default_factory=list)
    """Every frame sent: (time, sender, receiver, frame)."""
    alarms: list[tuple[float, str, str]] = field(default_factory=list)
    acquires: list[tuple[float, str]] = field(default_factory=list)
    releases: list[tuple[float, str]] = field(default_factory=list)
    claims: list[tuple[float, str, str]] = field(default_factory=list)
    """Every claim's answer: (time, host, outcome)."""
    states: list[tuple[float, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        timing = Timing(interval=0.1)
        self.master = Master(
            MasterSettings((ADDRESS["b1"], ADDRESS["b2"]), 0.1, managed=tuple(VIPS), backup_fail_after=0.3,
                           arp_probe=False, witness=self.witness,
                           backups=self.master_backups), 0.0, key=KEY, epoch=7)
        self.cores: dict[str, Any] = {"master": self.master}
        for name, other in (("b1", "b2"), ("b2", "b1")):
            self.cores[name] = Detector(
                DetectorSettings(tuple(VIPS), timing, master=ADDRESS["master"], arp_probe=False, witness=self.witness,
                                 peers=(ADDRESS[other],), peer_priorities=(PRIORITY[other],), priority=PRIORITY[name]),
                0.0, key=KEY, epoch=PRIORITY[name])
        self._events: list[tuple[float, int, str, Callable[[], list]]] = []
        self._order = itertools.count()
        self._generation: dict[str, int] = dict.fromkeys(ADDRESS, 0)
        """Per host: renewals of a claim given back (or of a dead host) are not delivered."""

    # --- the world ---------------------------------------------------------------------

    def at(self, when: float, host: str, call: Callable[[], list]) -> None:
        heapq.heappush(self._events, (when, next(self._order), host, call))

    def run(self, until: float) -> None:
        for _ in range(MAX_STEPS):
            live = {h: c for h, c in self.cores.items() if h not in self.down}
            times = [t for t in (c.next_deadline() for c in live.values()) if t is not None]
            if self._events:
                times.append(self._events[0][0])
            when = min(times, default=until + 1)
            if when > until:
                self.now = until
                return
            self.now = max(self.now, when)
            if self._events and self._events[0][0] <= when:
                _, _, host, call = heapq.heappop(self._events)
                if host not in self.down:
                    self.take(host, call())
                continue
            for host, core in live.items():
                deadline = core.next_deadline()
                if deadline is not None and deadline <= self.now:
                    self.take(host, core.handle_timer(self.now))
                    break
        raise AssertionError(f"more than {MAX_STEPS} steps before {until}: a core spins")

    def restart_master(self) -> None:
        """heartbeatd is stopped and started again now (a new epoch; it held nothing)."""
        assert not self.configured["master"]
        self._generation["master"] += 1
        self._events = [e for e in self._events if e[2] != "master"]  # what the old process awaited
        heapq.heapify(self._events)
        self.master = Master(
            MasterSettings((ADDRESS["b1"], ADDRESS["b2"]), 0.1, managed=tuple(VIPS), backup_fail_after=0.3,
                           arp_probe=False, witness=self.witness, backups=self.master_backups),
            self.now, key=KEY, epoch=17)
        self.cores["master"] = self.master
        self.take("master", self.master.handle_timer(self.now))

    def kill(self, host: str) -> None:
        """The host dies: its addresses go with it, its claim stays in etcd unrenewed."""
        self.down.add(host)
        self.configured[host] = False
        self._generation[host] += 1

    def take(self, host: str, actions: list) -> None:
        core, now = self.cores[host], self.now
        for action in actions:
            if isinstance(action, Transmit):
                for target in action.targets:
                    to = HOST_AT[target]
                    self.sent.append((now, host, to, wire.decode(action.payload, KEY)))
                    if to not in self.down and self.deliver(host, to, action.payload):
                        self.at(now + LATENCY, to, lambda p=action.payload, s=ADDRESS[host], c=self.cores[to]:
                                c.receive_datagram(self.now, p, s, "priv0"))
            elif isinstance(action, Alarm):
                self.alarms.append((now, host, action.message))
            elif isinstance(action, StateChanged):
                self.states.append((now, host, action.dest))
            elif isinstance(action, Acquire):
                self.at(now + LATENCY, host, lambda a=action, c=core, h=host: self._acquired(h, c, a))
            elif isinstance(action, Release):
                self.at(now + LATENCY, host, lambda a=action, c=core, h=host: self._released(h, c, a))
            elif isinstance(action, Probe):
                # --no-arp-probe (the runtime probes 0 times): nobody answers, at once.
                self.at(now, host, lambda c=core: c.action_done(self.now, ProbeDone(answered=frozenset())))
            elif isinstance(action, Claim):
                self._claim(host, core)
            elif isinstance(action, ReleaseClaim):
                self._generation[host] += 1
                if self.owner == host and self.reaches[host]:
                    self.owner = None
            elif isinstance(action, Reach):
                sent = now
                if self.reaches[host]:
                    self.at(now + ETCD_RTT, host, lambda c=core, s=sent: c.action_done(self.now, ReachDone("answered", s)))
                else:
                    self.at(now + TIMEOUT, host, lambda c=core, s=sent: c.action_done(
                        self.now, ReachDone("unreachable", s, "no endpoint answered")))

    def _acquired(self, host: str, core: Any, action: Acquire) -> list:
        self.configured[host] = True
        self.acquires.append((self.now, host))
        holders = [h for h, on in self.configured.items() if on]
        assert len(holders) <= 1, f"two holders at {self.now:.3f}: {holders}"
        return core.action_done(self.now, AcquireDone(acquired=action.addresses))

    def _released(self, host: str, core: Any, action: Release) -> list:
        self.configured[host] = False
        self.releases.append((self.now, host))
        return core.action_done(self.now, ReleaseDone(released=action.addresses))

    def _claim(self, host: str, core: Any) -> None:
        asked = self.now
        if not self.reaches[host]:
            self.at(asked + 3 * TIMEOUT, host, lambda: self._answer_claim(host, core, ClaimDone(
                "unreachable", detail="no endpoint answered")))
            return
        if self.owner is None or self.takeover == "at_will":
            self.owner, self.written = host, asked  # takes effect now; the answer comes later
            self.at(asked + ETCD_RTT, host, lambda: self._granted(host, core, asked))
            return
        # Held: read its revision, watch it a while, then compare and take (runtime/claims.py).
        txn_at = asked + self.witness.takeover_watch

        def takeover() -> list:
            if self.written > asked or not self.reaches[host]:
                holder = self.owner
                return self._answer_claim(host, core, ClaimDone("refused", detail=f"held by {holder}"))
            self.owner, self.written = host, self.now
            self.at(self.now + ETCD_RTT, host, lambda: self._granted(host, core, txn_at))
            return []

        self.at(txn_at, host, takeover)

    def _answer_claim(self, host: str, core: Any, result: ClaimDone) -> list:
        self.claims.append((self.now, host, result.outcome))
        out: list = core.action_done(self.now, result)
        return out

    def _granted(self, host: str, core: Any, sent: float) -> list:
        out = self._answer_claim(host, core, ClaimDone("granted", sent_at=sent, answered_at=self.now))
        self._generation[host] += 1
        self._renew(host, core, sent + self.witness.renew_period, self._generation[host])
        return out

    def _renew(self, host: str, core: Any, sent: float, generation: int) -> None:
        def answer() -> list:
            if self._generation[host] != generation:
                return []
            if not self.reaches[host]:
                result = RenewDone("unreachable", sent_at=sent, detail="no endpoint answered")
                answered = sent + TIMEOUT
            else:
                mine = self.owner == host
                if mine:
                    self.written = self.now
                result = RenewDone("proved" if mine else "lost", sent_at=sent)
                answered = sent + ETCD_RTT
            self.at(answered, host, lambda: [] if self._generation[host] != generation
                    else core.action_done(self.now, result))
            if result.outcome != "lost":
                self._renew(host, core, max(answered, sent + self.witness.renew_period), generation)
            return []

        self.at(sent, host, answer)

    # --- what the tests read ------------------------------------------------------------

    def holder(self) -> str | None:
        held = [h for h, on in self.configured.items() if on]
        assert len(held) <= 1
        return held[0] if held else None

    def alarmed(self, host: str, words: str, since: float = 0.0) -> list[float]:
        return [t for t, h, message in self.alarms if h == host and words in message and t >= since]

    def flagged(self, host: str, to: str | None = None, since: float = 0.0) -> list[wire.Heartbeat]:
        return [f for t, h, r, f in self.sent
                if h == host and (to is None or r == to) and t >= since and f.witness_unreachable]

    def entered(self, host: str, state: str, since: float = 0.0) -> list[float]:
        return [t for t, h, s in self.states if h == host and s == state and t >= since]


def master_holding(trio: Trio) -> Trio:
    trio.run(2.0)
    assert trio.holder() == "master" and trio.master.state == "holding"
    assert trio.cores["b1"].state == trio.cores["b2"].state == "monitoring"
    return trio


def master_dead_b1_holding(trio: Trio) -> Trio:
    master_holding(trio)
    trio.kill("master")
    died = trio.now
    trio.run(died + 3.0)
    assert trio.holder() == "b1" and trio.cores["b1"].state == "failed_over"
    return trio


# --- who takes over ------------------------------------------------------------------------


def test_the_master_dies_the_higher_backup_claims_first_and_the_lower_never_tries() -> None:
    trio = master_holding(Trio())
    trio.kill("master")
    died = trio.now
    trio.run(died + 3.0)
    assert trio.holder() == "b1"
    (taken,) = [t for t, h in trio.acquires if h == "b1"]
    # The pair's bound: fail_after, the takeover's watch, two round trips, W, an address change.
    bound = KEEP.takeover_bound(0.3, ETCD_RTT, LATENCY)
    print(f"b1 holds {taken - died:.3f} s after the master's death (bound {bound:.3f} s)")
    assert taken - died <= bound + 0.1 + 2 * LATENCY  # + the heartbeat phase, and the frames' ways
    # The lower's deadline is later by its rank step: by then the higher says it holds (claiming).
    assert not trio.entered("b2", "claiming") and trio.entered("b2", "deferring")
    assert trio.owner == "b1"


def test_then_the_higher_dies_too_and_the_lower_takes_the_claim_over() -> None:
    trio = master_dead_b1_holding(Trio())
    trio.kill("b1")
    died = trio.now
    trio.run(died + 4.0)
    assert trio.holder() == "b2" and trio.owner == "b2"
    (taken,) = [t for t, h in trio.acquires if h == "b2"]
    print(f"b2 holds {taken - died:.3f} s after b1's death")


def test_the_higher_dead_from_the_start_the_lower_claims_after_its_rank_delay_without_the_higher_wait() -> None:
    trio = Trio()
    trio.kill("b1")
    master_holding(trio)
    trio.kill("master")
    died = trio.now
    trio.run(died + 4.0)
    assert trio.holder() == "b2"
    (claimed,) = [t for t, h, s in trio.states if h == "b2" and s == "claiming"]
    rank_delay = trio.cores["b2"]._rank_delay()
    print(f"b2 claims {claimed - died:.3f} s after the master's death (rank delay {rank_delay:.3f} s)")
    # fail_after + rank delay from its last heartbeat, not also a higher wait after the higher's silence.
    assert claimed - died <= 0.3 + rank_delay + 0.1 + LATENCY


def test_a_higher_backup_cut_from_etcd_is_not_deferred_to_the_lower_takes_over() -> None:
    trio = Trio()
    trio.reaches["b1"] = False
    master_holding(trio)
    trio.kill("master")
    died = trio.now
    trio.run(died + 5.0)
    assert trio.holder() == "b2" and trio.owner == "b2"
    assert trio.alarmed("b1", "the etcd witness is unreachable: cannot take over")
    assert not trio.cores["b1"].held


def backups_cut_apart_master_dead() -> tuple[Trio, float]:
    """The link between the backups cut (neither hears the other), then the master's death: the trio
    and when it died."""
    trio = Trio()
    trio.deliver = lambda source, to, payload: {source, to} != {"b1", "b2"}
    master_holding(trio)
    trio.kill("master")
    return trio, trio.now


def test_the_link_between_the_backups_cut_both_claim_and_etcd_grants_one() -> None:
    trio, died = backups_cut_apart_master_dead()
    trio.run(died + 5.0)
    assert trio.holder() == "b1" and trio.owner == "b1"  # the higher claimed first; the live holder's renewals
    refused = [t for t, h, outcome in trio.claims if h == "b2" and outcome == "refused"]
    assert refused  # the lower tried (it cannot hear the higher) and was refused
    assert trio.alarmed("b2", "refused our claim")


def test_a_lower_holder_does_not_yield_to_a_higher_peer_that_only_claims() -> None:
    """b2 holds (b1 was cut from etcd when the master died). b1 reaches etcd again but does not hear
    b2 (one way cut): it claims, its frames say holds, and its claim is refused while b2 renews.
    Without a witness b2 would yield to it; with one it keeps the address, and b1 never holds."""
    trio = Trio()
    trio.reaches["b1"] = False
    master_holding(trio)
    trio.kill("master")
    trio.run(trio.now + 4.0)
    assert trio.holder() == "b2"
    trio.reaches["b1"] = True
    trio.deliver = lambda source, to, payload: not (source == "b2" and to == "b1")
    since = trio.now
    trio.run(since + 4.0)
    assert trio.holder() == "b2" and trio.owner == "b2"
    assert [o for t, h, o in trio.claims if h == "b1" and t >= since and o == "refused"]
    assert not [t for t, h in trio.releases if h == "b2"] and not trio.alarmed("b2", "releasing")


def scramble(seed: int) -> Trio:
    """One seeded run against the adversary's etcd: 25 events, each a host's etcd cut or healed,
    all of etcd stopped or started, a link cut or healed, a backup killed (one at most), the
    master's checks failing or passing, with 0.05-1 s between them."""
    rng = random.Random(seed)
    trio = Trio(takeover="at_will", witness=KEEP if seed % 2 else DROP)
    cut: set[frozenset[str]] = set()
    trio.deliver = lambda source, to, payload: frozenset({source, to}) not in cut
    trio.run(1.0)
    for _ in range(25):
        what = rng.randrange(5)
        host = rng.choice(list(ADDRESS))
        if what == 0:
            trio.reaches[host] = not trio.reaches[host]
        elif what == 1:
            trio.reaches.update(dict.fromkeys(ADDRESS, rng.random() < 0.5))
        elif what == 2:
            cut.symmetric_difference_update({frozenset(rng.sample(list(ADDRESS), 2))})
        elif what == 3 and host != "master" and not trio.down:
            trio.kill(host)
        elif what == 4:
            trio.take("master", trio.master.health_changed(trio.now, rng.random() < 0.5, "check x"))
        trio.run(trio.now + rng.choice((0.05, 0.2, 0.5, 1.0)))
    trio.run(trio.now + 2.0)
    return trio


def test_never_two_holders_when_etcd_grants_every_claim_at_will() -> None:
    """The adversary's etcd (witness.pml's takeovers at will): every claim is granted, whoever holds.
    Forty seeded runs (keep and drop alternately): the wait after a grant, the proofs and the
    confirmations alone keep the holders apart (asserted at every acquire); and the runs are not
    vacuous: addresses move between all three hosts, claims are lost, holders keep on confirmations."""
    moved: set[str] = set()
    lost = kept = 0
    for seed in range(40):
        try:
            trio = scramble(seed)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {exc}") from exc
        moved |= {h for _, h in trio.acquires}
        lost += sum("claim is lost" in m for _, _, m in trio.alarms)
        kept += sum("keeping" in m for _, _, m in trio.alarms)
    print(f"40 runs: holders {sorted(moved)}, {lost} claims lost, {kept} holders kept on confirmations")
    assert moved == set(ADDRESS) and lost and kept


# --- --etcd-unreachable keep: every other host confirms ------------------------------------


def test_the_master_keeps_on_both_backups_confirmations_and_drops_when_one_stops() -> None:
    trio = master_holding(Trio())
    trio.reaches.update(dict.fromkeys(ADDRESS, False))
    trio.run(6.0)  # ten validities on confirmations
    assert trio.holder() == "master" and trio.master.state == "holding"
    assert trio.alarmed("master", "keeping eth0:10.0.0.100/24 on the confirmations of every backup")
    assert trio.flagged("b1", "master", since=2.3) and trio.flagged("b2", "master", since=2.3)
    trio.deliver = lambda source, to, payload: source != "b2"  # b2's frames stop: its confirmations too
    cut = trio.now
    newest = max(f.ack_seq for t, h, r, f in trio.sent if h == "b2" and r == "master" and t < cut
                 and f.witness_unreachable)
    (h,) = [t for t, s, r, f in trio.sent if s == "master" and f.seq == newest]
    trio.run(8.0)
    assert trio.holder() is None and trio.releases[0][1] == "master"
    assert trio.releases[0][0] <= KEEP.holder_deadline(h) + LATENCY  # by b2's last acknowledged heartbeat + V
    assert trio.alarmed("master", "the confirmations of every backup ran out")


def test_one_backups_confirmation_alone_keeps_nothing() -> None:
    """b2 reaches etcd (it confirms nothing); b1 confirms: the master drops at its proof's end, and
    the lower backup, reaching etcd, takes over."""
    trio = master_holding(Trio())
    trio.reaches.update(master=False, b1=False)
    trio.run(6.0)
    assert trio.flagged("b1", "master", since=2.3) and not trio.flagged("b2", since=2.0)
    assert trio.releases[0][1] == "master" and trio.releases[0][0] < 2.0 + KEEP.validity + TIMEOUT
    assert not trio.alarmed("master", "keeping")
    assert trio.holder() == "b2"


def test_the_master_cut_from_etcd_and_from_the_lower_backup_drops_before_the_lower_holds() -> None:
    """b1 confirms (it cannot reach etcd either); b2 reaches etcd and no longer hears the master:
    it takes the unrenewed claim over. Kept on b1's confirmation alone, the master would hold
    beside it."""
    trio = master_holding(Trio())
    trio.reaches.update(master=False, b1=False)
    trio.deliver = lambda source, to, payload: {source, to} != {"master", "b2"}
    trio.run(6.0)
    assert trio.flagged("b1", "master", since=2.3)
    assert trio.releases[0][1] == "master" and trio.holder() == "b2" and trio.owner == "b2"
    assert not trio.alarmed("master", "keeping")


def standing_down_master_b1_holding(trio: Trio) -> Trio:
    """The master's checks fail: it releases and says `leaving`; the higher backup claims and holds."""
    trio.run(2.0)
    trio.take("master", trio.master.health_changed(trio.now, False, "check x failed"))
    trio.run(4.0)
    assert trio.holder() == "b1" and trio.master.state == "standing_down"
    return trio


def test_a_backup_holder_keeps_on_the_masters_and_its_peers_confirmations() -> None:
    trio = standing_down_master_b1_holding(Trio())
    trio.reaches.update(dict.fromkeys(ADDRESS, False))
    trio.run(8.0)
    assert trio.holder() == "b1" and trio.cores["b1"].state == "failed_over"
    assert trio.alarmed("b1", "keeping eth0:10.0.0.100/24 on the confirmations of master and of every peer backup")
    # The peer's confirmations travel in its peer frames, acknowledging b1's.
    assert trio.flagged("b2", "b1", since=4.3) and trio.flagged("master", "b1", since=4.3)
    assert not trio.flagged("b1")  # the holder, with its grant read, never confirms
    trio.deliver = lambda source, to, payload: not (source == "b2" and to == "b1")  # the peer's frames stop
    cut = trio.now
    newest = max(f.ack_seq for t, h, r, f in trio.sent if h == "b2" and r == "b1" and t < cut and f.witness_unreachable)
    (h,) = [t for t, s, r, f in trio.sent if s == "b1" and f.seq == newest]
    trio.run(9.0)
    assert trio.holder() is None and trio.releases[-1][1] == "b1"
    assert trio.releases[-1][0] <= KEEP.holder_deadline(h) + LATENCY
    assert trio.alarmed("b1", "the confirmations of master and of every peer backup ran out")


def test_a_backup_holder_cut_from_etcd_and_from_its_peer_drops_before_the_peer_holds() -> None:
    """The master confirms (standing down, it cannot reach etcd either); b2 reaches etcd and no
    longer hears b1: it takes b1's unrenewed claim over. Kept on the master's confirmation alone,
    b1 would hold beside it."""
    trio = standing_down_master_b1_holding(Trio())
    trio.reaches.update(master=False, b1=False)
    trio.deliver = lambda source, to, payload: {source, to} != {"b1", "b2"}
    trio.run(8.0)
    assert trio.flagged("master", "b1", since=4.3)
    assert trio.releases[-1][1] == "b1" and trio.holder() == "b2" and trio.owner == "b2"


def test_a_backup_holder_whose_master_is_dead_drops_on_an_outage_nobody_confirms_for_it() -> None:
    """The master dead: it confirms nothing, and it cannot be told from a master cut from us that
    reaches etcd. So keep-and-refuse-new drops, as the pair does when its peer is silent."""
    trio = master_dead_b1_holding(Trio())
    trio.reaches.update(dict.fromkeys(ADDRESS, False))
    out_at = trio.now
    trio.run(out_at + 2.0)
    assert trio.holder() is None and trio.releases[-1][1] == "b1"
    assert trio.releases[-1][0] < out_at + KEEP.validity + TIMEOUT
    assert trio.flagged("b2", "b1", since=out_at)  # the peer confirmed: not enough alone


def test_drop_with_several_backups_asks_nothing_and_drops() -> None:
    trio = master_holding(Trio(witness=DROP))
    trio.reaches.update(dict.fromkeys(ADDRESS, False))
    trio.run(4.0)
    assert trio.holder() is None and trio.releases[0][1] == "master" and trio.releases[0][0] < 2.6
    assert not any(f.witness_unreachable for _, _, _, f in trio.sent)


def test_a_master_with_backups_1_takes_no_confirmation_from_a_backup_with_peers() -> None:
    """--backups 1 counts one host that could claim, but a backup whose frames carry a priority has
    peers: the master undercounts them, and keeping on one of their confirmations could leave the
    other to claim. So a master with --backups 1 takes confirmations only from a pair's backup
    (priority 0), and here drops at its proof's end. (Misconfigured so, one backup counts no
    heartbeat at all, and is refused its claims while the master renews.)"""
    trio = Trio(master_backups=1)
    trio.run(2.0)
    assert trio.holder() == "master"
    trio.reaches.update(dict.fromkeys(ADDRESS, False))
    trio.run(4.0)
    assert trio.flagged("b1", "master", since=2.3) and trio.flagged("b2", "master", since=2.3)
    assert trio.releases[0][1] == "master" and trio.releases[0][0] < 2.0 + KEEP.validity + TIMEOUT
    assert not trio.alarmed("master", "keeping")


# --- the rules put back weaker: what each one is for ----------------------------------------


def test_with_one_confirmation_enough_two_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A holder that keeps on any one other host's confirmation (a pair's rule) holds beside a
    host that reaches etcd and takes the claim over: both scenarios above give two holders."""
    monkeypatch.setattr(HolderProofs, "newest_confirmed_at", property(
        lambda self: max(self.confirmed_at.values()) if self.confirmed_at else None))
    for scenario in (test_the_master_cut_from_etcd_and_from_the_lower_backup_drops_before_the_lower_holds,
                     test_a_backup_holder_cut_from_etcd_and_from_its_peer_drops_before_the_peer_holds):
        with pytest.raises(AssertionError, match="two holders"):
            scenario()


def test_deferring_to_a_higher_peer_as_without_a_witness_leaves_the_address_to_nobody(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a witness a lower backup defers to a present, fit, higher peer (spec/backups.md, fix 2).
    With one, a higher peer cut from etcd says it holds nothing and never can: deferring to it, the
    lower never claims."""
    def deferred(self: Detector) -> bool:
        peers = self._peers
        return peers is not None and (peers.holder(self._now) is not None or peers.higher_fit(self._now) is not None)

    monkeypatch.setattr(Detector, "_deferred", deferred)
    trio = Trio()
    trio.reaches["b1"] = False
    master_holding(trio)
    trio.kill("master")
    trio.run(trio.now + 5.0)
    assert trio.holder() is None and not trio.entered("b2", "claiming")


# --- a master that returns cut from etcd (spec/witness.md, "A master that returns") ------------


@pytest.mark.parametrize("witness", [KEEP, DROP], ids=["keep", "drop"])
def test_a_master_restarted_while_cut_from_etcd_alone_leaves_the_backup_holding(witness: WitnessTiming) -> None:
    """With two backups as with one: the holder keeps the address until etcd answers the master,
    then the failback runs; the other backup never claims."""
    trio = master_holding(Trio(witness=witness))
    trio.reaches["master"] = False
    trio.run(4.0)
    assert trio.holder() == "b1"
    trio.restart_master()
    restarted = trio.now
    trio.run(restarted + 3.0)
    assert trio.holder() == "b1" and trio.cores["b1"].state == "failed_over"
    assert not [t for t, h in trio.releases if t >= restarted]
    assert not trio.entered("master", "claiming", since=restarted) and not trio.entered("b2", "claiming")
    trio.reaches["master"] = True
    trio.run(trio.now + 3.0)
    assert trio.holder() == "master" and trio.master.state == "holding"


@pytest.mark.parametrize("witness", [KEEP, DROP], ids=["keep", "drop"])
def test_a_master_rejoined_while_cut_claims_only_after_the_holder_released_once_etcd_answers(
        witness: WitnessTiming) -> None:
    """Review: the master's check fails (the backup takes over), it is cut from etcd, and its check
    passes again. Standing down it kept a claim retry pending; when etcd first answered, the same
    step that let the backup fail back fired that retry: the master claimed the key while b1 still
    held it, the claim was spoiled by b1's give-back, and the failback's gap grew by 0.15 s. Now the
    claim waits for b1's "I hold nothing", as after a restart."""
    trio = master_holding(Trio(witness=witness))
    trio.take("master", trio.master.health_changed(trio.now, False, "check x failed"))
    trio.run(trio.now + 2.0)
    assert trio.holder() == "b1"
    trio.reaches["master"] = False
    trio.run(trio.now + 1.0)
    trio.take("master", trio.master.health_changed(trio.now, True))
    trio.run(trio.now + 2.0)
    assert trio.holder() == "b1"
    trio.reaches["master"] = True
    back = trio.now
    trio.run(back + 3.0)
    assert trio.holder() == "master" and trio.master.state == "holding"
    (released,) = [t for t, h in trio.releases if h == "b1" and t >= back]
    claiming = [t for t, h, s in trio.states if h == "master" and s == "claiming" and t >= back]
    outcomes = [o for t, h, o in trio.claims if h == "master" and t >= back]
    print(f"etcd back: b1 released {released - back:.3f} s later, the master claimed at {claiming[0] - back:.3f} s, "
          f"outcomes {outcomes}")
    assert claiming and claiming[0] >= released and outcomes[0] == "granted"


# --- the contested retry's backoff -------------------------------------------------------------


def test_a_contested_backup_backs_its_claims_off_to_the_failure_timeout_and_still_takes_over_in_bound() -> None:
    """The backups cut from each other, the master dead: b1 holds, b2 hears nobody and is refused at
    every claim while b1 renews. Its retries come 0.1, 0.2, then every 0.3 s (fail_after) after a
    refusal, not every interval; once b1 dies, b2 takes over within the bound of spec/witness.md
    ("The contested retry"): the attempt in flight, the cap, then a takeover."""
    trio, died = backups_cut_apart_master_dead()
    trio.run(died + 6.0)
    assert trio.holder() == "b1"
    refused = [t for t, h, outcome in trio.claims if h == "b2" and outcome == "refused"]
    claims = [t for t, h, s in trio.states if h == "b2" and s == "claiming"]
    waits = [round(c - r, 3) for r, c in zip(refused, claims[1:], strict=False)]
    print(f"b2 contested: {len(claims)} claims in {trio.now - claims[0]:.1f} s, waits after a refusal {waits[:5]}")
    assert waits[:3] == [0.1, 0.2, 0.3] and set(waits[3:]) == {0.3}
    trio.kill("b1")
    b1_died = trio.now
    trio.run(b1_died + 3.0)
    assert trio.holder() == "b2" and trio.owner == "b2"
    (taken,) = [t for t, h in trio.acquires if h == "b2"]
    cap = 0.3
    attempt = KEEP.takeover_watch + 2 * ETCD_RTT
    bound = attempt + cap + KEEP.takeover_bound(0.0, ETCD_RTT, LATENCY)
    print(f"b2 holds {taken - b1_died:.3f} s after b1's death (bound {bound:.3f} s; "
          f"the pair's takeover bound {KEEP.takeover_bound(0.3, ETCD_RTT, LATENCY):.3f} s)")
    assert taken - b1_died <= bound + 2 * LATENCY


def test_the_backoff_starts_afresh_with_the_next_contest() -> None:
    """The contest ends (b2 hears the master again); the next one retries after one interval again."""
    trio = Trio()
    trio.deliver = lambda source, to, payload: {source, to} != {"b1", "b2"} and not (
        source == "master" and to == "b2")
    trio.run(4.0)  # b2 cannot hear the master: it claims and is refused, again and again
    assert trio.holder() == "master" and round(trio.cores["b2"]._claim_retry_after, 3) == 0.3
    trio.deliver = lambda source, to, payload: {source, to} != {"b1", "b2"}
    trio.run(trio.now + 1.0)
    assert trio.cores["b2"].state == "monitoring"
    trio.deliver = lambda source, to, payload: {source, to} != {"b1", "b2"} and not (
        source == "master" and to == "b2")
    again = trio.now
    trio.run(again + 1.5)
    refused = [t for t, h, outcome in trio.claims if h == "b2" and outcome == "refused" and t >= again]
    claims = [t for t, h, s in trio.states if h == "b2" and s == "claiming" and t >= again]
    assert round(claims[1] - refused[0], 3) == 0.1
