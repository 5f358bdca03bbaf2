"""ProcessFailover as an administrator runs it: the real program in a real namespace.

Charter: the program runs as a child process inside a fresh namespace
(``ip netns exec``; unique names, deleted in a ``finally``) joined by the veth
pair va/vb to a second one; 10.x addresses only; every run has a timeout.
The non-root test runs as ``nobody`` and names an interface that exists
nowhere, so even a broken root check could change nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from failoverd.programs.processfailover import main
from failoverd.system.arp import ArpSocket

PROGRAM = [sys.executable, "-m", "failoverd.programs.processfailover"]


from _netns import Pair, addresses_on, ip


def run_in(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *PROGRAM, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def hook_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "hooks"
    directory.mkdir()
    directory.chmod(0o755)
    return directory


def write_hook(hook_dir: Path, address: str, name: str, body: str) -> None:
    directory = hook_dir / address
    directory.mkdir(exist_ok=True)
    directory.chmod(0o755)
    (directory / name).write_text("#!/bin/sh\n" + body + "\n")
    (directory / name).chmod(0o755)


@pytest.mark.netns
@pytest.mark.trio
async def test_acquire_then_release_with_hooks_and_announcements(pair: Pair, hook_dir: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    for phase in ("PreAcq", "PostAcq", "PreRel", "PostRel"):
        write_hook(hook_dir, "10.65.0.1", phase, f'echo "$FAILOVER_PHASE $1 $2" >> {journal}')
    seen: list[str] = []
    command = ["ip", "netns", "exec", pair.a, *PROGRAM, "--hook-dir", str(hook_dir),
               "--garp-count", "2", "--garp-spacing", "0.05"]
    with trio.fail_after(60):
        async with await ArpSocket.open("vb", netns=pair.b) as capture:
            async with trio.open_nursery() as nursery:
                async def collect() -> None:
                    while True:
                        packet = await capture.receive()
                        if packet is not None and packet.sender_ip == packet.target_ip:
                            seen.append(str(packet.sender_ip))

                nursery.start_soon(collect)
                acquired = await trio.run_process([*command, "acquire", "va:10.65.0.1/24", "va:10.65.0.2"],
                                                  capture_stderr=True, check=False)
                await trio.sleep(0.1)
                nursery.cancel_scope.cancel()
    assert acquired.returncode == 0, acquired.stderr
    assert addresses_on(pair.a, "va") == {"10.65.0.1/24", "10.65.0.2/32"}
    assert sorted(seen) == ["10.65.0.1", "10.65.0.1", "10.65.0.2", "10.65.0.2"]
    assert b"acquire finished: acquired va:10.65.0.1/24, va:10.65.0.2; failed none" in acquired.stderr

    released = run_in(pair.a, "--hook-dir", str(hook_dir), "release", "va:10.65.0.1/24", "va:10.65.0.2")
    assert released.returncode == 0, released.stderr
    assert addresses_on(pair.a, "va") == set()
    assert journal.read_text().splitlines() == [
        "PreAcq acquire va:10.65.0.1/24", "PostAcq acquire va:10.65.0.1/24",
        "PreRel release va:10.65.0.1/24", "PostRel release va:10.65.0.1/24",
    ]


@pytest.mark.netns
def test_down_and_up_are_acquire_and_release(pair: Pair, hook_dir: Path) -> None:
    assert run_in(pair.a, "--hook-dir", str(hook_dir), "--garp-count", "0", "down", "va:10.65.1.1").returncode == 0
    assert addresses_on(pair.a, "va") == {"10.65.1.1/32"}
    assert run_in(pair.a, "--hook-dir", str(hook_dir), "up", "va:10.65.1.1").returncode == 0
    assert addresses_on(pair.a, "va") == set()


@pytest.mark.netns
def test_an_ipv6_address_with_its_hooks_acquired_and_released(pair: Pair, hook_dir: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    write_hook(hook_dir, "2001:db8:65::1", "PostAcq", f'echo "$FAILOVER_PHASE $1 $2" >> {journal}')
    acquired = run_in(pair.a, "--hook-dir", str(hook_dir), "--garp-count", "1", "acquire",
                      "va:2001:DB8:65::1/64", "va:10.65.3.1")
    assert acquired.returncode == 0, acquired.stderr
    assert "acquired va:10.65.3.1, va:2001:db8:65::1/64; failed none" in acquired.stderr
    six = ip("-n", pair.a, "-6", "-o", "addr", "show", "dev", "va", "scope", "global")
    assert " 2001:db8:65::1/64 " in six and "tentative" not in six
    assert journal.read_text().splitlines() == ["PostAcq acquire va:2001:db8:65::1/64"]
    released = run_in(pair.a, "--hook-dir", str(hook_dir), "release", "va:2001:db8:65::1/64", "va:10.65.3.1")
    assert released.returncode == 0, released.stderr
    assert "2001:db8:65::1" not in ip("-n", pair.a, "-6", "-o", "addr", "show", "dev", "va")
    assert addresses_on(pair.a, "va") == set()


@pytest.mark.netns
def test_a_failed_address_change_exits_1_and_the_rest_still_happen(pair: Pair, hook_dir: Path) -> None:
    ip("-n", pair.a, "link", "add", "vc", "type", "veth", "peer", "name", "vd")  # vc stays down
    result = run_in(pair.a, "--hook-dir", str(hook_dir), "--garp-count", "0", "acquire", "vc:10.65.2.1", "va:10.65.2.2")
    assert result.returncode == 1
    assert "vc:10.65.2.1 not acquired: interface 'vc' is down" in result.stderr
    assert addresses_on(pair.a, "va") == {"10.65.2.2/32"}


@pytest.mark.netns
def test_a_test_hook_that_says_no_means_notification_only(pair: Pair, hook_dir: Path) -> None:
    write_hook(hook_dir, "10.65.3.1", "Test", "exit 1")
    result = run_in(pair.a, "--hook-dir", str(hook_dir), "acquire", "va:10.65.3.1/24")
    assert result.returncode == 0, result.stderr
    assert "Test hook exited 1; notification only, 10.65.3.1 not changed" in result.stderr
    assert addresses_on(pair.a, "va") == set()


@pytest.mark.netns
def test_a_missing_interface_is_a_configuration_error_and_changes_nothing(pair: Pair, hook_dir: Path) -> None:
    result = run_in(pair.a, "--hook-dir", str(hook_dir), "acquire", "va:10.65.4.1", "eth9:10.65.4.2")
    assert result.returncode == 78
    assert result.stderr == (
        "ProcessFailover: CNode: invalid interface name: pub_addr 'eth9:10.65.4.2' "
        "(no interface 'eth9' on this host)\n"
    )
    assert addresses_on(pair.a, "va") == set()


@pytest.mark.netns
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["acquire", "va-10.65.5.1"], "Invalid interface / IP address pair: pub_addr 'va-10.65.5.1'"),
        (["acquire", "va:10.65.5.256"], "CNode: invalid IP address: pub_addr 'va:10.65.5.256'"),
        (["acquire", "va:10.65.5.1/33"], "Invalid interface / IP address pair: pub_addr 'va:10.65.5.1/33'"),
        (["acquire", "va:10.65.5.1", "va:10.65.5.1/24"], "pub_addr 10.65.5.1 given twice"),
        (["grab", "va:10.65.5.1"], "unknown command 'grab'"),
        (["release"], "no interface:ip_address[/mask] given"),
        (["--hook-timeout", "0", "acquire", "va:10.65.5.1"], "argument --hook-timeout: invalid value '0'"),
    ],
)
def test_usage_errors_exit_64_with_the_daemons_diagnostics(pair: Pair, args: list[str], message: str) -> None:
    result = run_in(pair.a, *args)
    assert result.returncode == 64
    assert result.stderr.startswith("usage: ProcessFailover [options] {acquire|down|release|up}")
    assert f"ProcessFailover: {message}" in result.stderr
    assert addresses_on(pair.a, "va") == set()


def test_refuses_to_run_without_root(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["acquire", "fonowhere0:10.65.6.1"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv(1) to drop root")
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *PROGRAM, *arguments],
            capture_output=True, text=True, timeout=60,
        )
        status, stderr = result.returncode, result.stderr
    else:  # already unprivileged: run it right here
        status, stderr = main(arguments), capsys.readouterr().err
    assert status == 77
    assert stderr.startswith("ProcessFailover: must be run as root")
    assert f"running as uid {65534 if os.geteuid() == 0 else os.geteuid()}" in stderr
