"""``--etcd-unreachable keep`` (keep-and-refuse-new, spec/witness.md): a holder whose proof runs out
because etcd does not answer keeps its addresses while its peer confirms, answering a frame the
holder sent at ``h``, that it cannot reach etcd either, and only until ``h + V``.

Both real cores, authenticated, exchange their frames under a virtual clock; the etcd they claim
from is a small linearizable stand-in whose reachability each host sees apart (a claim is granted
to whoever asks while it answers it: takeovers are the adversary's, as in witness.pml). Nothing
here reads a clock. Every run checks "never two holders" at every address change."""

from __future__ import annotations

import heapq
import itertools
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
from failoverd.core.witness import WitnessTiming

KEY = b"keep-test-key-0123456789"
VIPS = frozenset({parse_triplet("eth0:10.0.0.100/24")})
MASTER, BACKUP = "10.0.1.1", "10.0.1.2"
KEEP = WitnessTiming(keep_on_outage=True)  # R 0.1 s, V 0.4 s, released 0.05 s before, W 0.401 s
DROP = WitnessTiming()
LATENCY = 0.001  # a frame's way, and an address change
ETCD_RTT = 0.004
TIMEOUT = 0.1  # an unanswered request's deadline


@dataclass
class Pair:
    """heartbeatd and failoverd, their frames, their address changes and their etcd."""

    witness: WitnessTiming = KEEP
    master_witness: WitnessTiming | None = None
    now: float = 0.0
    reaches: dict[str, bool] = field(default_factory=lambda: {"master": True, "backup": True})
    """Whether etcd answers each host (a cut host's requests time out)."""
    deliver: Callable[[str, bytes, float], bool] = lambda to, payload, now: True
    """Whether a frame to ``to`` arrives (a test's cut or filter)."""
    owner: str | None = None
    configured: dict[str, bool] = field(default_factory=lambda: {"master": False, "backup": False})
    sent: list[tuple[float, str, wire.Heartbeat]] = field(default_factory=list)
    """Every frame either core sent: (time, sender, frame)."""
    alarms: list[tuple[float, str, str]] = field(default_factory=list)
    releases: list[tuple[float, str]] = field(default_factory=list)
    acquires: list[tuple[float, str]] = field(default_factory=list)
    reach_asked: dict[str, int] = field(default_factory=lambda: {"master": 0, "backup": 0})
    states: list[tuple[float, str, str]] = field(default_factory=list)
    managed: frozenset = VIPS
    unaddable: frozenset = frozenset()
    """Addresses every acquire fails to add (a kernel that refuses them): each core retries them."""
    timer_wakeups: dict[str, int] = field(default_factory=lambda: {"master": 0, "backup": 0})

    def __post_init__(self) -> None:
        self.master = Master(
            MasterSettings([BACKUP], 0.1, managed=self.managed, backup_fail_after=0.3, arp_probe=False,
                           witness=self.master_witness or self.witness), 0.0, key=KEY, epoch=7)
        self.backup = Detector(
            DetectorSettings(self.managed, Timing(interval=0.1), master=MASTER, arp_probe=False,
                             witness=self.witness),
            0.0, key=KEY, epoch=8)
        self.cores: dict[str, Any] = {"master": self.master, "backup": self.backup}
        self._events: list[tuple[float, int, str, Callable[[], list]]] = []
        self._order = itertools.count()
        self._renewing: dict[str, int] = {"master": 0, "backup": 0}
        """A generation per host: renewals of a claim given back are not delivered."""

    def restart_master(self) -> None:
        """heartbeatd is killed and started again now (a new epoch; its claim is not renewed)."""
        self._renewing["master"] += 1
        self._events = [e for e in self._events if e[2] != "master"]  # what the old process awaited
        heapq.heapify(self._events)
        self.master = Master(
            MasterSettings([BACKUP], 0.1, managed=self.managed, backup_fail_after=0.3, arp_probe=False,
                           witness=self.master_witness or self.witness), self.now, key=KEY, epoch=17)
        self.cores["master"] = self.master
        self.take("master", self.master.handle_timer(self.now))

    # --- the world ---------------------------------------------------------------------

    def at(self, when: float, host: str, call: Callable[[], list]) -> None:
        heapq.heappush(self._events, (when, next(self._order), host, call))

    def run(self, until: float) -> None:
        for _ in range(200_000):
            times = [t for t in (self.master.next_deadline(), self.backup.next_deadline()) if t is not None]
            if self._events:
                times.append(self._events[0][0])
            when = min(times)
            if when > until:
                self.now = until
                return
            self.now = max(self.now, when)
            if self._events and self._events[0][0] <= when:
                _, _, host, call = heapq.heappop(self._events)
                self.take(host, call())
                continue
            for host, core in self.cores.items():
                deadline = core.next_deadline()
                if deadline is not None and deadline <= self.now:
                    self.timer_wakeups[host] += 1
                    self.take(host, core.handle_timer(self.now))
                    break
        raise AssertionError("more than 200000 steps")

    def take(self, host: str, actions: list) -> None:
        core, now = self.cores[host], self.now
        peer, peer_address = ("backup", MASTER) if host == "master" else ("master", BACKUP)
        for action in actions:
            if isinstance(action, Transmit):
                self.sent.append((now, host, wire.decode(action.payload, KEY)))
                if self.deliver(peer, action.payload, now):
                    payload = action.payload
                    self.at(now + LATENCY, peer, lambda p=payload, s=peer_address, c=self.cores[peer]:
                            c.receive_datagram(self.now, p, s, "priv0"))
            elif isinstance(action, Alarm):
                self.alarms.append((now, host, action.message))
            elif isinstance(action, StateChanged):
                self.states.append((now, host, action.dest))
            elif isinstance(action, Acquire):
                self.at(now + LATENCY, host, lambda a=action, c=core, h=host: self._acquired(h, c, a))
            elif isinstance(action, Release):
                self.at(now + LATENCY, host, lambda a=action, c=core, h=host: self._released(h, c, a))
            elif isinstance(action, Claim):
                self._claim(host, core)
            elif isinstance(action, ReleaseClaim):
                self._renewing[host] += 1
                if self.owner == host and self.reaches[host]:
                    self.owner = None
            elif isinstance(action, Reach):
                self.reach_asked[host] += 1
                sent = now
                if self.reaches[host]:
                    self.at(now + ETCD_RTT, host, lambda c=core, s=sent: c.action_done(self.now, ReachDone("answered", s)))
                else:
                    self.at(now + TIMEOUT, host, lambda c=core, s=sent: c.action_done(
                        self.now, ReachDone("unreachable", s, "no endpoint answered")))

    def _acquired(self, host: str, core: Any, action: Acquire) -> list:
        added, failed = action.addresses - self.unaddable, action.addresses & self.unaddable
        if added:
            self.configured[host] = True
            self.acquires.append((self.now, host))
        other = "backup" if host == "master" else "master"
        assert not (self.configured[host] and self.configured[other]), f"two holders at {self.now}"
        return core.action_done(self.now, AcquireDone(acquired=added, failed=failed))

    def _released(self, host: str, core: Any, action: Release) -> list:
        self.configured[host] = False
        self.releases.append((self.now, host))
        return core.action_done(self.now, ReleaseDone(released=action.addresses))

    def _claim(self, host: str, core: Any) -> None:
        sent = self.now
        if not self.reaches[host]:
            self.at(sent + 3 * TIMEOUT, host, lambda: core.action_done(self.now, ClaimDone("unreachable", detail="down")))
            return
        self.owner = host  # takes effect now; the answer comes later

        def granted() -> list:
            out: list = core.action_done(self.now, ClaimDone("granted", sent_at=sent, answered_at=self.now))
            self._renewing[host] += 1
            self._renew(host, core, sent + KEEP.renew_period, self._renewing[host])
            return out

        self.at(sent + ETCD_RTT, host, granted)

    def _renew(self, host: str, core: Any, sent: float, generation: int) -> None:
        def answer() -> list:
            if self._renewing[host] != generation:
                return []
            if not self.reaches[host]:
                result = RenewDone("unreachable", sent_at=sent, detail="no endpoint answered")
                answered = sent + TIMEOUT
            else:
                result = RenewDone("proved" if self.owner == host else "lost", sent_at=sent)
                answered = sent + ETCD_RTT
            # Answered later than sent: deliver at the answer's time (the renewal loop's next sending
            # a renew period after this one, as runtime/executor.py does).
            self.at(answered, host, lambda: [] if self._renewing[host] != generation else core.action_done(self.now, result))
            if result.outcome != "lost":
                self._renew(host, core, max(answered, sent + KEEP.renew_period), generation)
            return []

        self.at(sent, host, answer)

    # --- what the tests read ------------------------------------------------------------

    def holder(self) -> str | None:
        held = [h for h, on in self.configured.items() if on]
        assert len(held) <= 1
        return held[0] if held else None

    def alarmed(self, host: str, words: str, since: float = 0.0) -> list[float]:
        return [t for t, h, message in self.alarms if h == host and words in message and t >= since]

    def flagged(self, host: str, since: float = 0.0) -> list[wire.Heartbeat]:
        return [f for t, h, f in self.sent if h == host and t >= since and f.witness_unreachable]

    def longest_gap(self, since: float, until: float) -> float:
        """The longest time between ``since`` and ``until`` during which nobody held the address."""
        changes = sorted([(t, h, True) for t, h in self.acquires] + [(t, h, False) for t, h in self.releases])
        on = {h: False for h in self.configured}
        longest, empty_from = 0.0, None
        for t, h, added in changes:
            if t > until:
                break
            on[h] = added
            if t < since:
                continue
            if not any(on.values()) and empty_from is None:
                empty_from = t
            elif any(on.values()) and empty_from is not None:
                longest, empty_from = max(longest, t - empty_from), None
        if empty_from is not None:
            longest = max(longest, until - empty_from)
        return longest


