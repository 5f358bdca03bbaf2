"""End to end: the bench's scenario 2, a master cut off by its own links while its processes live.

Testing charter: as tests/test_e2e_failover.py (its own lab, the installed
programs, every wait bounded, nothing asserted on speed). The master's public
and private links are set down (``ip link set down``: carrier lost, as
bench/peers.py's link-cut cycle does), the backup takes over, the links come
back; both namespaces are sampled through netlink throughout. The kernel keeps
an IPv4 address on a down link, so a master that does not watch its links
still has the VIP when they return and both answer for it until the backup
hears a heartbeat (docs/benchmarks.md, "Link cut").
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from failoverd.lab.lab import Lab
from failoverd.lab.pair import FailoverPair, VipSampler
from failoverd.lab.pytest_plugin import requires_netns

pytestmark = [pytest.mark.netns, pytest.mark.slow, requires_netns]


def set_master_links(lab: Lab, state: str) -> None:
    lab.run("master", ["ip", "-batch", "-"], input=f"link set priv0 {state}\nlink set pub0 {state}\n")


def test_a_master_cut_off_by_its_links_never_answers_beside_the_backup_when_they_return(
    lab_factory, tmp_path: Path
) -> None:
    lab = lab_factory(seed=21)
    pair = FailoverPair(lab, tmp_path, interval=0.1)
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds("master") and pair.status("backup")["state"] == "monitoring", 10,
                    "the master holds the VIP and the backup monitors it")

    with VipSampler(lab, pair.vip_triplet) as sampler:
        cut = time.time()
        set_master_links(lab, "down")
        pair.wait_until(lambda: pair.holds("backup"), 15, "the backup holds the VIP (the master's links cut)")
        pair.wait_until(lambda: pair.status("backup")["state"] == "failed_over", 5, "the backup is failed_over")
        # Cut off, the master lets go of the VIP (an address on a down link answers nobody,
        # and would answer beside the backup's the moment the link returns).
        pair.wait_until(lambda: not pair.holds("master"), 10, "the cut-off master released the VIP")
        assert pair.status("master")["state"] == "standing_down"
        restored = time.time()
        set_master_links(lab, "up")
        pair.wait_until(lambda: pair.holds("master") and not pair.holds("backup"), 15,
                        "the master holds the VIP alone again (links back)")
        time.sleep(0.3)
    assert sampler.count > 50, "the sampler hardly ran"
    # From the instant the links return: never both.
    assert not sampler.both_ever(after=restored), (
        f"both hosts held the VIP for {sampler.overlap(after=restored) * 1000:.0f} ms after the links returned"
    )
    assert sampler.first(lambda s: s.backup, after=cut) is not None
    last = sampler.samples[-1]
    assert last.master and not last.backup
    # The acquire reports once its gratuitous ARP burst is out.
    pair.wait_until(lambda: pair.status("master")["state"] == "holding", 5, "the master is holding")
    assert pair.status("backup")["state"] == "monitoring" and pair.holds("master") and not pair.holds("backup")
    assert "link pub0 down: stepping down" in pair.all_logs("master")
    assert pair.stop("backup") == 0
    assert pair.stop("master") == 0
