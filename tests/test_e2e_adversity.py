"""End to end, when things go wrong around the pair: a bad network, a cut private link, an attacker,
bad hooks and a dead mail relay.

Same charter as test_e2e_failover.py: own lab per test, installed programs, every wait bounded,
no assertion on speed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from failoverd.core import wire
from failoverd.lab.pair import FailoverPair, VipSampler
from failoverd.lab.pytest_plugin import requires_netns

pytestmark = [pytest.mark.netns, pytest.mark.slow, requires_netns]

# Run inside the backup's namespace: print, in hex, the UDP payloads to port 1694 seen on priv0.
_CAPTURE = r"""
import socket, struct, sys, time
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
sock.bind(("priv0", 0))
sock.settimeout(0.5)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        frame = sock.recv(2048)
    except socket.timeout:
        continue
    ihl = (frame[14] & 0x0F) * 4
    if frame[23] != 17:
        continue
    udp = 14 + ihl
    if struct.unpack("!H", frame[udp + 2:udp + 4])[0] == 1694:
        print(frame[udp + 8:].hex(), flush=True)
"""

# Run inside the client's namespace: send each hex payload of argv[2:] to argv[1]:1694, repeatedly.
_INJECT = r"""
import socket, sys, time
target = sys.argv[1]
payloads = [bytes.fromhex(h) for h in sys.argv[3:]]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    for payload in payloads:
        sock.sendto(payload, (target, 1694))
    time.sleep(0.02)