def master_holding(pair: Pair) -> Pair:
    pair.run(2.0)
    assert pair.holder() == "master" and pair.master.state == "holding" and pair.backup.state == "monitoring"
    return pair


def test_keep_holds_on_the_backups_confirmations_while_etcd_is_down_and_then_renews() -> None:
    pair = master_holding(Pair())
    assert pair.reach_asked["backup"] > 0 and not pair.flagged("backup")  # asked, answered: no confirmation
    pair.reaches.update(master=False, backup=False)
    pair.run(8.0)  # fifteen times the proof's validity
    assert pair.holder() == "master" and pair.master.state == "holding" and pair.backup.state == "monitoring"
    assert len(pair.alarmed("master", "etcd unreachable, keeping eth0:10.0.0.100/24 on the backup's confirmation")) == 1
    assert pair.alarmed("backup", "the etcd witness is unreachable")  # the confirmer says so too
    assert pair.flagged("backup", since=2.3) and not pair.flagged("master")
    status = pair.master.snapshot(8.0)["witness"]
    assert status["reachable"] is False and status["claim"] and status["proof_left"] < 0 < status["confirmation_left"]
    pair.reaches.update(master=True, backup=True)  # the cluster restarted: the claim and its lease survived
    pair.run(10.0)
    assert pair.holder() == "master" and pair.alarmed("master", "proves our claim again")
    assert pair.master.snapshot(10.0)["witness"]["proof_left"] > 0
    assert not pair.flagged("backup", since=8.2) and not pair.releases


