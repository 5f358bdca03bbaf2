"""End to end with IPv6 on the LANs: the real heartbeatd and failoverd in an IPv6 lab (issue 13).

Testing charter: as tests/test_e2e_failover.py: every test builds its own lab
(``Lab(ipv6=True)``: unique namespaces, removed whatever happens), runs the
installed programs in it, and is bounded by the lab fixture's time limit and
by every wait's own timeout; nothing asserts on speed, only on order and on
who holds what. The client reaches the virtual addresses with the lab's
``ping -6``, from its own namespace, which works only if our Neighbour
Advertisements moved its neighbour cache. Heartbeats travel over IPv6 too
(unique-local, or link-local with a scope).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from failoverd.lab.lab import Lab
from failoverd.lab.pair import FailoverPair, VipSampler
from failoverd.lab.pytest_plugin import requires_netns
from failoverd.system.rtnetlink import IFA_F_DADFAILED, IFA_F_TENTATIVE

pytestmark = [pytest.mark.netns, pytest.mark.slow, requires_netns]


def reaches(lab: Lab, address: str) -> bool:
    """Does the client get an echo reply from ``address`` (a few tries, each its own request)?"""
    return lab.ping("client", address, count=5, interval=0.05, wait=1.0).received > 0


def address_line(lab: Lab, host: str, address: str) -> str:
    out = lab.run(host, ["ip", "-6", "-o", "addr", "show"]).stdout
    return next((line for line in out.splitlines() if f" {address}/" in line), "")


def test_ipv6_address_taken_over_and_failed_back_client_follows(lab_factory, tmp_path: Path) -> None:
    lab = lab_factory(seed=21, ipv6=True)
    # The backup's kernel does DAD on what it adds: failoverd's NODAD is what keeps the VIP from being tentative.
    lab.run("backup", ["sysctl", "-qw", "net.ipv6.conf.pub0.accept_dad=1", "net.ipv6.conf.pub0.dad_transmits=1"])
    pair = FailoverPair(lab, tmp_path, interval=0.1, vips=[f"pub0:{lab.vip6}/64"],
                        master_address=lab.address6("master", "priv"),
                        master_targets=[lab.address6("backup", "priv")])
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds("master"), 10, "the master holds the IPv6 VIP")
    pair.wait_until(lambda: pair.status("backup")["counters"]["accepted"] >= 3, 10,
                    "the backup hears the master over IPv6")
    assert reaches(lab, lab.vip6), "the client does not reach the VIP on the master"

    with VipSampler(lab, pair.vip_triplet) as sampler:
        killed = time.time()
        lab.kill_host("master")
        pair.wait_until(lambda: pair.holds("backup"), 15, "the backup holds the IPv6 VIP")
        pair.wait_until(lambda: pair.status("backup")["state"] == "failed_over", 5, "the backup is failed_over")
    assert pair.log_time("backup", "-> acquiring", after=killed) is not None
    assert "DAD for pub0:" in pair.log_text("backup") and ": silent" in pair.log_text("backup")
    # Logged once every round is out (--garp-count x --garp-spacing after the add).
    pair.wait_until(lambda: "unsolicited Neighbour Advertisements" in pair.log_text("backup"), 5,
                    "the backup announced the VIP")
    # The client's cache said "the master's MAC"; only the backup's advertisement can have moved it.
    assert reaches(lab, lab.vip6), "the client does not reach the VIP on the backup"
    assert pair.status("backup")["held"] == [str(pair.vip_triplet)]
    assert not sampler.flags["backup"] & (IFA_F_TENTATIVE | IFA_F_DADFAILED), "the VIP was tentative on the backup"
    line = address_line(lab, "backup", lab.vip6)
    assert "nodad" in line and "tentative" not in line and "dadfailed" not in line, line

    pair.reboot_master_addresses()
    with VipSampler(lab, pair.vip_triplet) as sampler:
        lab.revive_host("master")
        started = time.time()
        pair.start_master()
        pair.wait_until(lambda: pair.holds("master") and not pair.holds("backup"), 15,
                        "the master holds the IPv6 VIP again and the backup released it")
    assert not sampler.both_ever(after=started), "both hosts held the IPv6 VIP during failback"
    assert reaches(lab, lab.vip6), "the client does not reach the VIP on the master after failback"
    pair.wait_until(lambda: pair.status("backup")["state"] == "monitoring", 5, "the backup is monitoring")
    assert pair.stop("backup") == 0
    assert pair.stop("master") == 0


def test_mixed_pair_ipv4_and_ipv6_over_link_local_heartbeats(lab_factory, tmp_path: Path) -> None:
    lab = lab_factory(seed=22, ipv6=True)
    v4, v6 = f"pub0:{lab.vip}/24", f"pub0:{lab.vip6}/64"
    pair = FailoverPair(lab, tmp_path, interval=0.1, vips=[v4, v6],
                        master_address=f"{lab.link_local('master', 'priv')}%priv0",
                        master_targets=[f"{lab.link_local('backup', 'priv')}%priv0"])
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds_all("master"), 10, "the master holds both VIPs")
    pair.wait_until(lambda: pair.status("backup")["counters"]["accepted"] >= 3, 10,
                    "the backup hears the master's link-local heartbeats")
    assert reaches(lab, lab.vip) and reaches(lab, lab.vip6)

    lab.kill_host("master")
    pair.wait_until(lambda: pair.holds_all("backup"), 15, "the backup holds both VIPs")
    pair.wait_until(lambda: pair.status("backup")["state"] == "failed_over", 5, "the backup is failed_over")
    assert sorted(pair.status("backup")["held"]) == sorted([v4, v6])
    log = pair.log_text("backup")
    assert "ARP probe for pub0:" in log and "DAD for pub0:" in log
    assert reaches(lab, lab.vip), "the client does not reach the IPv4 VIP on the backup"
    assert reaches(lab, lab.vip6), "the client does not reach the IPv6 VIP on the backup"
    assert any(line.startswith(f"--peer {lab.link_local('master', 'priv')}%priv0 down")
               for line in pair.notifications())
    assert pair.stop("backup") == 0
    assert pair.holds_none("backup"), "SIGTERM left a VIP behind"


def test_private_link_cut_with_the_master_alive_dad_answered_no_takeover(lab_factory, tmp_path: Path) -> None:
    """Legacy heartbeats over IPv6; the master holds the IPv6 VIP as configured by the system."""
    lab = lab_factory(seed=23, ipv6=True)
    pair = FailoverPair(lab, tmp_path, interval=0.1, authenticated=False, managed=False,
                        vips=[f"pub0:{lab.vip6}/64"], master_address=lab.address6("master", "priv"),
                        master_targets=[lab.address6("backup", "priv")])
    lab.run("master", ["ip", "addr", "add", f"{lab.vip6}/64", "dev", "pub0", "nodad"])
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.status("backup")["counters"]["accepted"] >= 3, 10, "the backup hears the master")

    cut = time.time()
    lab.partition("priv", "master")
    # The master's own kernel answers the backup's DAD on the public LAN: contested, not taken.
    pair.wait_until(lambda: pair.status("backup")["state"] == "contested", 15, "the backup is contested")
    assert not pair.holds("backup"), "the backup took an address the master still answers for"
    assert pair.log_time("backup", "-> acquiring", after=cut) is None
    assert "answered" in pair.log_text("backup") and "Neighbour Advertisement" in pair.log_text("backup")
    assert reaches(lab, lab.vip6), "the client lost the master"

    lab.heal()
    pair.wait_until(lambda: pair.status("backup")["state"] == "monitoring", 15, "the backup is monitoring again")
    assert not pair.holds("backup")
    assert pair.stop("backup") == 0


def test_ipv6_lab_pings_and_the_address_plan(lab_factory) -> None:
    lab = lab_factory(seed=24, ipv6=True)
    assert lab.ping("client", lab.address6("master", "pub"), count=2).received == 2
    scoped = f"{lab.link_local('master', 'priv')}%priv0"
    assert lab.ping("backup", scoped, count=2).received == 2
    # Killing a host keeps its IPv6 addresses, as it keeps IPv4 ones (keep_addr_on_down).
    lab.kill_host("master")
    lab.revive_host("master")
    assert address_line(lab, "master", lab.address6("master", "pub"))
    done = subprocess.run(["ip", "-n", lab.ns("master"), "-6", "-o", "addr", "show", "tentative"],
                          capture_output=True, text=True, timeout=10, check=True)
    assert lab.address6("master", "pub") not in done.stdout


def test_a_backup_restarted_holding_the_ipv6_vip_yields_to_the_masters_advertisement(
    lab_factory, tmp_path: Path
) -> None:
    """Both hold the IPv6 VIP and only the wire can tell: the conflict watchers follow Neighbour
    Advertisements on both hosts, the backup yields, and neither address is ever left dadfailed."""
    lab = lab_factory(seed=25, ipv6=True)
    for host in ("master", "backup"):
        lab.run(host, ["sysctl", "-qw", "net.ipv6.conf.pub0.accept_dad=1", "net.ipv6.conf.pub0.dad_transmits=1"])
    pair = FailoverPair(lab, tmp_path, interval=0.1, vips=[f"pub0:{lab.vip6}/64"],
                        master_address=lab.address6("master", "priv"),
                        master_targets=[lab.address6("backup", "priv")])
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds("master"), 10, "the master holds the IPv6 VIP")
    pair.wait_until(lambda: pair.status("backup")["state"] == "monitoring", 10, "the backup monitors")
    assert pair.stop("backup") == 0
    # The backup comes back holding the VIP (as after a crash while it held it) and cannot hear the master.
    lab.partition("priv", "master", "backup")
    lab.run("backup", ["ip", "addr", "add", f"{lab.vip6}/64", "dev", "pub0", "nodad"])
    with VipSampler(lab, pair.vip_triplet, limit=60) as sampler:
        started = time.time()
        pair.start_backup()
        pair.wait_until(lambda: not pair.holds("backup"), 10, "the backup let the adopted VIP go")
        pair.wait_until(lambda: pair.status("backup")["state"] == "contested", 10, "the backup is contested")
    released = sampler.first(lambda s: not s.backup, after=started)
    assert released is not None
    assert sampler.first(lambda s: s.backup, after=released) is None, "the backup took the VIP again"
    assert sampler.first(lambda s: not s.master) is None, "the master lost the VIP"
    assert not sampler.flags["master"] & (IFA_F_TENTATIVE | IFA_F_DADFAILED), "the master's VIP went dadfailed"
    backup_log = pair.log_text("backup")
    assert "adopting them as held" in backup_log
    assert "state failed_over -> recovering (conflict)" in backup_log
    assert "IPv6 conflict:" in backup_log
    assert "announcing ours again" in pair.log_text("master")
    line = address_line(lab, "master", lab.vip6)
    assert line and "dadfailed" not in line and "tentative" not in line, line
    assert reaches(lab, lab.vip6), "the client does not reach the VIP on the master"
    lab.heal()
    assert pair.stop("backup") == 0
    assert pair.stop("master") == 0
