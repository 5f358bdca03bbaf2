"""Hypothesis properties of the backup's detector under a virtual clock.

Each property is stated in spec/properties.md with its bound; the names here
are the ones that document cites.
"""

from __future__ import annotations

from _drive import KEY, MASTER, VIPS, Driver, PeerMaster, detector
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from failoverd.core import wire
from failoverd.core.timing import Timing

timings = st.builds(
    Timing,
    interval=st.sampled_from([0.1, 0.2, 0.5, 1.0, 2.0]),
    suspect_misses=st.just(1),
    fail_misses=st.integers(3, 6),
)



@st.composite
def schedules(draw, timing: Timing):
    """Arrival times whose gaps stay below the failure timeout, with noise.

    Returns (events, last_good) where events is a list of (time, kind) and
    kind is "good" (a fresh frame), "dup" (a copy of an earlier frame, i.e. a
    duplicate or a replay) or "old" (an earlier frame arriving late, i.e.
    reordering).
    """
    limit = timing.fail_after * 0.98
    gaps = draw(st.lists(st.floats(0.001, limit), min_size=1, max_size=40))
    times = []
    t = 0.0
    for gap in gaps:
        t += gap
        times.append(t)
    events = [(time, "good") for time in times]
    noise = draw(st.lists(st.tuples(st.floats(0, t), st.sampled_from(["dup", "old"])), max_size=20))
    events.extend(noise)
    events.sort(key=lambda e: (e[0], e[1] != "good"))
    return events, t


