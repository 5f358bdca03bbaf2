"""End to end: a real web server in the master's namespace, checked by curl; killed, the address
moves to the backup while the master lives; restarted, it comes back without overlap.

Testing charter as tests/test_e2e_failover.py: its own lab, the installed programs, every wait
bounded; nothing asserts on speed. The backup's own failure timeout is made long (5 s) so that
the takeover can only have come from the master's ``leaving`` heartbeats: the assertion is that
the address moved before silence could have moved it, an order, with a hundredfold margin.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from failoverd.lab.pair import FailoverPair, VipSampler
from failoverd.lab.pytest_plugin import requires_netns

pytestmark = [pytest.mark.netns, pytest.mark.slow, requires_netns]

INTERVAL = 0.1  # heartbeats
CHECK_INTERVAL = 0.2
FALL = RISE = 2
BACKUP_FAIL_MISSES = 50  # 5 s of silence before the backup would take over on its own


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WebServer:
    """python -m http.server on the master's loopback (its namespace's own)."""

    def __init__(self, pair: FailoverPair, root: Path, port: int) -> None:
        self.pair, self.root, self.port = pair, root, port
        self.child: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(self.root),
                str(self.port)]
        self.child = self.pair.lab.popen("master", argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        self.pair.wait_until(self.answers, 10, "the web server answers")

    def answers(self) -> bool:
        done = self.pair.lab.run("master", ["curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{self.port}/"],
                                 check=False)
        return done.returncode == 0

    def kill(self) -> float:
        assert self.child is not None
        killed = time.time()
        self.child.kill()
        self.child.wait(5)
        return killed


def test_the_service_dies_the_address_moves_to_the_backup_and_comes_back_when_it_returns(
    lab_factory, tmp_path: Path
) -> None:
    if subprocess.run(["which", "curl"], capture_output=True).returncode != 0:
        pytest.skip("the worked example checks with curl")
    lab = lab_factory(seed=21)
    port = free_tcp_port()
    check = f"curl -fsS -o /dev/null http://127.0.0.1:{port}/"
    pair = FailoverPair(
        lab, tmp_path, interval=INTERVAL,
        master_args=["--check", check, "--check-interval", f"{CHECK_INTERVAL:g}", "--check-timeout", "2",
                     "--check-fall", str(FALL), "--check-rise", str(RISE),
                     "--backup-fail-misses", str(BACKUP_FAIL_MISSES)],
        backup_args=["--fail-misses", str(BACKUP_FAIL_MISSES)],
    )
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("ok\n")
    server = WebServer(pair, www, port)
    server.start()
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds("master"), 10, "the master holds the VIP")
    assert pair.status("backup")["state"] == "monitoring"

    with VipSampler(lab, pair.vip_triplet) as sampler:
        killed = server.kill()
        pair.wait_until(lambda: pair.holds("backup"), 15, "the backup holds the VIP")
        pair.wait_until(lambda: pair.status("backup")["state"] == "failed_over", 5, "the backup is failed_over")
    failed = pair.log_time("master", "fails: exited 7", after=killed)
    stood_down = pair.log_time("master", "releasing -> standing_down", after=killed)
    acquiring = pair.log_time("backup", "-> acquiring", after=killed)
    up = sampler.first(lambda s: s.backup, after=killed)
    budget = FALL * CHECK_INTERVAL + INTERVAL + 0.3  # fall x interval + one heartbeat + the ARP probe
    print(f"timeline: server killed 0 ms, check fails {((failed or killed) - killed) * 1000:.0f} ms, "
          f"master stood down {((stood_down or killed) - killed) * 1000:.0f} ms, backup acquiring "
          f"{((acquiring or killed) - killed) * 1000:.0f} ms, VIP up {((up or killed) - killed) * 1000:.0f} ms "
          f"(budget {budget * 1000:.0f} ms)")
    assert failed is not None and stood_down is not None and acquiring is not None and up is not None
    # The daemons' own order: the check fell, the master let go and said so, the backup took over,
    # long before its own failure timeout could have run out (the master never fell silent).
    assert killed - 0.001 <= failed <= stood_down <= acquiring  # log times are to the millisecond
    assert acquiring < stood_down + BACKUP_FAIL_MISSES * INTERVAL
    assert not sampler.both_ever(after=killed), "both hosts held the VIP during the step-down"
    assert pair.status("master")["state"] == "standing_down"
    assert pair.status("master")["held"] == []
    assert any(line.startswith(f"--peer {lab.address('master', 'priv')} down") for line in pair.notifications())

    # The service is back: after `rise` passes the master rejoins, the backup lets go, the master takes them.
    with VipSampler(lab, pair.vip_triplet) as sampler:
        restarted = time.time()
        server.start()
        pair.wait_until(lambda: pair.holds("master") and not pair.holds("backup"), 15,
                        "the master holds the VIP again and the backup released it")
        time.sleep(0.3)
    assert not sampler.both_ever(after=restarted), "both hosts held the VIP during the failback"
    assert pair.log_time("master", "passes again", after=restarted) is not None
    # The acquire reports once its gratuitous ARP burst is out.
    pair.wait_until(lambda: pair.status("master")["state"] == "holding", 5, "the master is holding")
    assert pair.status("backup")["state"] == "monitoring"
    assert pair.stop("backup") == 0
    assert pair.stop("master") == 0
