"""End to end: the real heartbeatd and failoverd in a namespace lab, failing over and back.

Testing charter: every test builds its own lab (unique namespaces, removed
whatever happens, see failoverd.lab.pytest_plugin), runs the installed
programs in it, and is bounded by the lab fixture's time limit and by every
wait's own timeout. Heartbeats every 100 ms (detection ~0.3 s) keep the
suite short; nothing asserts on speed, only on order and on who holds what.
Address presence is read through netlink in the namespaces.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from failoverd.lab.pair import FailoverPair, FirstAnswer, VipSampler
from failoverd.lab.pytest_plugin import requires_netns

pytestmark = [pytest.mark.netns, pytest.mark.slow, requires_netns]


def vip_count(pair: FailoverPair, host: str) -> int:
    out = pair.lab.run(host, ["ip", "-4", "-o", "addr", "show"]).stdout
    return sum(f" {pair.vip}/" in line for line in out.splitlines())


def test_master_killed_backup_takes_over_client_follows_then_failback_without_overlap(
    lab_factory, tmp_path: Path
) -> None:
    lab = lab_factory(seed=11)
    pair = FailoverPair(lab, tmp_path, interval=0.1)
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds("master"), 10, "the master holds the VIP")
    assert pair.status("backup")["state"] == "monitoring"

    with VipSampler(lab, pair.vip_triplet) as sampler:
        killed = time.time()
        lab.kill_host("master")
        client = FirstAnswer(lab, pair.vip, limit=15)
        try:
            pair.wait_until(lambda: pair.holds("backup"), 15, "the backup holds the VIP")
            answered = client.wait(10)
        finally:
            client.close()
    detected = pair.log_time("backup", "-> acquiring", after=killed)
    up = sampler.first(lambda s: s.backup, after=killed)
    print(f"timeline: kill 0 ms, detection {((detected or killed) - killed) * 1000:.0f} ms, "
          f"VIP up {((up or killed) - killed) * 1000:.0f} ms, first answer {((answered or killed) - killed) * 1000:.0f} ms")
    assert detected is not None and up is not None and answered is not None
    # Order, not speed. The sampler's and the pinger's clocks are read by threads of this process,
    # which a loaded machine may delay, so only the daemon's own order is compared strictly.
    assert killed <= detected <= up + 0.005
    assert killed < answered
    # The acquire reports once its gratuitous ARP burst is out.
    pair.wait_until(lambda: pair.status("backup")["state"] == "failed_over", 5, "the backup is failed_over")
    assert pair.status("backup")["held"] == [str(pair.vip_triplet)]
    assert any(line.startswith(f"--peer {lab.address('master', 'priv')} down") for line in pair.notifications())

    # The master comes back as after a reboot: links up, no VIP, heartbeatd started.
    pair.reboot_master_addresses()
    with VipSampler(lab, pair.vip_triplet) as sampler:
        lab.revive_host("master")
        started = time.time()
        pair.start_master()
        pair.wait_until(lambda: pair.holds("master") and not pair.holds("backup"), 15,
                        "the master holds the VIP again and the backup released it")
        time.sleep(0.5)
    assert not sampler.both_ever(after=started), "both hosts held the VIP during failback"
    assert sampler.count > 50, "the sampler hardly ran"
    assert pair.status("backup")["state"] == "monitoring"
    assert pair.status("master")["state"] == "holding"
    assert vip_count(pair, "master") == 1 and vip_count(pair, "backup") == 0
    assert pair.stop("backup") == 0
    assert pair.stop("master") == 0
    assert not pair.holds("master"), "heartbeatd releases its managed address when it stops"


def test_master_links_cut_backup_takes_over_legacy_mode(lab_factory, tmp_path: Path) -> None:
    """The original's setup: legacy 'heartbeat' datagrams, the master's VIP configured by the system."""
    lab = lab_factory(seed=12)
    pair = FailoverPair(lab, tmp_path, interval=0.1, authenticated=False, managed=False)
    lab.run("master", ["ip", "addr", "add", f"{pair.vip}/24", "dev", "pub0"])
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.status("backup")["counters"]["accepted"] >= 3, 10, "the backup hears the master")
    assert pair.status("backup")["state"] == "monitoring"

    cut = time.time()
    lab.partition("priv", "master")
    lab.partition("pub", "master")
    pair.wait_until(lambda: pair.holds("backup"), 15, "the backup holds the VIP")
    client = FirstAnswer(lab, pair.vip, limit=10)
    try:
        assert client.wait(10) is not None, "the client does not reach the VIP on the backup"
    finally:
        client.close()
    assert pair.log_time("backup", "-> acquiring", after=cut) is not None
    pair.wait_until(lambda: pair.status("backup")["state"] == "failed_over", 5, "the backup is failed_over")

    # Links back: the master's heartbeats resume and the backup lets go at once.
    lab.heal()
    pair.wait_until(lambda: not pair.holds("backup"), 15, "the backup released the VIP")
    pair.wait_until(lambda: pair.status("backup")["state"] == "monitoring", 5, "the backup is monitoring")
    assert pair.stop("backup") == 0


def test_backup_killed_while_holding_adopts_on_restart_and_releases_on_sigterm(lab_factory, tmp_path: Path) -> None:
    lab = lab_factory(seed=13)
    pair = FailoverPair(lab, tmp_path, interval=0.1)
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds("master"), 10, "the master holds the VIP")
    lab.kill_host("master")
    pair.wait_until(lambda: pair.status("backup")["state"] == "failed_over", 15, "the backup took over")

    pair.kill("backup")  # SIGKILL: no chance to release
    assert pair.holds("backup")
    pair.start_backup()
    assert "adopting them as held" in pair.log_text("backup")
    status = pair.status("backup")
    assert status["state"] == "failed_over"
    assert status["held"] == [str(pair.vip_triplet)]
    assert vip_count(pair, "backup") == 1, "the VIP was added a second time"

    assert pair.stop("backup") == 0
    assert not pair.holds("backup"), "SIGTERM left the VIP behind"
    assert "releasing" in pair.log_text("backup")
