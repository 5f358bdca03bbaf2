"""Two races a hostile review found in several backups (spec/backups.md, "What the review found").

Real cores on the simulated network (tests/_backups_sim.py), each race with
its twin: the rule the review's fix replaced monkeypatched back gives two
holders, so the test could fail.

1. The failback race: a backup that cannot hear the returning master defers
   to the holder; the holder counts the master's heartbeats and releases, and
   that one release both ends the deferral (the backup probes and takes over
   at once) and let the master presume the silent backup gone (it probed and
   added): two probes overlapping, both silent, two holders. The master now
   presumes a silent backup no earlier than the release settle after the
   latest release of any backup, so its probe sees the deferring backup's
   address.
2. A one-way loss between the backups: the higher announces, hears the lower
   (whose acknowledgements are of the higher's frames from before the loss,
   still provably young) say it holds and never yield; the higher kept
   announcing until the drift allowance aged the lower's frames out, then
   acquired on its probe of long before. An announcement now lasts at most
   ``fail_after + 2 × interval``: then it is withdrawn and a fresh probe
   decides (it sees the lower's address: contested).
"""

from __future__ import annotations

import pytest
from _backups_sim import MASTER, VIPS, Network

from failoverd.core.detector import Detector
from failoverd.core.master import Master
from failoverd.core.timing import Timing

RACES = [(0.2, 0.3), (1.0, 1.5)]
"""(interval, acquire and release time): each within d + A ≤ 2 × interval, the stated assumption."""


def _failback_race(interval: float, latency: float) -> Network:
    """The review's failback_race.py on the simulated network: the higher, cut from the returning master
    (but hearing the lower), defers to the lower that holds; the master returns, managing its addresses."""
    net = Network(timing=Timing(interval=interval), action_latency=latency)
    net.master_configured = VIPS
    net.start_managing_master()
    net.start_backup("high")
    net.start_backup("low")
    net.run_until(10.0)
    net.make_unfit("high")  # so the lower takes over when the master's host dies
    net.kill_master()
    net.run_until(30.0)
    assert net.holders() == ["low"]
    net.make_unfit("high", False)  # fit again: it defers to the holder
    net.run_until(40.0)
    assert net.state("high") == "deferring" and net.holders() == ["low"]
    high = net.backups["high"].address
    net.drop = lambda source, destination, payload: (source, destination) == (MASTER, high)
    net.start_managing_master()
    net.run_until(100.0)
    return net


@pytest.mark.parametrize(("interval", "latency"), RACES)
def test_1_a_release_that_ends_a_deferral_puts_the_masters_presumption_off_one_holder(
    interval: float, latency: float,
) -> None:
    """The master's probe comes after the higher's address is up: it sees it, and waits (contested)."""
    net = _failback_race(interval, latency)
    assert net.most_holders == 1
    assert net.holders() == ["high"] and net.state("high") == "failed_over"  # it cannot hear the master
    # The master's probe found the higher's address: it waits, probing again each retry interval.
    assert net.failback is not None and net.failback.state in {"waiting", "probing"} and not net.master_acquires


@pytest.mark.parametrize(("interval", "latency"), RACES)
def test_1_without_the_release_settle_the_master_and_the_deferring_backup_both_add(
    monkeypatch: pytest.MonkeyPatch, interval: float, latency: float,
) -> None:
    monkeypatch.setattr(Master, "_release_settle", lambda self: float("-inf"))
    net = _failback_race(interval, latency)
    assert net.most_holders == 2 and net.holders() == ["high", "master"]


def test_1_with_the_silent_backup_really_gone_the_master_takes_back_after_the_release_settle() -> None:
    """The settle's cost: with one backup dead, the addresses are nobody's from the holder's release until
    the master's presumption, ``fail_after + retry + 3 × interval`` after it, its probe and its acquire (printed)."""
    timing = Timing()
    net = Network(timing=timing)
    net.master_configured = VIPS
    net.start_managing_master()
    net.start_backup("high")
    net.start_backup("low")
    net.run_until(10.0)
    net.kill_backup("high")  # its host dies (nothing of it configured)
    net.kill_master()
    net.run_until(60.0)
    assert net.holders() == ["low"]
    back = net.now
    net.start_managing_master()
    net.run_until(back + 30.0)
    assert net.holders() == ["master"] and net.most_holders == 1
    released = net.backups["low"].releases[-1] + net.action_latency
    (acquired,) = net.master_acquires
    settle = timing.fail_after + timing.effective_retry_interval + 3 * timing.interval
    assert acquired >= released + settle
    print(f"\nfailback with a backup dead: nobody holds from {released - back:.2f} s to "
          f"{acquired + net.action_latency - back:.2f} s after the master's return (settle {settle:.1f} s)")


FAST = Timing(interval=0.2, max_delay=0.3)
"""The review's fast timing: the drift allowance ages the lower's frames out after ~90 s, not ~50 minutes."""


def _one_way_loss() -> Network:
    """The review's oneway.py: the higher's frames to the lower are lost (a firewall, an asymmetric route,
    an attacker withholding them), the lower's to the higher arrive; then the master dies."""
    net = Network(timing=FAST)
    net.start_master()
    for name in ("high", "low"):
        net.start_backup(name)
    net.run_until(10.0)
    high, low = net.backups["high"].address, net.backups["low"].address
    net.drop = lambda source, destination, payload: (source, destination) == (high, low)
    net.run_until(11.0)
    net.kill_master()
    for _ in range(12):  # in steps: each run is bounded in events
        net.run_until(net.now + 10.0)
    return net


def test_2_an_announcement_the_lower_never_hears_runs_out_and_a_fresh_probe_finds_its_address() -> None:
    net = _one_way_loss()
    assert net.most_holders == 1 and net.holders() == ["low"]
    high = net.backups["high"]
    assert high.acquires == [] and net.state("high") in {"deferring", "contested"}
    announced = net.entered("high", "announcing")
    withdrawn = net.entered("high", "suspect", after=announced or 0.0)
    assert announced is not None and withdrawn is not None
    assert withdrawn - announced == pytest.approx(FAST.fail_after + 2 * FAST.interval)  # the limit, not ~90 s


def test_2_without_the_limit_the_higher_acquires_on_its_old_probe_while_the_lower_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Detector, "_announcement_limit", lambda self: float("inf"))
    net = _one_way_loss()
    assert net.most_holders == 2 and net.holders() == ["high", "low"]
