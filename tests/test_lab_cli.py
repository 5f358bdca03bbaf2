"""The lab from the command line and from dying processes: up/list/down, SIGTERM, ^C, SIGKILL + sweep.

Testing charter: root only (skipped otherwise); every subprocess has a timeout; every lab a test
starts is removed in a ``finally`` even when an assertion fails first.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from failoverd.lab import netns, registry
from failoverd.lab.pytest_plugin import lab, lab_factory, requires_netns  # noqa: F401  (fixtures)
from failoverd.lab.registry import ProcessId
from failoverd.lab.topology import new_lab_id

pytestmark = [requires_netns, pytest.mark.netns]

CLI = [sys.executable, "-m", "failoverd.lab.cli"]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def lab_namespaces(lab_id: str) -> list[str]:
    return [ns for ns in netns.list_namespaces() if ns.startswith(lab_id + "-")]


def remove_quietly(lab_id: str) -> None:
    if lab_namespaces(lab_id) or registry.read_record(lab_id):
        cli("down", lab_id)


def test_up_list_down() -> None:
    up = cli("up", "--seed", "9", "--format", "json")
    assert up.returncode == 0, up.stderr
    description = json.loads(up.stdout)
    lab_id = description["id"]
    try:
        assert sorted(description["namespaces"]) == ["backup", "client", "master", "wire"]
        assert sorted(lab_namespaces(lab_id)) == sorted(description["namespaces"].values())
        assert description["vip"].endswith(".2.100/24")
        listed = json.loads(cli("list", "--format", "json").stdout)
        entry = next(e for e in listed if e["id"] == lab_id)
        assert entry["state"] == "running" and not entry["leftover"]
        # It keeps running after the CLI exited: the client reaches the master through the wire.
        master = description["lans"]["pub"]["hosts"]["master"]["address"]
        ping = subprocess.run(["ip", "netns", "exec", description["namespaces"]["client"], sys.executable,
                               "-m", "failoverd.lab.ping", "-c", "2", "-i", "0.05", master],
                              capture_output=True, text=True, timeout=30)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        emulator = ProcessId.from_dict(registry.read_record(lab_id)["emulator"])
        assert emulator is not None and emulator.alive()
        down = cli("down", description["namespaces"]["backup"])  # any namespace name works
        assert down.returncode == 0, down.stderr
        assert lab_namespaces(lab_id) == []
        assert registry.read_record(lab_id) is None
        assert not emulator.alive()
    finally:
        remove_quietly(lab_id)


def test_up_plain_output_names_namespaces_and_addresses() -> None:
    up = cli("up")
    assert up.returncode == 0, up.stderr
    lab_id = up.stdout.split()[1]
    try:
        assert f"{lab_id}-master" in up.stdout and "vip" in up.stdout and ".2.10" in up.stdout
    finally:
        remove_quietly(lab_id)
    assert lab_namespaces(lab_id) == []


def test_bad_names_are_refused_clearly() -> None:
    done = cli("down", "eth0")
    assert done.returncode == 1
    assert "neither a lab id nor a lab namespace name" in done.stderr
    done = cli("down", new_lab_id())
    assert done.returncode == 1 and "no lab" in done.stderr


HOLDER = """
import json, sys, time
from failoverd.lab.lab import Lab
if sys.argv[1] == "with":
    with Lab(seed=1) as lab:
        print(json.dumps(lab.describe()), flush=True)
        time.sleep(60)
else:
    lab = Lab(seed=1).create()
    print(json.dumps(lab.describe()), flush=True)
    time.sleep(60)
"""


def start_holder(style: str) -> tuple[subprocess.Popen, dict]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, style], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    line = holder.stdout.readline()
    if not line:
        holder.kill()
        _, err = holder.communicate(timeout=10)
        pytest.fail(f"the lab holder died: {err}")
    return holder, json.loads(line)


@pytest.mark.parametrize("signum, style", [(signal.SIGTERM, "with"), (signal.SIGINT, "plain"),
                                           (signal.SIGTERM, "plain")])
def test_a_signalled_owner_removes_its_lab(signum: int, style: str) -> None:
    holder, description = start_holder(style)
    try:
        assert len(lab_namespaces(description["id"])) == 4
        holder.send_signal(signum)
        holder.communicate(timeout=30)
        assert lab_namespaces(description["id"]) == []
        assert registry.read_record(description["id"]) is None
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate(timeout=10)
        remove_quietly(description["id"])


def test_sweep_removes_what_a_killed_owner_left_and_nothing_else(lab) -> None:  # noqa: F811
    holder, description = start_holder("with")
    leftover = description["id"]
    foreign = f"{new_lab_id()}-other"  # our prefix, but not one of our roles: never ours to remove
    subprocess.run(["ip", "netns", "add", foreign], check=True, timeout=10)
    try:
        holder.kill()
        holder.communicate(timeout=10)
        assert len(lab_namespaces(leftover)) == 4
        # The wire notices its owner is gone and stops by itself.
        emulator = ProcessId.from_dict(registry.read_record(leftover)["emulator"])
        assert emulator is not None
        deadline = time.monotonic() + 10
        while emulator.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not emulator.alive()
        listed = {e["id"]: e for e in json.loads(cli("list", "--format", "json").stdout)}
        assert listed[leftover]["leftover"] and not listed[lab.lab_id]["leftover"]
        sweep = cli("sweep")
        assert sweep.returncode == 0, sweep.stderr
        assert f"removed lab {leftover}" in sweep.stdout
        assert lab_namespaces(leftover) == []
        assert foreign in netns.list_namespaces()
        # The live lab of this test process was left alone and still works.
        assert len(lab_namespaces(lab.lab_id)) == 4
        assert lab.ping("client", lab.address("master"), count=1).received == 1
    finally:
        subprocess.run(["ip", "netns", "delete", foreign], timeout=10)
        if holder.poll() is None:
            holder.kill()
            holder.communicate(timeout=10)
        remove_quietly(leftover)