def test_keep_drops_when_the_confirmations_stop_by_the_last_acknowledged_heartbeat_plus_v() -> None:
    pair = master_holding(Pair())
    pair.reaches.update(master=False, backup=False)
    pair.run(4.0)
    assert pair.holder() == "master"
    pair.deliver = lambda to, payload, now: to != "master"  # the backup's statuses stop arriving
    cut = pair.now
    # The newest confirmation acknowledged a heartbeat sent at most an interval and a frame's way before the cut.
    newest_acked = max(f.ack_seq for t, h, f in pair.sent if h == "backup" and t < cut and f.witness_unreachable)
    (h,) = [t for t, host, f in pair.sent if host == "master" and f.seq == newest_acked]
    pair.run(6.0)
    assert pair.holder() is None and pair.releases[0][1] == "master"
    assert pair.releases[0][0] <= KEEP.holder_deadline(h) + LATENCY
    assert pair.alarmed("master", "etcd unreachable and the backup's confirmation ran out")
    # The master, holding nothing and cut from etcd, says `leaving`; the backup tries, and takes nothing.
    assert pair.alarmed("backup", "the etcd witness is unreachable: cannot take over") and not pair.backup.held


def test_keep_drops_when_the_backup_reaches_etcd_and_the_backup_takes_over() -> None:
    pair = master_holding(Pair())
    pair.reaches["master"] = False  # only the holder is cut from etcd
    pair.run(6.0)
    assert not pair.flagged("backup")  # it reaches etcd: it confirms nothing
    assert pair.releases[0][1] == "master" and pair.holder() == "backup"  # after the master's leaving, and W


