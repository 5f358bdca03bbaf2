"""End to end: a master and two backups (spec/backups.md) in a three-host lab, failing over in order.

Testing charter as tests/test_e2e_failover.py: every test builds its own lab
(``Lab(backups=2)``: master, backup, backup2, client; removed whatever
happens), runs the installed programs in it, and is bounded by the lab
fixture's time limit and by every wait's own timeout. Heartbeats every 100 ms
(the failure timeout 0.3 s) keep the module short; nothing asserts on speed,
only on who holds the address, in which order, and never two at once. Who
holds is read through netlink in the master's and both backups' namespaces,
about every millisecond (VipSampler), from the moment a killed host's
addresses are gone (a dead host keeps them on its down links until its
reboot, ``reboot_addresses``). After every takeover the client, in its own
namespace, must reach the address.

The pair harness runs failoverd on ``backup`` with ``--priority 200`` and on
``backup2`` with ``--priority 100``, each with the other's private address and
priority as ``--peer ADDR=PRIORITY``, and heartbeatd with ``--backups 2`` and both backups as targets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from failoverd.lab.lab import Lab
from failoverd.lab.pair import FailoverPair, FirstAnswer, VipSampler
from failoverd.lab.pytest_plugin import requires_netns

pytestmark = [pytest.mark.netns, pytest.mark.slow, requires_netns]

INTERVAL = 0.1
FAIL_AFTER = 3 * INTERVAL  # failoverd's default --fail-misses 3
STILL = 6 * FAIL_AFTER
"""How long "nothing moves" is watched: well past every backup's deadline, rank delay and probe."""
BACKUPS = ("backup", "backup2")


def state(pair: FailoverPair, host: str) -> str:
    return str(pair.status(host)["state"])


def peers(pair: FailoverPair, host: str) -> list[dict[str, Any]]:
    """What the backup's status says of each of its peers."""
    return list((pair.status(host).get("backups") or {}).get("peers") or [])


def hears_its_peer(pair: FailoverPair, host: str) -> bool:
    """The backup has counted a frame of every configured peer within the failure timeout."""
    peers_ = peers(pair, host)
    return len(peers_) == len(BACKUPS) - 1 and all(p.get("alive") for p in peers_)


def lost_its_peer(pair: FailoverPair, host: str) -> bool:
    peers_ = peers(pair, host)
    return bool(peers_) and not any(p.get("alive") for p in peers_)


def settled(pair: FailoverPair) -> None:
    """The master holds; each backup monitors it and hears the other."""
    pair.wait_until(lambda: pair.holders() == ["master"] and all(
        state(pair, b) == "monitoring" and hears_its_peer(pair, b) for b in BACKUPS), 15,
        "the master holds the VIP and both backups monitor it and hear each other")


def die(pair: FailoverPair, host: str) -> float:
    """The host dies (its processes SIGKILLed, its links down) and, as its reboot will, loses the VIP.
    Returns the time from which no dead host holds anything."""
    pair.lab.kill_host(host)
    pair.reboot_addresses(host)
    return time.time()


def client_reaches(pair: FailoverPair, what: str) -> None:
    client = FirstAnswer(pair.lab, pair.vip, limit=10)
    try:
        assert client.wait(10) is not None, f"the client does not reach the VIP {what}"
    finally:
        client.close()


def start(lab_factory: Callable[..., Lab], tmp_path: Path, seed: int, **kwargs: Any) -> FailoverPair:
    lab = lab_factory(seed=seed, backups=2)
    pair = FailoverPair(lab, tmp_path, interval=INTERVAL, **kwargs)
    assert pair.backup_hosts == BACKUPS
    pair.start_master()
    pair.start_backups()
    settled(pair)
    return pair


