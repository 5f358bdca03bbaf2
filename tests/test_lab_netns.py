"""The lab on real namespaces: frames cross the emulated LANs, and every impairment really happens.

Testing charter: root only (skipped otherwise); traffic only inside the lab's own namespaces; each
test has a time limit (the lab fixture's) and every subprocess its own timeout; the lab is removed
whatever the test does. Timing is only ever asserted as a lower bound (a delay that must be there).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from failoverd.lab import netns
from failoverd.lab.lab import Lab
from failoverd.lab.pytest_plugin import requires_netns

pytestmark = [requires_netns, pytest.mark.netns]


def warm(lab: Lab, src: str, dst: str, lan: str = "pub") -> None:
    """Resolve ARP both ways before impairing, so the test measures echo traffic only."""
    result = lab.ping(src, lab.address(dst, lan), count=2, interval=0.05)
    assert result.received == 2, result.lines


def test_ping_crosses_each_lan(lab: Lab) -> None:
    for src, dst, lan in [("client", "master", "pub"), ("client", "backup", "pub"),
                          ("master", "backup", "pub"), ("master", "backup", "priv"),
                          ("backup", "master", "priv")]:
        result = lab.ping(src, lab.address(dst, lan), count=3, interval=0.05)
        assert result.received == 3, (src, dst, lan, result.lines)


def test_lans_are_separate_and_the_vip_is_not_configured(lab: Lab) -> None:
    # The client has no private address and no route there; nobody answers for the VIP yet.
    assert lab.ping("client", lab.address("master", "priv"), count=1, wait=0.3).received == 0
    assert lab.ping("client", lab.vip, count=1, wait=0.5).received == 0


def test_udp_datagrams_arrive_with_valid_checksums(lab: Lab) -> None:
    # Heartbeats are UDP: a checksum left to an offload would make the receiver drop them.
    receiver = lab.popen("backup", [sys.executable, "-c", (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "s.bind(('0.0.0.0', 7000)); s.settimeout(10); print(s.recvfrom(2048)[0].decode(), flush=True)")],
        stdout=subprocess.PIPE, text=True)
    sender = (f"import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              f"for _ in range(20):\n s.sendto(b'x' * 1400, ('{lab.address('backup', 'priv')}', 7000)); "
              f"time.sleep(0.1)")
    lab.popen("master", [sys.executable, "-c", sender])
    out, _ = receiver.communicate(timeout=15)
    assert out.strip() == "x" * 1400


def test_partition_blocks_and_heal_restores(lab: Lab) -> None:
    master = lab.address("master")
    warm(lab, "client", "master")
    assert sorted(lab.partition("pub", "client", "master")) == ["pub:client>master", "pub:master>client"]
    assert lab.ping("client", master, count=3, interval=0.05, wait=0.5).received == 0
    assert lab.ping("client", lab.address("backup"), count=2, interval=0.05).received == 2
    lab.heal()
    assert lab.ping("client", master, count=3, interval=0.05).received == 3
    assert lab.link_stats("pub", "client", "master")["blocked"] >= 3


def test_total_loss_drops_everything_in_that_direction_only(lab: Lab) -> None:
    warm(lab, "client", "master")
    lab.impair("pub", "client", "master", loss=1.0)
    assert lab.ping("client", lab.address("master"), count=5, interval=0.02, wait=0.5).received == 0
    stats = lab.link_stats("pub", "client", "master")
    assert stats["lost"] >= 5 and stats["lost"] == stats["offered"] - stats["delivered"]
    # Master → client still works: the master's own pings reach the client (the replies do not come back).
    before = lab.link_stats("pub", "master", "client")["delivered"]
    lab.ping("master", lab.address("client"), count=3, interval=0.02, wait=0.3)
    assert lab.link_stats("pub", "master", "client")["delivered"] >= before + 3
    lab.impair("pub", "client", "master")  # cleared
    assert lab.ping("client", lab.address("master"), count=2, interval=0.05).received == 2


def test_seeded_loss_drops_about_its_share(lab: Lab) -> None:
    warm(lab, "client", "master")
    lab.impair("pub", "client", "master", loss=0.3)
    result = lab.ping("client", lab.address("master"), count=200, interval=0.005, wait=1.0)
    stats = lab.link_stats("pub", "client", "master")
    share = stats["lost"] / stats["offered"]
    # n ≈ 200: the binomial standard deviation is 0.032, so ±0.12 is almost four of them.
    assert 0.18 < share < 0.42, stats
    assert 0.18 < result.loss < 0.42, result.summary()


def test_delay_shows_in_the_round_trip(lab: Lab) -> None:
    warm(lab, "client", "master")
    lab.impair("pub", "client", "master", delay=0.2)
    result = lab.ping("client", lab.address("master"), count=3, interval=0.05, wait=1.5)
    assert result.received == 3
    assert min(result.rtts) >= 0.2


def test_jitter_without_reorder_keeps_order(lab: Lab) -> None:
    warm(lab, "client", "master")
    lab.impair("pub", "master", "client", delay=0.05, jitter=0.04)
    result = lab.ping("client", lab.address("master"), count=30, interval=0.005, wait=1.0)
    assert result.received == 30 and result.out_of_order == 0
    assert min(result.rtts) >= 0.01


def test_duplicate_shows_dup_in_ping(lab: Lab) -> None:
    warm(lab, "client", "master")
    lab.impair("pub", "client", "master", duplicate=1.0)
    done = lab.run("client", [sys.executable, "-m", "failoverd.lab.ping", "-c", "3", "-i", "0.05",
                              "-W", "0.5", "--linger", lab.address("master")], timeout=30)
    assert done.stdout.count("(DUP!)") == 3, done.stdout
    assert "+3 duplicates" in done.stdout


def test_reorder_delivers_out_of_order(lab: Lab) -> None:
    warm(lab, "client", "master")
    lab.impair("pub", "client", "master", reorder=0.5, reorder_gap=0.05)
    result = lab.ping("client", lab.address("master"), count=40, interval=0.005, wait=1.0)
    assert result.received == 40
    assert result.out_of_order > 0
    assert lab.link_stats("pub", "client", "master")["reordered"] > 0


def test_kill_host_kills_its_processes_and_downs_its_links_only(lab: Lab) -> None:
    sleeper = lab.popen("master", ["sleep", "300"])
    bystander = lab.popen("backup", ["sleep", "300"])
    # `ip netns exec` enters the namespace a moment after it starts: wait (bounded) until it has.
    deadline = time.monotonic() + 5
    while sleeper.pid not in lab.pids("master") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sleeper.pid in lab.pids("master")
    killed = lab.kill_host("master")
    assert sleeper.pid in killed
    assert sleeper.wait(timeout=5) == -9
    assert lab.pids("master") == []
    assert lab.link_state("master", "pub") == {"up": False, "carrier": False}
    assert lab.link_state("master", "priv") == {"up": False, "carrier": False}
    # The others keep carrier (their veth peers live in the wire namespace) and their processes.
    assert lab.link_state("backup", "pub") == {"up": True, "carrier": True}
    assert lab.link_state("backup", "priv") == {"up": True, "carrier": True}
    assert lab.link_state("client", "pub") == {"up": True, "carrier": True}
    assert bystander.poll() is None
    assert lab.ping("client", lab.address("backup"), count=2, interval=0.05).received == 2
    assert lab.ping("client", lab.address("master"), count=2, interval=0.05, wait=0.3).received == 0
    lab.revive_host("master")
    assert lab.link_state("master", "pub")["up"]
    assert lab.ping("client", lab.address("master"), count=3, interval=0.1, wait=2.0).received >= 1


def test_frame_log_records_each_frames_fate(lab: Lab) -> None:
    path = lab.directory / "frames.jsonl"
    lab.frame_log(str(path))
    lab.impair("pub", "client", "master", loss=1.0)
    lab.ping("client", lab.address("master"), count=2, interval=0.05, wait=0.2)
    lab.frame_log(None)
    text = path.read_text()
    assert '"outcome":"lost"' in text
    assert "ICMP echo request" in text or "ARP who-has" in text


def test_bad_impairment_is_refused_before_it_is_sent(lab: Lab) -> None:
    from failoverd.lab import ImpairmentError, TopologyError
    from failoverd.lab.control import ControlError

    with pytest.raises(ImpairmentError, match="loss must be between 0 and 1"):
        lab.impair("pub", "client", "master", loss=3)
    with pytest.raises(ControlError, match="not on the priv LAN"):
        lab.impair("priv", "client", "master", loss=0.1)
    with pytest.raises(TopologyError, match="unknown host 'router'"):
        lab.ns("router")


def test_clean_up_leaves_nothing_even_when_the_body_raises() -> None:
    names: list[str] = []
    with pytest.raises(RuntimeError, match="boom"):
        with Lab(seed=3) as lab:
            names = list(lab.describe()["namespaces"].values())
            directory = lab.directory
            emulator = lab.emulator
            lab.popen("client", ["sleep", "300"])
            raise RuntimeError("boom")
    assert len(names) == 4
    assert not set(names) & set(netns.list_namespaces())
    assert not directory.exists()
    assert emulator is not None and not emulator.alive()


def test_two_labs_at_once_do_not_clash(lab_factory) -> None:  # noqa: F811
    one, two = lab_factory(), lab_factory()
    assert one.lab_id != two.lab_id
    assert one.address("master") != two.address("master")
    assert one.ping("client", one.address("master"), count=1).received == 1
    assert two.ping("client", two.address("master"), count=1).received == 1
