"""systemd's notify protocol, spoken to a real datagram socket as ``$NOTIFY_SOCKET``.

Testing charter: the daemons run in-process on loopback (the host's addresses
replaced by the in-memory system of test_runtime_daemons) or as real programs;
systemd's end is a real AF_UNIX datagram socket this test reads.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import trio
from test_runtime_daemons import LOOPBACK, backup_config, free_port

from failoverd.cli.config import MasterConfig
from failoverd.runtime import backup, master
from failoverd.runtime.memory import MemorySystem
from failoverd.system.sdnotify import ServiceManager


class FakeSystemd:
    """systemd's side of the protocol: a datagram socket, its messages parsed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines()))

    async def wait_for(self, key: str, value: str | None = None, after: int = 0) -> dict[str, str]:
        while True:
            for message in self.drain()[after:]:
                if key in message and (value is None or message[key] == value):
                    return message
            await trio.sleep(0.01)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    manager = FakeSystemd(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(manager.path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield manager
    manager.close()


@pytest.mark.trio
async def test_backup_is_ready_once_serving_reports_states_reloads_watchdog_and_stop(
    tmp_path: Path, systemd: FakeSystemd
) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"0123456789abcdef0123\n")
    os.chmod(key_file, 0o600)
    config = backup_config(tmp_path, free_port(), key_file=key_file)
    result: list[int] = []
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:

            async def run_backup(task_status=trio.TASK_STATUS_IGNORED) -> None:
                result.append(await backup.serve(config, system=MemorySystem(), task_status=task_status))

            await nursery.start(run_backup)
            ready = await systemd.wait_for("READY", "1")
            assert ready["STATUS"] == "monitoring: watching master 127.0.0.1; holding nothing"
            assert "NOTIFY_SOCKET" not in os.environ  # hooks and mail do not inherit it
            # No master: silence makes it suspect, then it takes over. Each change is a STATUS.
            taken = await systemd.wait_for("STATUS", "failed_over: watching master 127.0.0.1; holding lo:127.77.0.100/32")
            states = [m["STATUS"].split(":")[0] for m in systemd.messages if "STATUS" in m]
            assert states[:3] == ["monitoring", "suspect", "acquiring"] and taken
            # The watchdog is pinged at half its period (0.1 s) by the Trio loop.
            pings = sum(1 for m in systemd.drain() if m.get("WATCHDOG") == "1")
            await trio.sleep(0.35)
            assert sum(1 for m in systemd.drain() if m.get("WATCHDOG") == "1") >= pings + 2
            mark = len(systemd.messages)
            os.kill(os.getpid(), signal.SIGHUP)
            reloading = await systemd.wait_for("RELOADING", "1", after=mark)
            assert int(reloading["MONOTONIC_USEC"]) > 0
            again = await systemd.wait_for("READY", "1", after=mark)
            assert systemd.messages.index(again) > systemd.messages.index(reloading)
            os.kill(os.getpid(), signal.SIGTERM)
            stopping = await systemd.wait_for("STOPPING", "1")
    assert result == [0] and stopping["STATUS"] == "stopping"


@pytest.mark.trio
async def test_a_notify_socket_nobody_reads_never_blocks_the_daemon(tmp_path: Path, monkeypatch) -> None:
    """systemd stalled: the socket's queue fills; the master goes on and stops in time."""
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    stalled.bind(str(tmp_path / "stalled"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "stalled"))
    monkeypatch.setenv("WATCHDOG_USEC", "2000")  # a ping every millisecond, never read
    config = MasterConfig(
        targets=(IPv4Address(LOOPBACK),), port=free_port(), run_mode="debug", interval=0.05,
        pid_file=tmp_path / "m.pid", control_socket=tmp_path / "m.sock", state_dir=tmp_path / "state",
        hook_dir=tmp_path / "hooks", notify_command="/bin/true",
    )
    result: list[int] = []
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:

                async def run_master(task_status=trio.TASK_STATUS_IGNORED) -> None:
                    result.append(await master.serve(config, system=MemorySystem(), task_status=task_status))

                await nursery.start(run_master)
                await trio.sleep(0.3)
                os.kill(os.getpid(), signal.SIGTERM)
    finally:
        stalled.close()
    assert result == [0]


def test_without_notify_socket_nothing_is_sent_and_odd_values_are_refused(tmp_path: Path) -> None:
    assert not ServiceManager({}).enabled and not ServiceManager({}).notify(ready=1)
    assert ServiceManager({"NOTIFY_SOCKET": "relative/path"}).address is None
    assert ServiceManager({"NOTIFY_SOCKET": "@abstract"}).address == b"\0abstract"
    assert ServiceManager({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "soon"}).watchdog_interval is None
    assert ServiceManager({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "10", "WATCHDOG_PID": "1"}).watchdog_interval is None
    # A socket that does not exist: the message is dropped, nothing raised.
    missing = ServiceManager({"NOTIFY_SOCKET": str(tmp_path / "missing")})
    assert not missing.notify(ready=1)
    missing.close()


def test_the_real_heartbeatd_program_notifies_readiness_and_stopping(tmp_path: Path) -> None:
    manager = FakeSystemd(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(manager.path)}
    command = [sys.executable, "-m", "failoverd.programs.heartbeatd", "-d", "-p", str(free_port()),
               "--control-socket", str(tmp_path / "m.sock"), "--pid-file", str(tmp_path / "m.pid"),
               "--state-dir", str(tmp_path / "state"), LOOPBACK]
    with open(tmp_path / "stderr", "w") as log:
        process = subprocess.Popen(command, env=env, stderr=log)
    try:
        async def until_ready_then_stop() -> dict[str, str]:
            ready = await manager.wait_for("READY", "1")
            process.send_signal(signal.SIGTERM)
            await manager.wait_for("STOPPING", "1")
            return ready

        async def bounded() -> dict[str, str]:
            with trio.fail_after(20):
                return await until_ready_then_stop()

        ready = trio.run(bounded)
        assert process.wait(timeout=20) == 0, (tmp_path / "stderr").read_text()
        assert ready["STATUS"] == "holding: heartbeats to 127.0.0.1; holding nothing"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        manager.close()


def test_the_state_follower_exists_only_when_a_service_manager_listens(tmp_path: Path) -> None:
    from failoverd.core.actions import StateChanged
    from failoverd.runtime import lifecycle

    snapshots: list[str] = []

    def snapshot() -> dict[str, object]:
        snapshots.append("built")
        return {"role": "backup", "state": "monitoring", "master": "10.0.0.1", "held": []}

    # Without $NOTIFY_SOCKET no follower: nothing builds a snapshot at a state change.
    assert lifecycle.systemd_status(ServiceManager({}), snapshot) is None
    assert lifecycle.following(None, lifecycle.systemd_status(ServiceManager({}), snapshot)) is None

    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(10)
        service = ServiceManager({"NOTIFY_SOCKET": str(path)})
        try:
            follow = lifecycle.systemd_status(service, snapshot)
            assert follow is not None
            follow(0.0, StateChanged("recovering", "monitoring", "released"))
            assert listener.recv(4096) == b"STATUS=monitoring: watching master 10.0.0.1; holding nothing"
        finally:
            service.close()
    assert snapshots == ["built"]