def test_the_higher_backup_takes_over_then_the_lower_then_the_master_takes_it_back_never_two(
    lab_factory, tmp_path: Path
) -> None:
    pair = start(lab_factory, tmp_path, seed=31)
    lab = pair.lab

    with VipSampler(lab, pair.vip_triplet) as sampler:
        killed = time.time()
        gone = die(pair, "master")
        pair.wait_until(lambda: pair.holds("backup"), 15, "the backup (priority 200) holds the VIP")
        client_reaches(pair, "on the backup")
        pair.wait_until(lambda: state(pair, "backup") == "failed_over", 5, "the backup is failed_over")
        # The lower one heard the holder and defers: it keeps listening, and does not take.
        pair.wait_until(lambda: state(pair, "backup2") == "deferring", 5, "backup2 defers to the holder")
        time.sleep(STILL)
        assert pair.holders() == ["backup"] and state(pair, "backup2") == "deferring"

        # The higher backup dies too: the lower one, alone, takes over after its rank delay.
        second = die(pair, "backup")
        pair.wait_until(lambda: pair.holds("backup2"), 15, "backup2 (priority 100) holds the VIP")
        client_reaches(pair, "on backup2")
        pair.wait_until(lambda: state(pair, "backup2") == "failed_over", 5, "backup2 is failed_over")
    assert sampler.count > 100, "the sampler hardly ran"
    assert not sampler.both_ever(after=gone), f"two hosts held the VIP for {sampler.overlap(after=gone) * 1000:.0f} ms"
    taken = sampler.first(lambda s: s.backup, after=killed)
    taken2 = sampler.first(lambda s: s.backup2, after=killed)
    acquiring2 = pair.log_time("backup2", "-> acquiring", after=killed)
    assert taken is not None and taken2 is not None and acquiring2 is not None
    # backup2 took nothing, nor began to, while the higher backup lived (log times are to the millisecond).
    assert taken2 > second and acquiring2 >= second - 0.001
    # The higher announced first (backup2 alive: in its wait set) and acquired after backup2's answer;
    # backup2, alone, had nobody to wait for and acquired at once.
    announced = pair.log_time("backup", "-> announcing", after=killed)
    acquiring = pair.log_time("backup", "-> acquiring", after=killed)
    assert announced is not None and acquiring is not None and announced <= acquiring <= taken
    assert pair.log_time("backup2", "-> announcing", after=killed) is None
    print(f"timeline: master killed 0 ms, VIP up on backup {(taken - killed) * 1000:.0f} ms; "
          f"backup killed, VIP up on backup2 {(taken2 - second) * 1000:.0f} ms later")

    # Both come back, the master first: it takes the VIP back through the managed failback
    # (backup2 releases on its heartbeats; the backup, still dead, is presumed gone only with
    # an ARP probe nobody answers), then the backup returns to monitoring beside backup2.
    with VipSampler(lab, pair.vip_triplet) as sampler:
        revived = time.time()
        lab.revive_host("master")
        pair.start_master()
        pair.wait_until(lambda: pair.holders() == ["master"], 15, "the master holds the VIP alone again")
        lab.revive_host("backup")
        pair.start_backup()
        settled(pair)
        time.sleep(STILL / 2)
    assert sampler.count > 100, "the sampler hardly ran"
    assert not sampler.both_ever(after=revived), (
        f"two hosts held the VIP for {sampler.overlap(after=revived) * 1000:.0f} ms during the failback")
    assert not sampler.ever("backup", after=revived), "the returning backup took the VIP"
    assert sampler.samples[-1].holders == frozenset({"master"})
    pair.wait_until(lambda: state(pair, "master") == "holding", 5, "the master is holding")
    for host in ("backup", "backup2", "master"):
        assert pair.stop(host) == 0, host


def test_a_cut_between_the_backups_moves_nothing_and_the_master_s_death_makes_exactly_one_holder(
    lab_factory, tmp_path: Path
) -> None:
    pair = start(lab_factory, tmp_path, seed=32)
    lab = pair.lab

    with VipSampler(lab, pair.vip_triplet) as sampler:
        cut = time.time()
        lab.partition("priv", "backup", "backup2")
        pair.wait_until(lambda: all(lost_its_peer(pair, b) for b in BACKUPS), 10,
                        "each backup finds its peer silent")
        time.sleep(STILL)
        # The master lives and both backups hear it: the cut between them decides nothing.
        assert pair.holders() == ["master"]
        assert [state(pair, b) for b in BACKUPS] == ["monitoring", "monitoring"]
        assert not sampler.ever("backup", after=cut) and not sampler.ever("backup2", after=cut)

        # The master dies with the backups still cut apart: each finds the other silent. The
        # rank delay and the ARP probe on the public LAN they share leave exactly one holder.
        killed = time.time()
        gone = die(pair, "master")
        pair.wait_until(lambda: len(pair.holders()) == 1, 15, "one backup holds the VIP")
        holder = pair.holders()[0]
        client_reaches(pair, f"on {holder}")
        other = next(b for b in BACKUPS if b != holder)
        time.sleep(STILL)
        assert pair.holders() == [holder], "the other backup took the VIP too, or the holder let it go"
        assert state(pair, holder) == "failed_over" and state(pair, other) != "failed_over"
    assert sampler.count > 100, "the sampler hardly ran"
    assert not sampler.both_ever(after=gone), (
        f"two hosts held the VIP for {sampler.overlap(after=gone) * 1000:.0f} ms")
    assert not sampler.ever(other, after=killed), f"{other} held the VIP at some point"
    print(f"with the backups cut apart, {holder} took over; {other} is {state(pair, other)}")
    # The highest takes first: it waits no rank delay, and the lower one's probe finds it.
    assert holder == "backup"


