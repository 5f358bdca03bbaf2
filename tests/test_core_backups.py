"""Several backups of one master (spec/backups.md), the backups' side: the real cores on a simulated network.

Two real Detectors with peers and a real master (tests/_backups_sim.py) go
through the design's cases: only the higher takes over; the lower after its
rank delay when the higher is dead too, or at once-ish when the higher says
unfit; a returning higher moves nothing without --preempt and, with it,
takes over only after the lower released; replayed or withheld peer frames
change nothing; with the link between the backups cut, the rank delay lets
the lower's probe see the higher's address. In every step at most one host
has the addresses configured.

The second design (spec/backups.md, "Announce, then acquire"): the higher
announces and acquires after the lower's answer; the three counterexamples
the spin models found (backups that never heard each other, a lower one
whose last heartbeats were lost with the backup link cut, a higher one that
restarts in the middle of the takeover) each give one holder, and, where the
simulated network can show it, two under the first design's rule; replayed
or withheld frames cannot complete an announcement; the master's heartbeat
and a failing check withdraw one; a lower holder yields to an announcing
higher and says so only after its delete.

The model's two fixes under a cut between the backups (spec/backups.md,
"What spin found"): the rank step fail_after + probe + 2 × interval (the
lower may have counted its last heartbeat almost a failure timeout before
the higher's), and the higher wait (the lower defers to a higher peer until
it has been silent fail_after + rank × step); each with its twin, the old
rule monkeypatched back, giving two holders.
"""

from __future__ import annotations

import re

import pytest
from _backups_sim import MASTER, Network
from _drive import KEY, VIPS

from failoverd.core import wire
from failoverd.core.actions import Transmit
from failoverd.core.detector import Detector
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing

T = Timing()
RANK_DELAY = T.fail_after + T.probe_duration + 2 * T.interval


def steady(preempt: tuple[str, ...] = ()) -> Network:
    net = Network(preempt=preempt)
    net.start_master()
    net.start_backup("high")
    net.start_backup("low")
    net.run_until(10.0)
    assert net.state("high") == net.state("low") == "monitoring"
    assert net.holders() == []
    return net


def test_both_backups_hear_each_other_and_the_master() -> None:
    net = steady()
    for name, other in (("high", 100), ("low", 200)):
        core = net.backups[name].core
        assert core is not None
        (peer,) = core.snapshot(net.now)["backups"]["peers"]
        assert peer["priority"] == other and peer["alive"] and peer["fit"] and not peer["holds"]
        assert core.counters.accepted > 5
    high = net.backups["high"].core
    low = net.backups["low"].core
    assert high is not None and low is not None
    assert high.snapshot(net.now)["backups"]["rank"] == 0
    assert low.snapshot(net.now)["backups"]["rank"] == 1


def test_master_dies_only_the_higher_takes_over() -> None:
    net = steady()
    died = net.now
    net.kill_master()
    net.run_until(died + 20)
    assert net.holders() == ["high"]
    assert net.state("high") == "failed_over"
    assert net.state("low") == "deferring"
    assert net.backups["low"].acquires == []
    assert died + T.fail_after <= net.first_acquire("high") <= died + T.fail_after + T.interval
    assert net.most_holders == 1


def test_higher_dead_too_the_lower_takes_after_its_rank_delay() -> None:
    net = steady()
    net.kill_backup("high")
    net.run_until(net.now + 2 * T.fail_after)  # the lower hears the higher's silence
    died = net.now
    net.kill_master()
    net.run_until(died + 20)
    assert net.holders() == ["low"]
    taken = net.first_acquire("low")
    assert taken is not None
    # Not before its rank delay: one peer outranks it, as last heard.
    assert died + T.fail_after + RANK_DELAY <= taken <= died + T.fail_after + RANK_DELAY + T.interval
    assert net.most_holders == 1


def test_a_higher_backup_that_says_unfit_leaves_the_takeover_to_the_lower() -> None:
    net = steady()
    net.make_unfit("high")
    net.run_until(net.now + 2)
    low = net.backups["low"].core
    assert low is not None
    (peer,) = low.snapshot(net.now)["backups"]["peers"]
    assert peer["alive"] and not peer["fit"]
    died = net.now
    net.kill_master()
    net.run_until(died + 20)
    assert net.holders() == ["low"]
    assert net.state("high") == "unfit"
    assert net.first_acquire("low") <= died + T.fail_after + RANK_DELAY + T.interval
    assert net.most_holders == 1


def _lower_holds(preempt: tuple[str, ...]) -> Network:
    """The higher's daemon dies, then the master: the lower takes over; the higher's daemon returns."""
    net = steady(preempt)
    net.kill_backup("high")
    net.run_until(net.now + 2 * T.fail_after)
    net.kill_master()
    net.run_until(net.now + 20)
    assert net.holders() == ["low"]
    net.start_backup("high")
    return net


def test_a_returning_higher_backup_without_preempt_moves_nothing() -> None:
    net = _lower_holds(preempt=())
    net.run_until(net.now + 30)
    assert net.holders() == ["low"]
    assert net.state("high") == "deferring"
    assert net.backups["high"].acquires == []
    assert len(net.backups["low"].releases) == 0
    assert net.most_holders == 1