def test_drop_drops_at_the_proofs_end_and_confirms_nothing() -> None:
    pair = master_holding(Pair(witness=DROP))
    pair.reaches.update(master=False, backup=False)
    pair.run(4.0)
    assert pair.holder() is None and pair.releases[0][1] == "master" and pair.releases[0][0] < 2.6
    # The backup never asks; the master asks only while the backup says it holds (here while it
    # claims, on our `leaving`), to know when a failback could begin. Nobody confirms.
    assert pair.reach_asked["backup"] == 0 and not pair.flagged("backup") and not pair.flagged("master")
    assert not pair.alarmed("master", "keeping")


def test_a_drop_holder_ignores_a_keep_peers_confirmations() -> None:
    pair = master_holding(Pair(witness=KEEP, master_witness=DROP))
    pair.reaches.update(master=False, backup=False)
    pair.run(4.0)
    assert pair.flagged("backup") and pair.holder() is None and pair.releases[0][1] == "master"


def test_a_withheld_confirmation_counts_from_the_heartbeat_it_answers_and_a_replay_from_nothing() -> None:
    pair = master_holding(Pair())
    pair.reaches.update(master=False, backup=False)
    pair.run(3.0)
    held_back: list[bytes] = []

    def withhold(to: str, payload: bytes, now: float) -> bool:
        if to == "master":
            held_back.append(payload)
            return False
        return True

    pair.deliver = withhold
    pair.run(3.05)
    assert held_back
    frame = wire.decode(held_back[0], KEY)
    assert frame.witness_unreachable
    (h,) = [t for t, host, f in pair.sent if host == "master" and f.seq == frame.ack_seq]
    pair.run(3.2)  # withheld 0.2 s, within the backup's failure timeout: it still counts on arrival
    assert pair.holder() == "master"
    before = pair.master._proofs.confirmation_deadline
    assert before is not None and before < KEEP.holder_deadline(h)  # it will count
    pair.master.receive_datagram(pair.now, held_back[0], BACKUP, "priv0")
    assert pair.master._proofs.confirmation_deadline == KEEP.holder_deadline(h)  # not its arrival + V
    deadline = pair.master.next_deadline()
    pair.master.receive_datagram(pair.now, held_back[0], BACKUP, "priv0")  # replayed: refused, extends nothing
    assert pair.master.counters.rejected.get("replay") == 1 and pair.master.next_deadline() == deadline
    pair.run(4.0)
    assert pair.holder() is None and pair.releases[0][1] == "master"
    assert pair.releases[0][0] <= KEEP.holder_deadline(h) + LATENCY


def standing_down_master_backup_holding(pair: Pair) -> Pair:
    """The master's checks fail: it releases and says `leaving`; the backup claims and holds."""
    pair.run(2.0)
    pair.take("master", pair.master.health_changed(pair.now, False, "check x failed"))
    pair.run(4.0)
    assert pair.holder() == "backup" and pair.backup.state == "failed_over" and pair.master.state == "standing_down"
    return pair


def test_a_backup_holder_keeps_on_the_masters_confirmations_and_never_confirms_itself() -> None:
    pair = standing_down_master_backup_holding(Pair())
    pair.reaches.update(master=False, backup=False)
    pair.run(8.0)
    assert pair.holder() == "backup" and pair.backup.state == "failed_over"
    assert pair.alarmed("backup", "etcd unreachable, keeping eth0:10.0.0.100/24 on master's confirmation")
    assert pair.flagged("master", since=4.3)
    assert not pair.flagged("backup")  # the holder, with its grant read, never confirms
    pair.deliver = lambda to, payload, now: to != "backup"  # the master's heartbeats stop
    pair.run(9.0)
    assert pair.holder() is None and pair.alarmed("backup", "etcd unreachable and master's confirmation ran out")