def test_a_backup_whose_health_check_fails_is_skipped_and_the_lower_one_takes_over(
    lab_factory, tmp_path: Path
) -> None:
    fit = tmp_path / "backup-fit"
    fit.write_text("")
    pair = start(lab_factory, tmp_path, seed=33, host_args={"backup": [
        "--check", f"test -e {fit}", "--check-interval", "0.2", "--check-timeout", "2",
        "--check-fall", "1", "--check-rise", "1"]})
    lab = pair.lab
    # Its service fails: the backup says unfit to its peer (and would decline to take over).
    fit.unlink()
    pair.wait_until(lambda: "fails: exited" in pair.log_text("backup"), 10, "the backup's check fails")
    pair.wait_until(lambda: any(p.get("fit") is False for p in peers(pair, "backup2")), 10,
                    "backup2 hears that the backup is unfit")

    with VipSampler(lab, pair.vip_triplet) as sampler:
        killed = time.time()
        gone = die(pair, "master")
        pair.wait_until(lambda: pair.holds("backup2"), 15, "backup2 holds the VIP")
        client_reaches(pair, "on backup2")
        pair.wait_until(lambda: state(pair, "backup2") == "failed_over", 5, "backup2 is failed_over")
        time.sleep(STILL)
        assert pair.holders() == ["backup2"]
    assert sampler.count > 100, "the sampler hardly ran"
    assert not sampler.ever("backup", after=killed), "the unfit backup took the VIP"
    assert not sampler.both_ever(after=gone)
    assert pair.log_time("backup", "-> acquiring", after=killed) is None
    assert pair.status("backup")["held"] == []


def test_a_backup_that_cannot_hear_the_master_while_its_peer_does_takes_nothing_and_says_so(
    lab_factory, tmp_path: Path
) -> None:
    """The peers' "master heard" (spec/backups.md, "What the review found", 1) between the real daemons:
    the master's heartbeats to the higher backup lost one way, the lower still hearing them and saying so
    in its peer frames: the higher defers (its probe may first find the master's address, contested;
    either way it takes nothing over), raises the critical alarm once, and monitors again when the
    heartbeats reach it."""
    pair = start(lab_factory, tmp_path, seed=34)
    lab = pair.lab

    with VipSampler(lab, pair.vip_triplet) as sampler:
        cut = time.time()
        lab.impair("priv", "master", "backup", loss=1.0)
        pair.wait_until(lambda: state(pair, "backup") == "deferring", 10,
                        "the backup, hearing no heartbeat but its peer's 'master heard', defers")
        (lower,) = peers(pair, "backup")
        assert lower["priority"] == 100 and lower["master_heard"] is True and lower["alive"]
        time.sleep(STILL)
        assert pair.holders() == ["master"]
        assert state(pair, "backup") == "deferring" and state(pair, "backup2") == "monitoring"
        alarm = pair.log_time("backup", "hears", after=cut)
        assert alarm is not None, pair.log_text("backup")
        assert pair.log_text("backup").count("CRITICAL peer backup 100 at") == 1  # once: one episode
        lab.impair("priv", "master", "backup")
        pair.wait_until(lambda: state(pair, "backup") == "monitoring", 10, "the backup hears the master again")
    assert sampler.count > 100, "the sampler hardly ran"
    assert not sampler.ever("backup", after=cut) and not sampler.ever("backup2", after=cut)
    for host in ("backup", "backup2", "master"):
        assert pair.stop(host) == 0, host