def test_with_preempt_the_lower_releases_first_then_the_higher_takes_over() -> None:
    net = _lower_holds(preempt=("high",))
    returned = net.now
    net.run_until(returned + 30)
    assert net.holders() == ["high"]
    assert net.state("low") == "deferring"
    (released,) = net.backups["low"].releases
    taken = net.first_acquire("high", after=returned)
    assert taken is not None and released < taken
    assert net.most_holders == 1  # never two holders, in any step


def test_a_heartbeat_ends_a_deferral_and_the_holder_fails_back() -> None:
    net = steady()
    net.kill_master()
    net.run_until(net.now + 20)
    assert net.state("low") == "deferring"
    net.start_master()
    net.run_until(net.now + 10)
    assert net.holders() == []
    assert net.state("high") == net.state("low") == "monitoring"


def test_replayed_and_withheld_peer_frames_change_nothing() -> None:
    net = steady()
    low, high = net.backups["low"], net.backups["high"]
    core = low.core
    assert core is not None
    # Replays of frames the lower already counted: refused, nothing moves.
    old = [p for t, s, d, p in net.wire if s == high.address and d == low.address]
    for payload in old[-5:]:
        net.inject(high.address, low.address, payload)
    net.run_until(net.now + 0.1)
    assert core.counters.rejected.get("peer_replay") == 5
    assert net.state("low") == net.state("high") == "monitoring"
    # Now the higher's frames to the lower are withheld, and the master dies: the higher
    # announces, and the lower, which never hears it, cannot answer the announcement.
    kept: list[bytes] = []

    def withhold(source: str, destination: str, payload: bytes) -> bool:
        if source == high.address and destination == low.address:
            kept.append(payload)
            return True
        return False

    net.drop = withhold
    net.kill_master()
    net.run_until(net.now + 20)
    # The lower found the higher silent, waited its rank delay, its probe saw nothing (the
    # higher only announced) and it took over; the higher hears it hold, but a lower holder
    # that never hears whom to yield to does not: the higher's announcement runs out
    # (spec/backups.md, "What the review found", 2), and its fresh probe finds the lower's
    # address: it defers to the holder. One holder.
    assert net.holders() == ["low"]
    high_core = high.core
    assert high_core is not None and high_core.counters.withdrawals >= 1
    assert net.state("high") == "deferring" and net.backups["high"].acquires == []
    # The withheld frames ("holds"), delivered late: authentic and unseen, not provably young.
    net.drop = lambda source, destination, payload: False
    for payload in kept[:3]:
        net.inject(high.address, low.address, payload)
    net.run_until(net.now + net.delay)
    assert core.counters.rejected.get("peer_delayed", 0) >= 3
    (peer,) = core.snapshot(net.now)["backups"]["peers"]
    assert peer["holds"] is False  # what it last said that counted: the late frames changed nothing
    assert net.most_holders == 1


def test_peer_link_cut_the_rank_delay_lets_the_lowers_probe_see_the_higher() -> None:
    net = steady()
    net.cut_link("high", "low")
    net.run_until(net.now + 2 * T.fail_after)  # each hears the master, not the other
    for name in ("high", "low"):
        core = net.backups[name].core
        assert core is not None and core.state == "monitoring"
        assert not core.snapshot(net.now)["backups"]["peers"][0]["alive"]
    net.kill_master()
    net.run_until(net.now + 20)
    assert net.holders() == ["high"]
    assert net.state("low") == "contested"
    assert net.backups["low"].acquires == []
    assert net.most_holders == 1


