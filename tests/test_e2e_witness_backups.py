"""End to end: the etcd witness with several backups (spec/witness.md, "With several backups"). The real
heartbeatd (``--backups 2``) and two failoverd (``--priority 200`` and ``100``, each the other's
``--peer``) in a three-host lab, all three joined to a real three-member etcd cluster.

Testing charter as tests/test_e2e_witness.py and tests/test_e2e_backups.py: each test builds its own
lab and cluster (removed whatever happens), one cluster at a time, bounded by the lab fixture's time
limit and every wait's own timeout; heartbeats every 100 ms. Who holds the VIP is read through netlink
in all three hosts' namespaces about every millisecond (VipSampler), from the moment a killed host's
addresses are gone (``reboot_addresses``): never two at once. Figures are printed, never asserted.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from failoverd.lab.etcd import EtcdCluster
from failoverd.lab.lab import Lab
from failoverd.lab.pair import FailoverPair, VipSampler
from failoverd.lab.pytest_plugin import requires_netns

pytestmark = [
    pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (Debian package etcd-server)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.netns, pytest.mark.slow, requires_netns,
]

BACKUPS = ("backup", "backup2")
TAKEN_BOUND = 8.0
"""Seconds within which the VIP must be held again by a host that may hold it (a guard, not the figure)."""
STILL = 1.8
"""How long "nothing moves" is watched: past every backup's deadline and rank delay at 0.1 s heartbeats."""


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    with EtcdCluster(members=3, peers=0) as made:
        yield made


def state(pair: FailoverPair, host: str) -> str:
    return str(pair.status(host)["state"])


def hears_its_peer(pair: FailoverPair, host: str) -> bool:
    peers = list((pair.status(host).get("backups") or {}).get("peers") or [])
    return len(peers) == 1 and all(p.get("alive") for p in peers)


def start(lab_factory: Callable[..., Lab], cluster: EtcdCluster, tmp_path: Path, seed: int,
          **kwargs: Any) -> FailoverPair:
    lab = lab_factory(seed=seed, backups=2)
    for host in ("master", *BACKUPS):
        cluster.attach(f"h{host}", lab.ns(host))
    etcd = ["--etcd-endpoints", ",".join(cluster.endpoints)]
    pair = FailoverPair(lab, tmp_path, interval=0.1, master_args=etcd, backup_args=etcd, **kwargs)
    assert pair.backup_hosts == BACKUPS
    pair.start_master()
    pair.start_backups()
    pair.wait_until(lambda: pair.holders() == ["master"] and state(pair, "master") == "holding" and all(
        state(pair, b) == "monitoring" and hears_its_peer(pair, b) for b in BACKUPS), 15,
        "the master holds the VIP with the witness's grant, both backups monitor it and hear each other")
    assert pair.status("master")["witness"]["claim"] is True
    return pair


def die(pair: FailoverPair, host: str) -> float:
    """The host dies (SIGKILL, links down) and, as its reboot will, loses the VIP; from the returned time on
    no dead host holds anything."""
    pair.lab.kill_host(host)
    pair.reboot_addresses(host)
    return time.time()


