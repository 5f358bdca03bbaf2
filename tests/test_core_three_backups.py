"""Three backups of one master: the rules are written for *n* backups (spec/backups.md), the model
checks two (spec/backups.pml), so these runs drive three real Detectors through the cases the
model cannot reach: the takeover passing down the ranks as each higher backup dies, the lowest
after its rank delay of two steps, and random schedules of deaths, restarts and cuts between
the backups, with "never two holders" checked after every event (tests/_backups_sim.py).
"""

from __future__ import annotations

from _backups_sim import Network
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failoverd.core.timing import Timing

T = Timing()
STEP = T.fail_after + T.probe_duration + 2 * T.interval
"""The rank step: a backup's failure deadline is later by its rank times this."""
THREE = {"a": ("10.9.1.2", 200), "b": ("10.9.1.3", 150), "c": ("10.9.1.4", 100)}


def last_heartbeat(net: Network, name: str, before: float) -> float:
    """When the newest heartbeat sent to ``name`` before ``before`` arrived: its deadlines count from there."""
    return max(t for t, _ in net.frames("master", name) if t <= before) + net.delay


def steady() -> Network:
    net = Network(dict(THREE))
    net.start_master()
    for name in THREE:
        net.start_backup(name)
    net.run_until(10.0)
    assert [net.state(n) for n in THREE] == ["monitoring"] * 3 and net.holders() == []
    return net


def test_each_backup_knows_its_rank_among_three() -> None:
    net = steady()
    ranks = {}
    for name in THREE:
        core = net.backups[name].core
        assert core is not None
        status = core.snapshot(net.now)["backups"]
        ranks[name] = status["rank"]
        assert len(status["peers"]) == 2 and all(p["alive"] and not p["holds"] for p in status["peers"])
    assert ranks == {"a": 0, "b": 1, "c": 2}


def test_the_takeover_passes_down_the_ranks_as_each_holder_dies_and_the_master_takes_it_back() -> None:
    net = steady()
    died = net.now
    net.kill_master()
    net.run_until(died + 20)
    assert net.holders() == ["a"] and net.state("b") == net.state("c") == "deferring"
    # The holder's host dies (its addresses go with it): the next in rank takes over, the lowest defers to it.
    for holder, successor, last in (("a", "b", "c"), ("b", "c", None)):
        net.kill_backup(holder)
        net.backups[holder].configured = frozenset()
        net.run_until(net.now + 30)
        assert net.holders() == [successor], (holder, successor)
        if last is not None:
            assert net.state(last) == "deferring"
    assert net.backups["a"].acquires and net.backups["b"].acquires and net.backups["c"].acquires
    for name in ("a", "b"):
        net.start_backup(name)  # they return: nothing moves without --preempt
    net.run_until(net.now + 30)
    assert net.holders() == ["c"]
    net.start_master()  # the master returns: the holder lets go, nobody else takes
    net.run_until(net.now + 30)
    assert net.holders() == [] and [net.state(n) for n in THREE] == ["monitoring"] * 3
    assert net.most_holders == 1


def test_with_both_higher_backups_dead_the_lowest_takes_after_two_rank_steps() -> None:
    net = steady()
    for name in ("a", "b"):
        net.kill_backup(name)
    net.run_until(net.now + 2 * T.fail_after + 2 * STEP)  # the lowest finds both silent (the higher wait)
    died = net.now
    net.kill_master()
    net.run_until(died + 40)
    assert net.holders() == ["c"]
    taken = net.first_acquire("c")
    assert taken is not None
    deadline = last_heartbeat(net, "c", died) + T.fail_after + 2 * STEP
    assert deadline <= taken <= deadline + T.interval
    assert net.most_holders == 1


def test_with_the_highest_dead_the_middle_one_takes_and_the_lowest_defers() -> None:
    net = steady()
    net.kill_backup("a")
    net.run_until(net.now + 2 * T.fail_after + STEP)
    died = net.now
    net.kill_master()
    net.run_until(died + 40)
    assert net.holders() == ["b"] and net.state("c") == "deferring" and not net.backups["c"].acquires
    taken = net.first_acquire("b")
    assert taken is not None
    deadline = last_heartbeat(net, "b", died) + T.fail_after + STEP
    assert deadline <= taken <= deadline + T.interval
    assert net.most_holders == 1


BACKUP = st.sampled_from(sorted(THREE))
EVENT = st.one_of(
    st.tuples(st.just("kill_master")),
    st.tuples(st.just("start_master")),
    st.tuples(st.just("crash"), BACKUP),  # the daemon dies (kill -9): its addresses stay configured
    st.tuples(st.just("host_dies"), BACKUP),  # the host dies: its addresses go with it
    st.tuples(st.just("start"), BACKUP),
    st.tuples(st.just("cut"), BACKUP, BACKUP),
    st.tuples(st.just("heal"), BACKUP, BACKUP),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(0.0, 12.0), EVENT), min_size=1, max_size=8))
def test_random_deaths_restarts_and_cuts_between_three_backups_never_give_two_holders(
    schedule: list[tuple[float, tuple]],
) -> None:
    """Any order of master deaths and returns, backup crashes, host deaths, restarts and cuts of
    the links between the backups (the public network stays shared, so an ARP probe sees every
    configured address): at no event do two hosts have an address configured."""
    net = steady()
    for pause, event in schedule:
        net.run_until(net.now + pause)
        kind, *names = event
        if kind == "kill_master" and net.master_up:
            net.kill_master()
        elif kind == "start_master" and not net.master_up:
            net.start_master()
        elif kind in ("crash", "host_dies") and net.backups[names[0]].core is not None:
            net.kill_backup(names[0])
            if kind == "host_dies":
                net.backups[names[0]].configured = frozenset()
        elif kind == "start" and net.backups[names[0]].core is None:
            net.start_backup(names[0])
        elif kind == "cut" and names[0] != names[1]:
            net.cut_link(names[0], names[1])
        elif kind == "heal":
            net.heal_link(names[0], names[1])
        assert net.most_holders <= 1, (pause, event)
    net.run_until(net.now + 40)
    assert net.most_holders <= 1