def test_without_the_rank_delay_the_cut_link_gives_two_holders(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the delay is for: with it gone, both probe before either added, and both take over."""
    monkeypatch.setattr(Detector, "_rank_delay", lambda self: 0.0)
    net = steady()
    net.cut_link("high", "low")
    net.run_until(net.now + 2 * T.fail_after)
    net.kill_master()
    net.run_until(net.now + 20)
    assert net.most_holders == 2


# --- the wire: a pair is byte for byte as before, peers are judged as heartbeats ---


def _pair_status(settings: DetectorSettings) -> list[bytes]:
    from failoverd.core.master import Master
    from failoverd.core.settings import MasterSettings

    d = Detector(settings, 0.0, key=KEY, epoch=5)
    m = Master(MasterSettings(["10.9.1.2"], 1.0), 0.0, key=KEY, epoch=9)
    frames = []
    for t in (0.0, 1.0, 2.0):
        for a in m.handle_timer(t):
            if isinstance(a, Transmit):
                for b in d.receive_datagram(t + 0.01, a.payload, MASTER, "priv"):
                    if isinstance(b, Transmit):
                        frames.append(b.payload)
                        m.receive_datagram(t + 0.02, b.payload, "10.9.1.2", "priv")
    return frames


def test_a_backup_without_peers_sends_exactly_the_frames_of_a_pair() -> None:
    plain = _pair_status(DetectorSettings(VIPS, T, master=MASTER))
    # Priority and preempt are configuration only: without --peer nothing of them is on the wire.
    configured = _pair_status(DetectorSettings(VIPS, T, master=MASTER, priority=200, preempt=True))
    assert plain == configured and len(plain) >= 3
    for payload in plain:
        frame = wire.decode(payload, KEY)
        assert frame.priority == 0 and not frame.unfit and not frame.preempt


def test_without_peers_a_backup_frame_is_refused_as_role() -> None:
    d = Detector(DetectorSettings(VIPS, T, master=MASTER), 0.0, key=KEY, epoch=5)
    sealer = wire.Sealer(KEY, wire.ROLE_BACKUP, 7, 1.0, 0.0)
    d.receive_datagram(0.1, sealer.seal(0.1, holds=True, priority=50), "10.9.1.3", "priv")
    assert d.last_verdict == "role" and d.counters.rejected == {"role": 1}


def test_a_peer_frame_with_our_own_priority_is_refused_and_alarmed_once() -> None:
    d = Detector(DetectorSettings(VIPS, T, master=MASTER, peers=("10.9.1.3",), peer_priorities=(50,), priority=100), 0.0, key=KEY, epoch=5)
    sealer = wire.Sealer(KEY, wire.ROLE_BACKUP, 7, 1.0, 0.0)
    alarms = []
    for t in (0.1, 0.2, 0.3):
        out = d.receive_datagram(t, sealer.seal(t, holds=False, priority=100), "10.9.1.3", "priv")
        alarms += [a for a in out if type(a).__name__ == "Alarm"]
    assert d.counters.rejected == {"priority": 3}
    assert len(alarms) == 1 and "priority 100" in alarms[0].message


def test_a_peer_frame_with_a_priority_no_peer_is_configured_with_is_refused_and_alarmed_once() -> None:
    d = Detector(DetectorSettings(VIPS, T, master=MASTER, peers=("10.9.1.3",), peer_priorities=(50,), priority=100),
                 0.0, key=KEY, epoch=5)
    sealer = wire.Sealer(KEY, wire.ROLE_BACKUP, 7, 1.0, 0.0)
    alarms = []
    for t in (0.1, 0.2):
        out = d.receive_datagram(t, sealer.seal(t, holds=True, priority=60), "10.9.1.3", "priv")
        alarms += [a for a in out if type(a).__name__ == "Alarm"]
    assert d.counters.rejected == {"priority": 2} and d.last_verdict == "priority"
    (alarm,) = alarms
    assert "priority 60, one no --peer of ours is configured with" in alarm.message
    assert "10.9.1.3=50" in alarm.message
    # The configured peer is listed, never heard: nothing of it is known.
    (peer,) = d.snapshot(0.2)["backups"]["peers"]
    assert peer["priority"] == 50 and peer["address"] == "10.9.1.3" and peer["holds"] is None


def test_the_rank_is_static_configured_not_heard() -> None:
    """Finding 1: two backups that never heard each other still rank apart (their configured priorities)."""
    low = Detector(DetectorSettings(VIPS, T, master=MASTER, peers=("10.9.1.2", "10.9.1.4"), peer_priorities=(200, 50),
                                    priority=100), 0.0, key=KEY, epoch=5)
    high = Detector(DetectorSettings(VIPS, T, master=MASTER, peers=("10.9.1.3",), peer_priorities=(100,),
                                     priority=200), 0.0, key=KEY, epoch=6)
    assert low.snapshot(0.0)["backups"]["rank"] == 1 and high.snapshot(0.0)["backups"]["rank"] == 0
    assert low.snapshot(0.0)["backups"]["rank_delay"] == pytest.approx(RANK_DELAY)


@pytest.mark.parametrize(
    "peers, priorities, message",
    [
        (("10.9.1.3",), (), "1 peer(s) but 0 peer priorities"),
        (("10.9.1.3",), (100,), "priority 100 is ours too"),
        (("10.9.1.3", "10.9.1.4"), (50, 50), "two peers share a priority"),
        (("10.9.1.3",), (255,), "is not within 1 - 254"),
    ],
)
def test_peer_priorities_that_cannot_work_are_refused(peers: tuple[str, ...], priorities: tuple[int, ...],
                                                      message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        DetectorSettings(VIPS, T, master=MASTER, peers=peers, peer_priorities=priorities, priority=100)


def test_the_first_peer_frame_is_answered_at_once_and_its_answer_counts() -> None:
    a = Detector(DetectorSettings(VIPS, T, master=MASTER, peers=("10.9.1.3",), peer_priorities=(100,), priority=200), 0.0, key=KEY, epoch=5)
    b = Detector(DetectorSettings(VIPS, T, master=MASTER, peers=("10.9.1.2",), peer_priorities=(200,), priority=100), 0.0, key=KEY, epoch=6)
    (hello,) = [x for x in a.handle_timer(0.0) if isinstance(x, Transmit)]
    assert hello.targets == ("10.9.1.3",)
    b.handle_timer(0.0)
    answer = [x for x in b.receive_datagram(0.01, hello.payload, "10.9.1.2", "priv") if isinstance(x, Transmit)]
    assert b.last_verdict == "peer_unacknowledged" and answer
    back = [x for x in a.receive_datagram(0.02, answer[0].payload, "10.9.1.3", "priv") if isinstance(x, Transmit)]
    assert a.last_verdict == "peer"
    assert back, "the first counted frame of a peer epoch is answered at once"
    b.receive_datagram(0.03, back[0].payload, "10.9.1.2", "priv")
    assert b.last_verdict == "peer"


@pytest.mark.parametrize("bad", [0, 255, -1, True])
def test_a_priority_out_of_range_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="priority"):
        DetectorSettings(VIPS, T, priority=bad)


def test_peers_need_authenticated_mode() -> None:
    with pytest.raises(ValueError, match="legacy heartbeats carry no status"):
        Detector(DetectorSettings(VIPS, T, master=MASTER, peers=("10.9.1.3",), peer_priorities=(50,)), 0.0)


def test_failoverctl_status_of_a_backup_shows_its_priority_and_each_peer() -> None:
    from failoverd.programs.failoverctl import format_status

    net = steady()
    low = net.backups["low"].core
    assert low is not None
    text = format_status(low.snapshot(net.now), 0.0)
    assert "PRIORITY  ADDRESS   ALIVE  FIT  HOLDS  MASTER  LAST HEARD" in text
    (row,) = [line for line in text.splitlines() if "10.9.1.2" in line]
    assert row.split()[:6] == ["200", "10.9.1.2", "yes", "yes", "no", "heard"]  # it hears the master
    assert "priority  100; rank 1, deadline later by 5.3 s; says master heard" in text  # and so do we
    net.kill_master()
    net.run_until(net.now + 20)
    text = format_status(low.snapshot(net.now), 0.0)
    assert "priority  100; rank 1, deadline later by 5.3 s" in text
    (row,) = [line for line in text.splitlines() if "10.9.1.2" in line]
    assert row.split()[:7] == ["200", "10.9.1.2", "yes", "yes", "HOLDS", "-", "1.0"] and row.endswith("ago")
    assert "says master heard" not in text and "master not heard here" not in text
    # A pair's status has no such section.
    pair = Detector(DetectorSettings(VIPS, T, master=MASTER), 0.0, key=KEY, epoch=5)
    assert "priority" not in format_status(pair.snapshot(1.0), 0.0)


def test_unacknowledged_peer_frames_are_answered_at_most_once_per_half_interval() -> None:
    d = Detector(DetectorSettings(VIPS, T, master=MASTER, peers=("10.9.1.3",), peer_priorities=(100,), priority=200), 0.0, key=KEY, epoch=5)
    d.handle_timer(0.0)
    sealer = wire.Sealer(KEY, wire.ROLE_BACKUP, 7, 1.0, 0.0)
    answers = 0
    for i in range(90):  # a flood of authentic frames that acknowledge nothing of ours, until 0.98 s
        t = 0.1 + i * 0.0099
        out = d.receive_datagram(t, sealer.seal(t, holds=False, priority=100), "10.9.1.3", "priv")
        answers += sum(1 for a in out if isinstance(a, Transmit))
        assert d.last_verdict == "peer_unacknowledged"
    assert answers == 2  # at 0.1 and at 0.6 (the periodic frame is due at 1.0): the flood does not set our rate


def test_with_peers_the_status_to_the_master_carries_priority_unfit_and_preempt() -> None:
    net = steady(preempt=("high",))
    net.make_unfit("high")
    net.run_until(net.now + 2)
    statuses = [wire.decode(p, KEY) for t, s, d, p in net.wire if d == MASTER and t > net.now - 1]
    high = [f for f in statuses if f.priority == 200]
    low = [f for f in statuses if f.priority == 100]
    assert high and low
    assert all(f.unfit and f.preempt for f in high)
    assert not any(f.unfit or f.preempt for f in low)


# --- announce, then acquire (spec/backups.md, "Who takes over"; the second design) ---


def _decoded(net: Network, source: str, destination: str, after: float = 0.0) -> list[tuple[float, wire.Heartbeat]]:
    return [(t, wire.decode(p, KEY)) for t, p in net.frames(source, destination) if t >= after]


def test_the_higher_announces_and_acquires_once_the_lower_answers_that_it_holds_nothing() -> None:
    net = steady()
    died = net.now
    net.kill_master()
    net.run_until(died + 20)
    assert net.holders() == ["high"] and net.most_holders == 1
    announced = net.entered("high", "announcing", after=died)
    acquiring = net.entered("high", "acquiring", after=died)
    assert announced is not None and acquiring is not None
    # One round trip: the announcement out, the lower's answer (sent at once) back.
    assert announced < acquiring <= announced + 3 * net.delay
    # Its frames said holds from the announcement on, to the peer and to the master alike.
    assert all(f.holds for t, f in _decoded(net, "high", "low", after=announced))
    # The lower's answer: it holds nothing, acknowledging a frame of the announcement.
    answer = [f for t, f in _decoded(net, "low", "high", after=announced) if t <= acquiring]
    assert answer and not answer[-1].holds
    core = net.backups["high"].core
    assert core is not None and core.counters.announcements == 1 and core.counters.withdrawals == 0


def test_finding_1_backups_that_never_heard_each_other_rank_apart_and_give_one_holder() -> None:
    net = Network()
    net.cut_link("high", "low")  # from the start: neither ever hears the other
    net.start_master()
    net.start_backup("high")
    net.start_backup("low")
    net.run_until(10.0)
    for name in ("high", "low"):
        core = net.backups[name].core
        assert core is not None and core.snapshot(net.now)["backups"]["peers"][0]["counted"] == 0
    net.kill_master()
    net.run_until(net.now + 30)
    assert net.holders() == ["high"] and net.state("low") == "contested" and net.most_holders == 1


def test_finding_1_under_the_first_designs_rank_gives_two_holders(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the configured priorities are for: ranked as heard, a peer never heard counts as higher, both
    backups rank 1, their deadlines coincide and each probe misses the other's address."""
    from failoverd.core.peers import Peers

    monkeypatch.setattr(Peers, "rank", lambda self: sum(1 for e in self.entries.values()
                                                        if e.counted == 0 or e.priority > self.priority))
    net = Network()
    net.cut_link("high", "low")
    net.start_master()
    net.start_backup("high")
    net.start_backup("low")
    net.run_until(10.0)
    net.kill_master()
    net.run_until(net.now + 30)
    assert net.most_holders == 2


def test_finding_2_the_lower_counted_older_heartbeats_with_the_backup_link_cut_one_holder() -> None:
    """The master's last heartbeats to the lower are lost: its deadline comes fail_after - interval
    earlier than under even hearing. The step (fail_after + probe + 2 × interval) still puts its probe's
    end after the higher's address is up."""
    net = steady()
    low = net.backups["low"]
    net.cut_link("high", "low")
    net.run_until(net.now + 2 * T.fail_after)
    net.drop = lambda source, destination, payload: source == MASTER and destination == low.address
    net.run_until(net.now + T.fail_after - T.interval)  # just short of the lower's own failure timeout
    died = net.now
    net.kill_master()
    net.drop = lambda source, destination, payload: False
    net.run_until(died + 30)
    assert net.holders() == ["high"] and net.most_holders == 1
    assert low.acquires == [] and net.state("low") == "contested"
    high_up = net.first_acquire("high")
    low_decided = net.entered("low", "contested", after=died)
    assert high_up is not None and low_decided is not None and low_decided > high_up + net.action_latency


def _restart_race(net: Network) -> None:
    """Finding 3: the higher's daemon dies just before the master (long enough before the lower's deadline
    that its old life is no longer present, fail_after + step after its last frame) and restarts while
    the lower waits out its rank delay. Of the handshake each side gets only the other's first frame (the higher counts the
    lower's answer, "holds nothing"; the lower only records the higher's hello); 1.9 s later the
    higher's frames get through again, while the lower's stay lost until the higher's failure deadline,
    and the newest of them arrives just after it (within a failure timeout of the last one counted:
    the links count as up). An acquire takes longer than the higher's probe needs to miss it."""
    net.start_master()
    net.start_backup("high")
    net.start_backup("low")
    net.run_until(10.0)
    net.kill_backup("high")
    net.run_until(net.now + 0.5)
    died = net.now
    net.kill_master()
    net.run_until(died + 7.5)  # the lower's deadline is died + 3 + 5.3, the higher's old life gone at died + 7.8
    high, low = net.backups["high"].address, net.backups["low"].address
    passed: set[tuple[str, str]] = set()
    withheld: list[bytes] = []

    def handshake_only(source: str, destination: str, payload: bytes) -> bool:
        if source == MASTER or destination == MASTER:
            return False
        if (source, destination) not in passed:
            passed.add((source, destination))
            return False
        if source == low:
            withheld.append(payload)
        return True

    net.drop = handshake_only
    restarted = net.now
    net.start_backup("high")  # its own deadline: a failure timeout of silence from now, rank 0
    net.run_until(restarted + 1.9)
    passed.add((high, low))

    def lower_lost(source: str, destination: str, payload: bytes) -> bool:
        if source == low and destination == high:
            withheld.append(payload)
            return True
        return False

    net.drop = lower_lost
    net.run_until(restarted + T.fail_after)
    net.drop = lambda source, destination, payload: False
    net.inject(low, high, withheld[-1])
    net.run_until(died + 30)


def test_finding_3_a_restarted_higher_in_its_handshake_is_waited_for_one_holder() -> None:
    net = Network(action_latency=2.5)
    _restart_race(net)
    # The lower recorded the restarted higher's hello (its handshake): it announced and waited for
    # the higher's answer; the higher announced too, and the lower withdrew on its "holds".
    assert net.entered("low", "announcing") is not None and net.backups["low"].acquires == []
    assert net.holders() == ["high"] and net.state("low") == "deferring"
    assert net.most_holders == 1


def test_finding_3_under_the_first_design_gives_two_holders(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the announcement is for: deciding on the peer's last counted state, the lower acquires at its
    deadline (the higher not alive to it), the higher at its own (the lower alive, lower, "holds
    nothing"); its probe misses the address still being added, and both hold."""
    monkeypatch.setattr(Detector, "_must_announce", lambda self: False)
    net = Network(action_latency=2.5)
    _restart_race(net)
    assert net.most_holders == 2


def _announcing_high(net: Network) -> tuple[list[bytes], float]:
    """The master dies; the lower's frames to the higher are withheld from just before the higher's
    deadline, so the higher announces (the lower alive, in W) and never hears the answer."""
    kept: list[bytes] = []
    low, high = net.backups["low"].address, net.backups["high"].address

    def withhold(source: str, destination: str, payload: bytes) -> bool:
        if source == low and destination == high:
            kept.append(payload)
            return True
        return False

    died = net.now
    net.kill_master()
    net.run_until(died + 1.5)
    net.drop = withhold
    net.run_until(died + T.fail_after + 0.5)
    assert net.state("high") == "announcing"
    announced = net.entered("high", "announcing", after=died)
    assert announced is not None
    return kept, announced


def test_replayed_or_withheld_peer_frames_cannot_complete_an_announcement() -> None:
    net = steady()
    high = net.backups["high"]
    older = [p for t, p in net.frames("low", "high")][-5:-1]
    kept, announced = _announcing_high(net)
    core = high.core
    assert core is not None
    for payload in older:  # replays of frames it counted: refused
        net.inject(net.backups["low"].address, high.address, payload)
    # The lower's withheld frames from before the announcement (holds nothing, acknowledging an
    # earlier frame of ours), delivered now: they may count, but answer nothing. (Those still saying
    # "master heard" make it defer instead: test_withheld_master_heard_frames_defer_and_never_take_over.)
    first = min(f.seq for t, f in _decoded(net, "high", "low", after=announced))
    before = [p for p in kept if wire.decode(p, KEY).ack_seq < first and not wire.decode(p, KEY).master_heard]
    assert before
    for payload in before:
        net.inject(net.backups["low"].address, high.address, payload)
    net.run_until(net.now + 0.2)
    assert core.counters.rejected.get("peer_replay", 0) == len(older)
    assert net.state("high") == "announcing" and high.acquires == []
    (waiting,) = core.snapshot(net.now)["backups"]["awaiting"]
    assert waiting["priority"] == 100
    # The lower, silent to it for a failure timeout, leaves W: the higher acquires then, alone.
    net.run_until(net.now + 10)
    assert net.holders() == ["high"] and net.state("low") == "deferring" and net.most_holders == 1
    entry = core._peers.entries[100] if core._peers is not None else None
    assert entry is not None and entry.last_counted is not None
    acquired = net.entered("high", "acquiring", after=announced)
    assert acquired is not None and acquired >= entry.last_counted + T.fail_after - 1e-9


def test_failoverctl_status_shows_an_announcement_and_whom_it_waits_for() -> None:
    from failoverd.programs.failoverctl import format_status

    net = steady()
    _announcing_high(net)
    core = net.backups["high"].core
    assert core is not None
    text = format_status(core.snapshot(net.now), 0.0)
    assert "state     announcing" in text
    (line,) = [line for line in text.splitlines() if line.startswith("announce")]
    assert "announcing; waiting for 100 (10.9.1.3, at most" in line


def test_the_masters_heartbeat_withdraws_an_announcement() -> None:
    net = steady()
    _, announced = _announcing_high(net)
    net.start_master()
    net.run_until(net.now + 5)
    withdrawn = net.entered("high", "monitoring", after=announced)
    assert withdrawn is not None and net.state("high") == "monitoring"
    assert net.backups["high"].acquires == [] and net.holders() == []
    core = net.backups["high"].core
    assert core is not None and core.counters.withdrawals == 1
    # From the withdrawal on it says holds nothing, to the peers and to the master.
    assert not any(f.holds for t, f in _decoded(net, "high", "low", after=withdrawn))
    assert not any(f.holds for t, f in _decoded(net, "high", "master", after=withdrawn))


def test_a_failing_check_withdraws_an_announcement_as_it_declines_a_suspicion() -> None:
    net = steady()
    _, announced = _announcing_high(net)
    net.make_unfit("high")
    net.run_until(net.now + 0.5)
    assert net.state("high") == "unfit" and net.backups["high"].acquires == []
    withdrawn = net.entered("high", "unfit", after=announced)
    assert withdrawn is not None
    frames = _decoded(net, "high", "low", after=withdrawn)
    assert frames and not any(f.holds for t, f in frames) and all(f.unfit for t, f in frames)
    core = net.backups["high"].core
    assert core is not None and core.snapshot(net.now)["backups"]["awaiting"] is None


def test_an_announcing_higher_waits_for_the_lower_holder_to_yield_after_its_delete() -> None:
    """The lower holds (the higher was dead); the higher restarts without an ARP probe, and its frames
    to the lower are lost (for less than a failure timeout) until it announces: the lower is in its W as
    a peer in its handshake (recorded, never counted). The lower
    yields on the higher's "holds", says holds nothing only once its delete returned, and only that
    answer lets the higher acquire."""
    net = Network(no_probe=("high",))
    net.start_master()
    net.start_backup("high")
    net.start_backup("low")
    net.run_until(10.0)
    net.kill_backup("high")
    net.run_until(net.now + 2 * T.fail_after)
    net.kill_master()
    net.run_until(net.now + 20)
    assert net.holders() == ["low"]
    high, low = net.backups["high"], net.backups["low"]
    net.drop = lambda source, destination, payload: source == high.address and destination == low.address
    restarted = net.now
    net.start_backup("high")
    net.run_until(restarted + T.fail_after + 0.5)  # its deadline: a failure timeout after its start
    announced = net.entered("high", "announcing", after=restarted)
    assert announced is not None and net.state("high") == "announcing" and net.holders() == ["low"]
    healed = net.now
    net.drop = lambda source, destination, payload: False
    net.run_until(healed + 10)
    assert net.holders() == ["high"] and net.most_holders == 1
    (released,) = low.releases
    deleted = released + net.action_latency
    taken = net.first_acquire("high", after=restarted)
    assert taken is not None and taken > deleted
    # Until its delete returned, every frame of the lower to the higher said holds.
    assert all(f.holds for t, f in _decoded(net, "low", "high", after=healed) if t < deleted)
    assert any(not f.holds for t, f in _decoded(net, "low", "high", after=deleted) if t <= taken)


def test_a_pair_never_announces() -> None:
    d = Detector(DetectorSettings(VIPS, T, master=MASTER), 0.0, key=KEY, epoch=5)
    assert not d._must_announce()


def _cut_during_the_higher_s_announcement(net: Network, lost: float) -> float:
    """The master's heartbeats to the lower are lost for ``lost`` s before it dies; the link between the
    backups is cut 0.7 s before the higher's deadline: the higher announces (the lower alive, in W) and
    leaves W only when the lower has been silent a failure timeout, then acquires on the probe it made
    before its announcement, up to a failure timeout after its deadline. An acquire takes an interval
    (within the cut's assumption d + A ≤ 2 × interval). Returns when the master died."""
    net.start_backup("high")
    net.run_until(0.3)
    net.start_backup("low")
    net.run_until(1.0)
    net.start_master()
    net.run_until(12.0)
    low = net.backups["low"]
    net.drop = lambda source, destination, payload: source == MASTER and destination == low.address
    net.run_until(net.now + lost)
    died = net.now
    net.kill_master()
    net.drop = lambda source, destination, payload: False
    net.run_until(died + T.fail_after - 0.7)
    net.cut_link("high", "low")
    net.run_until(died + 30)
    assert net.entered("high", "announcing") is not None
    return died


def test_a_cut_between_the_backups_during_the_higher_s_announcement_gives_one_holder() -> None:
    """Fix 2 (spec/backups.md, "What spin found"): the lower treats the higher as present until it has
    been silent fail_after + rank × step, so it defers past the higher's acquire, and its probe then
    finds the address."""
    net = Network(action_latency=T.interval)
    died = _cut_during_the_higher_s_announcement(net, 2 * T.interval)
    assert net.holders() == ["high"] and net.most_holders == 1
    assert net.backups["low"].acquires == [] and net.state("low") == "contested"
    # At its deadline the higher is silent to it but present: it defers (the design as written acquired here).
    deferred = net.entered("low", "deferring", after=died)
    high_adding = net.first_acquire("high")
    assert deferred is not None and high_adding is not None and deferred <= high_adding + net.action_latency
    # The deferral lapses when the higher has been silent fail_after + rank × step: its timer fires then,
    # and the new probe finds the higher's address.
    low = net.backups["low"].core
    assert low is not None and low._peers is not None
    (peer,) = low._peers.entries.values()
    assert peer.last_counted is not None
    # The master was alive for `lost` s after the lower's last heartbeat, and the higher said "master heard":
    # the lower also holds back the master's presumption after that (Timing.master_evidence_hold).
    held_from = low._master_evidence_at
    assert held_from is not None
    expected = max(peer.last_counted + T.fail_after + RANK_DELAY, held_from + T.master_evidence_hold)
    assert net.entered("low", "suspect", after=deferred) == pytest.approx(expected)


@pytest.mark.parametrize("lost", [2 * T.interval, 2.5 * T.interval])
def test_a_cut_between_the_backups_during_the_higher_s_announcement_without_the_higher_wait_gives_two_holders(
    monkeypatch: pytest.MonkeyPatch, lost: float,
) -> None:
    """What the higher wait is for: deferring to a higher peer only while it is alive (the design as
    written), the lower's rank-delayed deadline finds it silent, its probe misses the address not yet
    added, and both acquire."""
    from failoverd.core.peers import Peers

    monkeypatch.setattr(Peers, "higher_wait", property(lambda self: self.fail_after))
    # The higher's "master heard" (the master outlived the lower's last heartbeat by `lost`) would hold the
    # lower back too, as long as the master's presumption: off, to show the higher wait's own part.
    monkeypatch.setattr(Detector, "_peer_hears_master", lambda self: False)
    net = Network(action_latency=T.interval)
    _cut_during_the_higher_s_announcement(net, lost)
    assert net.most_holders == 2


def _older_heartbeats_by_almost_a_failure_timeout(net: Network) -> None:
    """Fix 1's trail (spec/backups.md, "What spin found"): with the link between the backups cut, the
    lower counts its last heartbeat just after it arrives, then the master's heartbeats to it are lost
    for 2.9 s (< fail_after: links up); the higher's daemon restarts then and the master answers its
    hello at once, off the periodic phase, so the higher counts a heartbeat 2.9 s after the lower's last
    (the skew fail_after + d allows, not fail_after − interval + d), and the master dies. An acquire
    takes 1.5 s (d + A ≤ 2 × interval)."""
    net.start_master()
    net.start_backup("high")
    net.start_backup("low")
    net.run_until(10.0)
    low = net.backups["low"]
    net.cut_link("high", "low")
    net.run_until(net.now + 2 * T.fail_after)
    assert low.core is not None
    before = low.core.last_heard
    for _ in range(1000):  # to the instant the lower counts a heartbeat (within an interval)
        if low.core.last_heard > before:
            break
        net.run_until(net.now + T.interval / 200)
    last_of_lower = low.core.last_heard
    net.drop = lambda source, destination, payload: source == MASTER and destination == low.address
    net.run_until(last_of_lower + T.fail_after - 0.1)
    net.kill_backup("high")
    net.start_backup("high")
    net.run_until(net.now + 0.05)
    high = net.backups["high"].core
    assert high is not None and high.last_heard - last_of_lower == pytest.approx(T.fail_after - 0.1, abs=0.05)
    died = net.now
    net.kill_master()
    net.drop = lambda source, destination, payload: False
    net.run_until(died + 30)


def test_fix_1_the_lower_counted_its_last_heartbeat_almost_a_failure_timeout_earlier_one_holder() -> None:
    net = Network(action_latency=1.5)
    _older_heartbeats_by_almost_a_failure_timeout(net)
    assert net.holders() == ["high"] and net.most_holders == 1
    assert net.backups["low"].acquires == [] and net.state("low") == "contested"


def test_fix_1_under_the_second_designs_step_gives_two_holders(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the longer step is for: with fail_after + probe + interval, the lower's probe ends before the
    higher's address is up."""
    import failoverd.core.detector as detector

    monkeypatch.setattr(detector, "rank_step", lambda t: t.fail_after + t.probe_duration + t.interval)
    net = Network(action_latency=1.5)
    _older_heartbeats_by_almost_a_failure_timeout(net)
    assert net.most_holders == 2


def test_master_heard_goes_to_the_peers_and_never_in_a_status() -> None:
    """spec/wire.md, "master heard": a backup hearing the master says so to its peers, never to the master,
    whose version before the flag would refuse the whole status (so it may be upgraded apart)."""
    net = steady()
    for name in ("high", "low"):
        peer = "low" if name == "high" else "high"
        to_peer = [wire.decode(p, KEY) for t, p in net.frames(name, peer) if t > 5.0]
        statuses = [wire.decode(p, KEY) for t, p in net.frames(name, "master") if t > 5.0]
        assert to_peer and all(f.master_heard for f in to_peer), name
        assert statuses and not any(f.master_heard for f in statuses), name
    net.kill_master()
    net.run_until(net.now + T.fail_after)
    # Its last heartbeat more than W ago: the flag has cleared, told at once.
    cleared = [wire.decode(p, KEY) for t, p in net.frames("high", "low") if t > net.now - T.interval / 2]
    assert cleared and not any(f.master_heard for f in cleared)


def test_withheld_master_heard_frames_defer_and_never_take_over() -> None:
    """The lower's frames from just after the master's death, withheld and delivered late, still say "master
    heard" and count newer than the higher's last heartbeat: it takes them for a master it cannot hear and
    defers, with the hold (Timing.master_evidence_hold) after them; then it takes over, alone. The delay an
    attacker between the backups buys so: at most max_delay + the hold + fail_after (spec/backups.md)."""
    net = steady()
    high = net.backups["high"]
    kept, announced = _announcing_high(net)
    heard = [p for p in kept if wire.decode(p, KEY).master_heard]
    assert heard
    delivered = net.now
    for payload in heard:
        net.inject(net.backups["low"].address, high.address, payload)
    net.run_until(net.now + 0.2)
    assert net.state("high") == "deferring" and high.acquires == []
    net.run_until(delivered + T.effective_max_delay + T.master_evidence_hold + T.fail_after + 5)
    assert net.holders() == ["high"] and net.most_holders == 1
    acquired = net.entered("high", "acquiring", after=delivered)
    assert acquired is not None and acquired >= delivered + T.master_evidence_hold - 1e-9
    assert acquired <= announced + T.effective_max_delay + T.master_evidence_hold + T.fail_after + 1


def test_failoverctl_status_says_when_a_peers_master_heard_keeps_it_from_taking_over() -> None:
    """The master's heartbeats to the higher lost one way: its status names the peer that hears the
    master and how long the hold may still last; the master's death then ends it (the hold's end)."""
    from failoverd.programs.failoverctl import format_status

    net = steady()
    high = net.backups["high"]
    net.drop = lambda source, destination, payload: (source, destination) == (MASTER, high.address)
    net.run_until(net.now + 10)
    core = high.core
    assert core is not None and net.state("high") in {"deferring", "contested"}
    unheard = core.snapshot(net.now)["backups"]["master_unheard"]
    assert unheard is not None and unheard["priority"] == 100 and unheard["address"] == "10.9.1.3"
    assert 0 < unheard["hold_left"] <= T.master_evidence_hold
    text = format_status(core.snapshot(net.now), 0.0)
    assert "master not heard here, but peer 100 (10.9.1.3) heard it" in text
    assert "taking nothing over while it does, and for at most" in text
    net.kill_master()
    net.run_until(net.now + T.master_evidence_hold + T.fail_after + 5)
    assert net.holders() == ["high"] and core.snapshot(net.now)["backups"]["master_unheard"] is None