@settings(max_examples=150, deadline=None)
@given(st.data(), timings, st.booleans())
def test_no_false_takeover(data, timing: Timing, authenticated: bool) -> None:
    """Gaps below the timeout — with jitter, duplicates, replays, reordering — never lead to acquire."""
    events, last = data.draw(schedules(timing))
    d = detector(key=KEY if authenticated else None, timing=timing)
    driver = Driver(d)
    sealer = PeerMaster(d, interval=timing.interval, driver=driver)
    sent: list[bytes] = []
    for when, kind in events:
        if kind == "good" or not sent or not authenticated:
            frame = sealer.seal(when, holds=True) if authenticated else b"heartbeat"
            if kind == "good":
                sent.append(frame)
                driver.deliver(when, frame)
            elif authenticated:
                continue
            else:
                driver.deliver(when, frame, source="10.9.1.66")  # legacy: right body, wrong source
        else:
            frame = sent[-1] if kind == "dup" else sent[len(sent) // 2]
            driver.deliver(when, frame)
    driver.advance(last)
    assert driver.log.acquires == []
    assert d.state in {"monitoring", "suspect"}


@settings(max_examples=150, deadline=None)
@given(st.data(), timings, st.floats(0.0, 5.0))
def test_dead_master_taken_within_bound(data, timing: Timing, extra: float) -> None:
    """After the last heartbeat, acquire comes at most ``fail_after`` later (probe finished in time)."""
    events, last = data.draw(schedules(timing))
    d = detector(timing=timing)
    driver = Driver(d)
    sealer = PeerMaster(d, interval=timing.interval, driver=driver)
    for when, kind in events:
        if kind == "good":
            driver.deliver(when, sealer.seal(when, holds=True))
    driver.advance(last + timing.fail_after + extra + 1e-6)  # 1 µs: float rounding of probe start + duration
    assert len(driver.log.acquires) == 1
    taken_at, addresses = driver.log.acquires[0]
    assert addresses == VIPS
    assert last + timing.suspect_after <= taken_at <= last + timing.fail_after + 1e-6
    # The probe ends exactly at the deadline: no detection time spent on it.
    assert driver.log.probes and abs(driver.log.probes[-1] - (last + timing.fail_after - timing.probe_duration)) < 1e-9
    assert d.state == "failed_over" and d.held == VIPS


@settings(max_examples=100, deadline=None)
@given(timings, st.floats(0.0, 10.0), st.floats(0.0, 0.5))
def test_prompt_release(timing: Timing, held_for: float, latency: float) -> None:
    """While holding, the first valid heartbeat releases everything in the same step."""
    latency = min(latency, timing.suspect_after / 2)  # else the master is suspect again by then
    d = detector(timing=timing)
    driver = Driver(d, action_latency=latency)
    sealer = PeerMaster(d, interval=timing.interval, driver=driver)
    driver.advance(timing.fail_after + latency + held_for)
    assume(d.state == "failed_over")
    back = driver.now + 0.001
    actions = driver.deliver(back, sealer.seal(back, holds=False))
    releases = [a for a in actions if type(a).__name__ == "Release"]
    assert releases and releases[0].addresses == VIPS
    driver.advance(back + latency)
    assert d.state == "monitoring" and d.held == frozenset()
    # ... and it tells the master at once that it holds nothing.
    last_status = wire.decode(driver.log.transmits[-1][1], KEY)
    assert last_status.role == wire.ROLE_BACKUP and not last_status.holds and last_status.ack_epoch == 7


@settings(max_examples=150, deadline=None)
@given(st.data(), timings, st.lists(st.floats(0.001, 8.0), min_size=1, max_size=30))
def test_no_flapping(data, timing: Timing, gaps: list[float]) -> None:
    """Acquires never outnumber the silences that reached the timeout."""
    latency = data.draw(st.floats(0, 0.2))
    d = detector(timing=timing)
    driver = Driver(d, action_latency=latency)
    sealer = PeerMaster(d, interval=timing.interval, driver=driver)
    t = 0.0
    long_silences = 0
    for gap in gaps:
        if t + gap >= t + timing.fail_after:  # the same float arithmetic as the core's deadline
            long_silences += 1
        t += gap
        driver.deliver(t, sealer.seal(t, holds=True))
    driver.advance(t + latency)  # lets an acquire in flight at the last heartbeat finish (less than a timeout)
    assert len(driver.log.acquires) <= long_silences
    # Every acquire is answered by a release once the master speaks again:
    # its next heartbeat, one interval on, acknowledges the backup's answer to
    # the last one. (The last one alone need not count: after silences, the
    # only proof of its age may be as loose as max_delay — spec/wire.md, rule 7.)
    t += timing.interval
    driver.deliver(t, sealer.seal(t, holds=True))
    driver.advance(t + latency)
    assert len(driver.log.releases) == len(driver.log.acquires)


garbage = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda b: wire.MAGIC + b, st.binary(max_size=100)),
)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.sampled_from(["monitoring", "suspect", "failed_over", "contested"]), st.lists(garbage, max_size=10))
def test_garbage_never_changes_state(data, start: str, junk: list[bytes]) -> None:
    """Arbitrary bytes, a wrong key, replays and truncations are counted and never acted upon."""
    answered = VIPS if start == "contested" else frozenset()
    d = detector()
    driver = Driver(d, answered=lambda now: answered)
    sealer = PeerMaster(d, driver=driver)
    first = sealer.seal(0.5, holds=True)
    driver.deliver(0.5, first)
    target = {"monitoring": 1.0, "suspect": 2.0, "failed_over": 5.0, "contested": 5.0}[start]
    driver.advance(target)
    assert d.state == start
    wrong_key = wire.Sealer(b"not-the-right-key-at-all", wire.ROLE_MASTER, 99, 1.0, 0.0).seal(target, holds=True)
    truncated = sealer.seal(target, holds=True)[: data.draw(st.integers(0, wire.DATAGRAM_LENGTH - 1))]
    backup_role = wire.Sealer(KEY, wire.ROLE_BACKUP, 99, 1.0, 0.0).seal(target, holds=False)
    hostile = [*junk, first, wrong_key, truncated, backup_role]
    before = (d.state, d.last_heard, d.held, d.counters.accepted)
    rejected_before = sum(d.counters.rejected.values())
    for payload in hostile:
        assert d.receive_datagram(target, payload, MASTER, "priv0") == []
    assert (d.state, d.last_heard, d.held, d.counters.accepted) == before
    assert sum(d.counters.rejected.values()) == rejected_before + len(hostile)