def test_a_master_restarted_during_the_outage_does_not_make_the_backup_let_go_until_etcd_answers() -> None:
    """The backup holds on the master's confirmations; heartbeatd restarts meanwhile. Its heartbeats
    (not `leaving`: it holds nothing) would make the backup fail back, leaving the address to a
    master that cannot claim it. The backup keeps it while the restarted master confirms, and fails
    back once etcd answers again."""
    pair = standing_down_master_backup_holding(Pair())
    pair.reaches.update(master=False, backup=False)
    pair.run(5.0)
    assert pair.holder() == "backup" and pair.alarmed("backup", "keeping")
    pair.take("master", pair.master.health_changed(pair.now, True))  # its check passes again...
    pair.restart_master()  # ...and it restarts, with etcd still down
    pair.run(8.0)
    assert pair.holder() == "backup" and pair.backup.state == "failed_over"
    assert not [t for t, host in pair.releases if host == "backup"]
    # The restarted master, with no answer from etcd, says `leaving` to the holder from its first
    # answer on (even to the backup's status from before the restart): the backup keeps without
    # the "master is back" path, which stays for a master that says otherwise (an older one).
    assert not pair.alarmed("backup", "master is back")
    assert pair.alarmed("master", "the etcd witness is unreachable")
    assert pair.flagged("master", since=5.5)  # the restarted master confirms
    pair.reaches.update(master=True, backup=True)
    pair.run(12.0)
    assert pair.holder() == "master" and pair.master.state == "holding"
    assert [host for t, host in pair.releases if t > 5.0] == ["backup"]


def test_a_master_whose_check_passes_again_during_the_outage_confirms_instead_of_claiming() -> None:
    """The same without a restart (found in review): the rejoined master retried its claim every
    retry interval; while claiming it confirmed nothing, and the backup's keep ran out."""
    pair = standing_down_master_backup_holding(Pair())
    pair.reaches.update(master=False, backup=False)
    pair.run(5.0)
    before = pair.timer_wakeups["master"]
    pair.take("master", pair.master.health_changed(pair.now, True))
    pair.run(8.0)
    assert pair.holder() == "backup" and pair.backup.state == "failed_over"
    assert not [t for t, host in pair.releases if host == "backup"]
    assert not [t for t, h, state in pair.states if h == "master" and state == "claiming" and t > 5.0]
    assert pair.flagged("master", since=5.5)
    assert pair.timer_wakeups["master"] - before < 200  # heartbeats and questions, not a spin on the retry
    pair.reaches.update(master=True, backup=True)
    pair.run(12.0)
    assert pair.holder() == "master" and pair.master.state == "holding"


def test_a_host_claiming_or_with_a_grant_never_confirms_whatever_it_last_heard_from_etcd() -> None:
    pair = master_holding(Pair())
    pair.reaches["backup"] = False  # the backup alone is cut from etcd: it says so
    pair.run(2.5)
    assert pair.flagged("backup", since=2.2) and pair.holder() == "master"
    # It reaches etcd again just as the master steps down (its leaving heartbeats ask for a takeover).
    pair.reaches["backup"] = True
    asked_before = pair.reach_asked["backup"]
    pair.take("master", pair.master.health_changed(pair.now, False, "check x failed"))
    pair.run(3.5)
    claimed = min(t for t, h, state in pair.states if h == "backup" and state == "claiming")
    granted = min(t for t, h, state in pair.states if h == "backup" and state == "granted")
    assert claimed < granted
    # Its last question failed, and none was asked while it claimed (the rule, not the questions,
    # keeps the flag off); the grant's answer then clears it.
    assert pair.backup._confirmer is not None and pair.backup._confirmer.unanswered_at is None
    assert pair.reach_asked["backup"] == asked_before
    assert [f for t, h, f in pair.sent if h == "backup" and t >= claimed]  # it answered the leaving heartbeats...
    assert not pair.flagged("backup", since=claimed)  # ...never confirming
    assert pair.holder() == "backup"


TWO_VIPS = VIPS | {parse_triplet("eth0:10.0.0.101/24")}
REFUSED = frozenset({parse_triplet("eth0:10.0.0.101/24")})