"""


def never_held_by_backup(pair: FailoverPair, sampler: VipSampler) -> bool:
    return sampler.first(lambda s: s.backup) is None and not pair.holds("backup")


def test_jitter_below_timeout_and_30_percent_loss_cause_no_takeover(lab_factory, tmp_path: Path) -> None:
    lab = lab_factory(seed=21)
    # As in the original's setup the master sends on both networks; each path loses 30 %.
    targets = [lab.address("backup", "priv"), lab.address("backup", "pub")]
    pair = FailoverPair(lab, tmp_path, interval=0.1, master_targets=targets, backup_args=["--fail-misses", "5"],
                        master_args=["--backup-fail-misses", "5"])
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds("master"), 10, "the master holds the VIP")
    for lan in ("priv", "pub"):
        lab.impair(lan, "master", "backup", loss=0.3, delay=0.03, jitter=0.03)
    with VipSampler(lab, pair.vip_triplet, limit=30) as sampler:
        time.sleep(12)
    status = pair.status("backup")
    stats = lab.link_stats("priv", "master", "backup")
    print(f"backup counters {status['counters']}; priv link {stats}")
    assert status["counters"]["failovers"] == 0
    assert "-> acquiring" not in pair.log_text("backup")
    assert never_held_by_backup(pair, sampler)
    assert status["counters"]["accepted"] > 100
    assert {p["name"] for p in status["paths"]} == {"priv0", "pub0"}
    assert pair.stop("backup") == 0


def test_private_link_cut_while_public_joins_them_no_takeover_and_alarm(lab_factory, tmp_path: Path) -> None:
    lab = lab_factory(seed=22)
    pair = FailoverPair(lab, tmp_path, interval=0.1)
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds("master"), 10, "the master holds the VIP")
    with VipSampler(lab, pair.vip_triplet, limit=30) as sampler:
        lab.partition("priv", "master", "backup")
        pair.wait_until(lambda: pair.status("backup")["state"] == "contested", 10, "the backup is contested")
        time.sleep(2)  # ~20 heartbeat intervals: it keeps probing and keeps not taking over
        assert pair.status("backup")["state"] == "contested"
    assert never_held_by_backup(pair, sampler)
    log = pair.log_text("backup")
    assert "CRITICAL" in log and "still answer(s) on the wire: not taking over" in log
    assert any(line.startswith("--alarm") and "not taking over" in line for line in pair.notifications())
    assert pair.holds("master")

    lab.heal()
    pair.wait_until(lambda: pair.status("backup")["state"] == "monitoring", 10, "the backup monitors again")
    assert pair.status("backup")["counters"]["failovers"] == 0
    assert pair.stop("backup") == 0


def test_forged_and_replayed_heartbeats_are_ignored_and_the_master_death_still_detected(
    lab_factory, tmp_path: Path
) -> None:
    lab = lab_factory(seed=23)
    pair = FailoverPair(lab, tmp_path, interval=0.1)
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds("master"), 10, "the master holds the VIP")
    captured = lab.run("backup", [sys.executable, "-c", _CAPTURE, "1.0"], timeout=20).stdout.split()
    real = [bytes.fromhex(h) for h in captured if len(h) == 2 * wire.DATAGRAM_LENGTH]
    masters = [h for h in real if wire.decode(h, pair.key_file.read_bytes().strip()).role == wire.ROLE_MASTER]
    assert len(masters) >= 5, f"captured only {len(masters)} heartbeats"
    forged_mac = bytearray(masters[-1])
    forged_mac[-1] ^= 0xFF
    wrong_key = wire.encode(wire.decode(masters[-1], pair.key_file.read_bytes().strip()), os.urandom(32))
    payloads = [m.hex() for m in masters[-5:]] + [bytes(forged_mac).hex(), wrong_key.hex(), b"heartbeat".hex()]

    # The attacker, on the client's network, sends replays and forgeries to the backup's public address
    # from before the master dies until well after.
    attacker = lab.popen("client", [sys.executable, "-c", _INJECT, lab.address("backup", "pub"), "8", *payloads])
    try:
        time.sleep(1.0)
        before = pair.status("backup")
        assert before["state"] == "monitoring"
        assert sum(before["counters"]["rejected"].values()) > 20
        killed = time.time()
        lab.kill_host("master")
        pair.wait_until(lambda: pair.holds("backup"), 15, "the backup holds the VIP despite the replays")
    finally:
        attacker.kill()
        attacker.wait(5)
    rejected = pair.status("backup")["counters"]["rejected"]
    print(f"rejected: {rejected}")
    assert pair.log_time("backup", "-> acquiring", after=killed) is not None
    # Every kind of bad datagram was seen and counted, none accepted.
    assert len(rejected) >= 2
    assert pair.status("backup")["paths"][0]["name"] == "priv0"
    assert {p["name"] for p in pair.status("backup")["paths"]} == {"priv0"}, "a forged datagram was accepted on pub0"
    assert pair.stop("backup") == 0


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _hook(directory: Path, name: str, body: str, mode: int = 0o755) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    os.chmod(path, mode)
    return path


def test_hanging_hook_insecure_hook_and_dead_mail_relay_do_not_stop_the_takeover(
    lab_factory, tmp_path: Path
) -> None:
    lab = lab_factory(seed=24)
    # The real NotifyFailover, pointed at a relay nobody listens on.
    pair = FailoverPair(lab, tmp_path, interval=0.1, real_notify=True,
                        env={"FAILOVER_SMTP_HOST": "127.0.0.1", "FAILOVER_SMTP_PORT": "2526"})
    hooks = pair.hook_dir / pair.vip
    marker = tmp_path / "postacq-ran"
    _hook(hooks, "PreAcq-hang", "exec sleep 600")
    _hook(hooks, "PostAcq-insecure", f"touch {marker}", mode=0o777)
    _hook(hooks, "PostAcq-record", f"echo \"$@\" > {tmp_path / 'postacq-args'}")
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds("master"), 10, "the master holds the VIP")

    lab.kill_host("master")
    # The PreAcq hook hangs until the hook timeout (2 s) kills it; then the address is added.
    pair.wait_until(lambda: pair.holds("backup"), 20, "the backup holds the VIP despite the hanging hook")
    pair.wait_until(lambda: pair.status("backup")["state"] == "failed_over", 10, "the acquire completed")
    log = pair.log_text("backup")
    assert "PreAcq-hang" in log and "timed out" in log
    assert "PostAcq-insecure" in log and not marker.exists(), "an insecure hook ran"
    assert (tmp_path / "postacq-args").exists(), "the secure PostAcq hook did not run"
    pair.wait_until(lambda: "notification failed" in pair.log_text("backup"), 30, "the failed mail is logged")
    assert not any(b"sleep" in _cmdline(pid) for pid in lab.pids("backup")), "the hanging hook was left behind"
    assert pair.stop("backup") == 0