def test_the_higher_backup_takes_over_then_the_lower_never_two(lab_factory, cluster: EtcdCluster,
                                                                tmp_path: Path) -> None:
    pair = start(lab_factory, cluster, tmp_path, seed=41)
    with VipSampler(pair.lab, pair.vip_triplet) as sampler:
        gone = die(pair, "master")
        pair.wait_until(lambda: pair.holds("backup"), TAKEN_BOUND, "the backup (priority 200) holds the VIP")
        pair.wait_until(lambda: state(pair, "backup") == "failed_over", 5, "the backup is failed_over")
        time.sleep(STILL)
        # The lower one heard the higher claim (its frames say holds from then on) and defers.
        assert pair.holders() == ["backup"] and state(pair, "backup2") == "deferring"
        second = die(pair, "backup")
        pair.wait_until(lambda: pair.holds("backup2"), TAKEN_BOUND, "backup2 (priority 100) holds the VIP")
        pair.wait_until(lambda: state(pair, "backup2") == "failed_over", 5, "backup2 is failed_over")
        assert pair.status("backup2")["witness"]["claim"] is True
    assert sampler.count > 100, "the sampler hardly ran"
    assert not sampler.both_ever(after=gone), f"two hosts held the VIP for {sampler.overlap(after=gone) * 1000:.0f} ms"
    taken = sampler.first(lambda s: s.backup, after=gone)
    taken2 = sampler.first(lambda s: s.backup2, after=gone)
    assert taken is not None and taken2 is not None and taken2 > second
    # The lower never tried while the higher lived: the rank delay let the higher claim first.
    claimed2 = pair.log_time("backup2", "-> claiming", after=gone)
    assert claimed2 is not None and claimed2 >= second - 0.001
    assert pair.log_time("backup", "-> announcing", after=gone) is None  # no announcement with a witness
    print(f"witness, two backups: master killed 0 ms, VIP up on backup {(taken - gone) * 1000:.0f} ms; "
          f"backup killed, VIP up on backup2 {(taken2 - second) * 1000:.0f} ms later")


def test_the_higher_backup_cut_from_etcd_the_lower_takes_over(lab_factory, cluster: EtcdCluster,
                                                              tmp_path: Path) -> None:
    pair = start(lab_factory, cluster, tmp_path, seed=42)
    cluster.isolate("hbackup")
    with VipSampler(pair.lab, pair.vip_triplet) as sampler:
        gone = die(pair, "master")
        pair.wait_until(lambda: pair.holds("backup2"), TAKEN_BOUND, "backup2 holds the VIP")
        time.sleep(1.0)
        assert pair.holders() == ["backup2"]
    assert not sampler.both_ever(after=gone), f"two hosts held the VIP for {sampler.overlap(after=gone) * 1000:.0f} ms"
    assert not sampler.ever("backup", after=gone), "the backup cut from etcd took the VIP"
    taken2 = sampler.first(lambda s: s.backup2, after=gone)
    assert taken2 is not None
    print(f"higher backup cut from etcd: master killed 0 ms, VIP up on backup2 {(taken2 - gone) * 1000:.0f} ms")


def test_whole_cluster_stopped_the_master_keeps_on_both_backups_confirmations(
    lab_factory, cluster: EtcdCluster, tmp_path: Path
) -> None:
    pair = start(lab_factory, cluster, tmp_path, seed=43)
    time.sleep(0.5)
    needle = "on the confirmations of every backup"
    with VipSampler(pair.lab, pair.vip_triplet) as sampler:
        stopped = time.time()
        cluster.stop()
        pair.wait_until(lambda: needle in pair.log_text("master"), TAKEN_BOUND,
                        "the master says it keeps the VIP on both backups' confirmations")
        kept = pair.log_time("master", needle, after=stopped)
        time.sleep(2.0)
        assert pair.holders() == ["master"]
        assert pair.status("master")["witness"]["confirmation_left"] is not None
        restarted = time.time()
        cluster.start()
        cluster.wait_healthy()
        pair.wait_until(lambda: pair.status("master")["witness"]["reachable"] is True
                        and pair.status("master")["witness"]["claim"] is True and pair.holds("master"), TAKEN_BOUND,
                        "the master renews its claim once etcd is back")
        renewed = time.time()
        time.sleep(0.5)
        assert pair.holders() == ["master"]
    assert not sampler.both_ever(), "two hosts held the VIP"
    gap = sampler.first(lambda s: not s.master, after=stopped)
    assert gap is None or gap >= restarted, "the master let go of its VIP during the outage"
    assert kept is not None
    print(f"cluster stopped (keep, two backups): keeping said {(kept - stopped) * 1000:.0f} ms after; "
          f"restarted: claim renewed {(renewed - restarted) * 1000:.0f} ms after")
    for host in ("backup", "backup2", "master"):
        assert pair.stop(host) == 0, host