def test_a_retry_that_needs_a_proof_waits_for_one_without_waking_the_timer_while_kept() -> None:
    """Kept on confirmations, the retry to add a missing address cannot run (configuring needs a
    proof): its deadline must not be offered, or the timer wakes at once, forever (found in review)."""
    pair = master_holding(Pair(managed=TWO_VIPS, unaddable=REFUSED))
    assert pair.master.held == VIPS and pair.master.state == "holding"
    pair.reaches.update(master=False, backup=False)
    before = pair.timer_wakeups["master"]
    pair.run(8.0)  # 6 s kept on confirmations, with the retry pending all along
    assert pair.holder() == "master" and pair.master.state == "holding"
    assert pair.alarmed("master", "keeping")
    # Its heartbeats (10/s), its questions to etcd and the retries before the proof ran out: not a spin.
    assert pair.timer_wakeups["master"] - before < 200
    pair.reaches.update(master=True, backup=True)
    pair.unaddable = frozenset()
    pair.run(10.0)  # a proof again: the retry runs, and adds the address
    assert pair.master.held == TWO_VIPS


def test_a_backup_holders_retry_that_needs_a_proof_waits_for_one_without_waking_the_timer_while_kept() -> None:
    pair = standing_down_master_backup_holding(Pair(managed=TWO_VIPS, unaddable=REFUSED))
    assert pair.backup.held == VIPS
    pair.reaches.update(master=False, backup=False)
    before = pair.timer_wakeups["backup"]
    pair.run(8.0)
    assert pair.holder() == "backup" and pair.backup.state == "failed_over"
    assert pair.alarmed("backup", "keeping")
    assert pair.timer_wakeups["backup"] - before < 200
    pair.reaches.update(master=True, backup=True)
    pair.unaddable = frozenset()
    pair.run(10.0)
    assert pair.backup.held == TWO_VIPS


# --- a master that returns cut from etcd, alone (issue 14's failback gap; keep and drop) -----------


def backup_holding_master_cut(witness: WitnessTiming) -> Pair:
    """The master alone is cut from etcd: it drops at its proof's end and says `leaving`; the backup,
    which reaches etcd, takes over."""
    pair = master_holding(Pair(witness=witness))
    pair.reaches["master"] = False
    pair.run(4.0)
    assert pair.holder() == "backup" and pair.backup.state == "failed_over" and not pair.flagged("backup")
    return pair


def failback_when_etcd_answers_the_master_again(pair: Pair, since: float) -> None:
    """etcd answers the master again: the backup fails back, and the only gap is the managed
    failback's own (the master claims the key the backup gave back and waits W)."""
    pair.reaches["master"] = True
    back = pair.now
    pair.run(back + 3.0)
    assert pair.holder() == "master" and pair.master.state == "holding" and pair.backup.state == "monitoring"
    (released,) = [t for t, h in pair.releases if h == "backup" and t >= since]
    gap = pair.longest_gap(released - LATENCY, pair.now)
    print(f"etcd back for the master: the backup released {released - back:.3f} s later, nobody held for {gap:.3f} s")
    assert gap <= pair.witness.wait_after_grant + ETCD_RTT + 4 * LATENCY


@pytest.mark.parametrize("witness", [KEEP, DROP], ids=["keep", "drop"])
def test_a_master_restarted_while_cut_from_etcd_alone_leaves_the_backup_holding_until_etcd_answers_it(
        witness: WitnessTiming) -> None:
    """heartbeatd restarts while it alone cannot reach etcd. Its heartbeats, holding nothing, made the
    backup fail back at once, and the master could not claim: nobody held the address until the
    backup took it again after the master's failed claim (0.6 - 0.8 s). Now, with no answer from
    etcd since it started, the master says `leaving` to a backup that holds, and asks etcd (Reach)
    until it answers: the backup keeps the address, with its own proofs, all along."""
    pair = backup_holding_master_cut(witness)
    asked_before = dict(pair.reach_asked)
    pair.restart_master()
    restarted = pair.now
    pair.run(restarted + 3.0)
    gap = pair.longest_gap(restarted, pair.now)
    print(f"master restarted cut from etcd: nobody held for {gap:.3f} s")
    assert gap == 0 and pair.holder() == "backup" and pair.backup.state == "failed_over"
    assert not [t for t, h in pair.releases if h == "backup" and t >= restarted]
    assert not [t for t, h, state in pair.states if h == "master" and state == "claiming" and t >= restarted]
    assert pair.reach_asked["master"] > asked_before["master"]  # the holder, the backup, asks nothing
    assert pair.reach_asked["backup"] == asked_before["backup"]
    # Every heartbeat the backup could count since (it acknowledges the backup) said `leaving`.
    counted = [f for t, h, f in pair.sent if h == "master" and t >= restarted and f.ack_epoch != 0]
    assert counted and all(f.leaving for f in counted)
    failback_when_etcd_answers_the_master_again(pair, restarted)


