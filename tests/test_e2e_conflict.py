"""End to end: RFC 5227 conflict detection ends a double hold that heartbeats cannot see.

With the private link cut and the public network joined, the heartbeats cannot
tell the backup that the master holds the VIP; only the public wire can. These
tests make both hosts hold it and check, by sampling both namespaces through
netlink about every millisecond, that the overlap ends as soon as the master's
announcement reaches the backup and that the master keeps the VIP.

(That a plain private-link cut with the master holding gives no takeover at all
is test_e2e_adversity.py's test_private_link_cut_while_public_joins_them_no_takeover_and_alarm.)

Same charter as test_e2e_failover.py: own lab per test, installed programs, every
wait bounded, the lab torn down whatever happens.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from failoverd.lab.pair import FailoverPair, VipSampler
from failoverd.lab.pytest_plugin import requires_netns

pytestmark = [pytest.mark.netns, pytest.mark.slow, requires_netns]

INTERVAL = 0.1
# The master's PreAcq hook outlasts the backup's whole failure timeout (3 intervals)
# after the handshake, so the backup's takeover probe looks before the master has
# added the VIP: spin's handshake race, on purpose. Below the lab's 2 s hook timeout.
SLOW_PREACQ = 1.0
# Generous against a loaded machine, tiny against the alternative: without
# conflict detection the overlap lasts as long as the cut.
OVERLAP_BOUND = 0.25


def _hook(directory: Path, name: str, body: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for level in (directory.parent, directory):  # hooks run only from directories nobody else can write
        os.chmod(level, 0o755)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)


def _overlap_window(sampler: VipSampler, after: float) -> tuple[float, float] | None:
    """(first sample with both holding, first later sample with the backup not holding)."""
    start = sampler.first(lambda s: s.master and s.backup, after=after)
    if start is None:
        return None
    end = sampler.first(lambda s: not s.backup, after=start)
    return (start, end if end is not None else float("inf"))


def test_private_cut_right_after_the_failback_handshake_the_backup_yields_to_the_masters_announcement(
    lab_factory, tmp_path: Path
) -> None:
    lab = lab_factory(seed=31)
    marker = tmp_path / "preacq-started"
    master_hooks = tmp_path / "master-hooks"
    pair = FailoverPair(lab, tmp_path / "pair", interval=INTERVAL, master_args=["--hook-dir", str(master_hooks)])
    _hook(master_hooks / pair.vip, "PreAcq-slow", f"touch {marker}\nsleep {SLOW_PREACQ}")

    # No master yet: the backup takes the VIP over.
    pair.start_backup()
    pair.wait_until(lambda: pair.status("backup")["state"] == "failed_over", 15, "the backup holds the VIP")
    with VipSampler(lab, pair.vip_triplet, limit=60) as sampler:
        # The master returns; the handshake (backup releases, says so, master starts
        # acquiring) runs; the private link is cut the moment the master's hook starts.
        pair.start_master()
        pair.wait_until(marker.exists, 15, "the master's PreAcq hook started (the handshake is done)")
        lab.partition("priv", "master", "backup")
        cut = time.time()
        pair.wait_until(lambda: pair.holds("backup"), 10, "the backup took the VIP again (the race)")
        pair.wait_until(lambda: pair.holds("master") and not pair.holds("backup"), 10,
                        "the master holds the VIP and the backup let go")
        pair.wait_until(lambda: pair.status("backup")["state"] == "contested", 10, "the backup is contested")
        time.sleep(1.0)  # ten intervals: the backup keeps probing, keeps being answered, takes nothing
    window = _overlap_window(sampler, after=cut)
    assert window is not None, "the race did not happen: both never held the VIP"
    start, end = window
    master_added = sampler.first(lambda s: s.master, after=cut)
    released_log = pair.log_time("backup", "state failed_over -> recovering (conflict)", after=cut)
    print(f"overlap {1000 * (end - start):.1f} ms (sampled), total {1000 * sampler.overlap(after=cut):.1f} ms; "
          f"master added at +{1000 * (master_added - cut):.0f} ms after the cut; "
          f"backup logged the conflict at +{1000 * ((released_log or end) - cut):.0f} ms; {sampler.count} samples")

    assert end - start < OVERLAP_BOUND
    assert sampler.overlap(after=cut) < OVERLAP_BOUND, "both held the VIP more than once"
    assert sampler.first(lambda s: s.backup, after=end) is None, "the backup took the VIP again"
    assert sampler.first(lambda s: not s.master, after=master_added) is None, "the master lost the VIP"
    assert pair.holds("master") and not pair.holds("backup")
    assert pair.status("master")["state"] == "holding"
    assert pair.status("backup")["state"] == "contested"
    backup_log = pair.log_text("backup")
    assert "another host answers for" in backup_log and "ARP conflict" in backup_log

    lab.heal()
    pair.wait_until(lambda: pair.status("backup")["state"] == "monitoring", 10, "the backup monitors again")
    assert pair.holds("master") and not pair.holds("backup")
    assert pair.stop("backup") == 0
    assert pair.stop("master") == 0


def test_a_backup_restarted_holding_the_vip_yields_to_a_holding_master_without_a_heartbeat(
    lab_factory, tmp_path: Path
) -> None:
    lab = lab_factory(seed=32)
    pair = FailoverPair(lab, tmp_path, interval=INTERVAL)
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds("master"), 10, "the master holds the VIP")
    pair.wait_until(lambda: pair.status("backup")["state"] == "monitoring", 10, "the backup monitors")
    assert pair.stop("backup") == 0
    # The backup comes back holding the VIP (as after a crash while it held it) and
    # cannot hear the master: only the wire can tell it the master holds it.
    lab.partition("priv", "master", "backup")
    lab.run("backup", ["ip", "addr", "add", f"{pair.vip}/24", "dev", "pub0"])
    with VipSampler(lab, pair.vip_triplet, limit=60) as sampler:
        started = time.time()
        pair.start_backup()
        pair.wait_until(lambda: not pair.holds("backup"), 10, "the backup let the adopted VIP go")
        pair.wait_until(lambda: pair.status("backup")["state"] == "contested", 10, "the backup is contested")
        time.sleep(1.0)
    released = sampler.first(lambda s: not s.backup, after=started)
    print(f"backup held the adopted VIP for {1000 * (released - sampler.samples[0].at):.0f} ms of sampling "
          f"(daemon start included)")
    assert sampler.first(lambda s: s.backup, after=released) is None, "the backup took the VIP again"
    assert sampler.first(lambda s: not s.master) is None, "the master lost the VIP"
    backup_log = pair.log_text("backup")
    assert "adopting them as held" in backup_log
    assert "state failed_over -> recovering (conflict)" in backup_log
    master_log = pair.log_text("master")
    assert "announcing ours again" in master_log
    lab.heal()
    assert pair.stop("backup") == 0
    assert pair.stop("master") == 0