@pytest.mark.parametrize("witness", [KEEP, DROP], ids=["keep", "drop"])
def test_a_master_whose_check_passes_again_while_cut_from_etcd_alone_leaves_the_backup_holding(
        witness: WitnessTiming) -> None:
    """The same without a restart: the master stood down (its check failed), was cut from etcd
    meanwhile, and rejoins when its check passes. Standing down it asked etcd nothing that tells
    whether it could claim now, so it asks afresh before it lets the backup fail back."""
    pair = standing_down_master_backup_holding(Pair(witness=witness))
    pair.reaches["master"] = False
    pair.run(5.0)
    rejoined = pair.now
    pair.take("master", pair.master.health_changed(rejoined, True))
    pair.run(rejoined + 3.0)
    assert pair.longest_gap(rejoined, pair.now) == 0 and pair.holder() == "backup"
    assert not [t for t, h in pair.releases if h == "backup" and t >= rejoined]
    failback_when_etcd_answers_the_master_again(pair, rejoined)


def test_a_master_restarted_with_etcd_answering_lets_the_backup_fail_back_after_one_question() -> None:
    """Not vacuous: a restarted master that reaches etcd is held back by one question only."""
    pair = standing_down_master_backup_holding(Pair(witness=DROP))
    pair.take("master", pair.master.health_changed(pair.now, True))
    pair.run(6.0)
    assert pair.holder() == "master"
    pair.take("master", pair.master.health_changed(pair.now, False, "check x failed"))
    pair.run(8.0)
    assert pair.holder() == "backup"
    pair.restart_master()
    restarted = pair.now
    pair.run(restarted + 3.0)
    assert pair.holder() == "master" and pair.reach_asked["master"] >= 1
    (released,) = [t for t, h in pair.releases if h == "backup" and t >= restarted]
    print(f"restarted master reaching etcd: the backup released {released - restarted:.3f} s after the restart")
    assert released - restarted < 0.1  # the handshake and one question, not an interval more


@pytest.mark.parametrize("witness", [KEEP, DROP], ids=["keep", "drop"])
def test_a_backup_status_from_before_the_restart_reaching_the_master_first_does_not_make_the_backup_fail_back(
        witness: WitnessTiming) -> None:
    """Review: the backup's last status from before the master's restart (in flight across it, or
    replayed by an attacker) reaches the restarted master first. It acknowledges no epoch of the
    new master, so it counts for nothing, and the handshake answers it at once: that answer said
    no `leaving` (nothing counted yet says the backup holds), and acknowledging the backup's newest
    frame it counted there: the backup failed back, nobody held for 0.6 s. A frame that says it holds
    now gets `leaving` in answer while etcd has not answered the master."""
    pair = backup_holding_master_cut(witness)
    statuses: list[bytes] = []
    take = pair.take

    def recording(host: str, actions: list) -> None:
        statuses.extend(a.payload for a in actions if host == "backup" and isinstance(a, Transmit))
        take(host, actions)

    pair.take = recording  # type: ignore[method-assign]
    pair.run(pair.now + 0.35)
    status = statuses[-1]
    pair.restart_master()
    restarted = pair.now
    pair.at(restarted + 0.0005, "master", lambda: pair.master.receive_datagram(pair.now, status, BACKUP, "priv0"))
    pair.run(restarted + 3.0)
    assert pair.longest_gap(restarted, pair.now) == 0 and pair.holder() == "backup"
    assert not [t for t, h in pair.releases if h == "backup" and t >= restarted]
    answers = [f for t, h, f in pair.sent if h == "master" and t >= restarted and f.ack_epoch != 0]
    assert answers and all(f.leaving for f in answers)
    failback_when_etcd_answers_the_master_again(pair, restarted)
