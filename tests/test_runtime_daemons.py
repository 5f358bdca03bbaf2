"""The Trio runtime in-process: real UDP sockets on loopback, a real control socket, real signals;
the host's addresses replaced by an in-memory system (the one port a test may not touch for real).

Testing charter: loopback only, a random high port per test, the real clock with a hard
``fail_after`` on every test; the address changes are recorded, never made.
"""

from __future__ import annotations

import os
import random
import signal
import socket
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import trio

from failoverd.cli.config import BackupConfig, MasterConfig
from failoverd.core.actions import (
    Acquire,
    Alarm,
    Notify,
    Release,
    ReleaseDone,
    Transmit,
)
from failoverd.core.addresses import parse_triplet
from failoverd.core.detector import Detector
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing
from failoverd.runtime import backup, control, master
from failoverd.runtime.executor import Executor
from failoverd.runtime.memory import MemoryNotifications, MemorySystem, MemoryTransport
from failoverd.runtime.shell import CoreShell
from failoverd.runtime.udp import HeartbeatSocket

VIP = parse_triplet("lo:127.77.0.100/32")
LOOPBACK = "127.0.0.1"


class SlowNotifier(MemoryNotifications):
    """A notifier whose mail never finishes on its own (a relay that hangs)."""

    def start_soon(self, nursery: trio.Nursery, action: Notify | Alarm) -> None:
        super().start_soon(nursery, action)
        nursery.start_soon(trio.sleep_forever)


def free_port() -> int:
    for _ in range(50):
        port = random.randint(20000, 60000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port on loopback")


# --- the heartbeat socket --------------------------------------------------------------------------


@pytest.mark.trio
async def test_heartbeat_socket_reports_sender_and_arrival_interface() -> None:
    with trio.fail_after(5), HeartbeatSocket.bind(0, LOOPBACK) as receiver, HeartbeatSocket.bind(0, LOOPBACK) as sender:
        sender.port = receiver.port  # send to the receiver's port
        sender.send_nowait(b"heartbeat", (LOOPBACK,))
        datagram = await receiver.receive()
    assert datagram.data == b"heartbeat"
    assert datagram.source == LOOPBACK
    assert datagram.path == "lo"
    assert sender.sent == 1 and sender.dropped == 0


# --- the executor ------------------------------------------------------------------------------------


@pytest.mark.trio
async def test_transmit_and_mail_go_out_while_an_acquire_is_stuck_and_changes_never_overlap() -> None:
    system, transport, notifier = MemorySystem(), MemoryTransport(), SlowNotifier()
    system.gate = trio.Event()
    results: list[object] = []
    executor = Executor(system, transport, notifier, results.append)
    other = parse_triplet("lo:127.77.0.101/32")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(executor.run)
            executor.submit([Notify("down", "m", frozenset({VIP})), Acquire(frozenset({VIP})), Release(frozenset({VIP})),
                             Acquire(frozenset({other}))])
            await trio.sleep(0.05)
            # The first acquire is stuck; a status frame must still leave at once.
            executor.submit([Transmit(b"status", (LOOPBACK,))])
            assert transport.sent == [(b"status", (LOOPBACK,))]
            assert system.kinds() == ["acquire"]
            assert len(notifier.started) == 1
            system.gate.set()
            while len(results) < 3:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()  # the hung mail is cancelled with the executor
    assert system.kinds() == ["acquire", "release", "acquire"]
    assert system.max_active == 1
    assert [type(r).__name__ for r in results] == ["AcquireDone", "ReleaseDone", "AcquireDone"]


@pytest.mark.trio
async def test_the_same_alarm_is_logged_every_time_but_mailed_once() -> None:
    notifier = SlowNotifier()
    executor = Executor(MemorySystem(), MemoryTransport(), notifier, lambda result: None)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(executor.run)
            for _ in range(3):
                executor.submit([Alarm("error", "could not acquire 127.77.0.100", True)])
            executor.submit([Alarm("error", "could not acquire 127.77.0.101", True), Alarm("info", "not mailed")])
            await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert [a.message for a in notifier.started] == ["could not acquire 127.77.0.100", "could not acquire 127.77.0.101"]


@pytest.mark.trio
async def test_a_release_reaches_the_core_before_its_post_release_hooks_and_the_next_change_waits_for_them() -> None:
    system, transport = MemorySystem(), MemoryTransport()
    system.post_release_gate = trio.Event()
    results: list[object] = []
    executor = Executor(system, transport, None, results.append)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(executor.run)
            executor.submit([Release(frozenset({VIP})), Acquire(frozenset({VIP}))])
            while not results:
                await trio.sleep(0.005)
            assert results == [ReleaseDone(released=frozenset({VIP}))]
            await trio.sleep(0.05)
            # The hooks have not finished: the release is still the change in progress.
            assert isinstance(executor.current, Release)
            assert [kind for kind, _ in system.log] == ["release"]
            system.post_release_gate.set()
            while len(results) < 2:
                await trio.sleep(0.005)
            nursery.cancel_scope.cancel()
    assert [kind for kind, _ in system.log] == ["release", "post-release", "acquire"]
    assert [type(r).__name__ for r in results] == ["ReleaseDone", "AcquireDone"]  # reported once each


@pytest.mark.trio
async def test_heartbeats_reach_the_detector_while_its_probe_is_running() -> None:
    """A false suspicion ends on the next heartbeat, not when the ARP probe finishes."""
    system, transport = MemorySystem(), MemoryTransport()
    system.probe_gate = trio.Event()
    timing = Timing(interval=0.1)
    with trio.fail_after(5):
        detector = Detector(DetectorSettings([VIP], timing, master=LOOPBACK), trio.current_time())
        shell = CoreShell(detector, system=system, transport=transport, notifier=None)
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.executor.run)
            await nursery.start(shell.run_timer)
            while not system.kinds():
                await trio.sleep(0.005)
            assert detector.state == "suspect"
            assert system.kinds() == ["probe"] and shell.executor.probes_running == 1
            shell.datagram(b"heartbeat", LOOPBACK, "lo")
            assert detector.state == "monitoring"
            assert detector.counters.false_suspicions == 1
            system.probe_gate.set()  # the stale probe result is ignored by the core
            await trio.sleep(0.02)
            assert detector.state in ("monitoring", "suspect")
            assert "acquire" not in system.kinds()
            nursery.cancel_scope.cancel()


# --- whole daemons ------------------------------------------------------------------------------------


def backup_config(tmp_path: Path, port: int, **overrides) -> BackupConfig:
    values = dict(
        master=IPv4Address(LOOPBACK), triplets=(VIP,), port=port, run_mode="debug",
        timing=Timing(interval=0.1), hook_dir=tmp_path / "hooks", pid_file=tmp_path / "b.pid",
        control_socket=tmp_path / "b.sock", state_dir=tmp_path / "state", notify_command="/bin/true",
    )
    values.update(overrides)
    return BackupConfig(**values)


@pytest.mark.trio
async def test_backup_takes_over_on_silence_releases_on_heartbeat_and_releases_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    system = MemorySystem()
    config = backup_config(tmp_path, port)
    status_code: list[int] = []
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:

            async def run_backup(task_status=trio.TASK_STATUS_IGNORED) -> None:
                status_code.append(await backup.serve(config, system=system, task_status=task_status))

            await nursery.start(run_backup)
            sender = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with sender:
                for _ in range(5):
                    await sender.sendto(b"heartbeat", (LOOPBACK, port))
                    await trio.sleep(0.05)
                status = await trio.to_thread.run_sync(control.request, config.control_socket, "status")
                assert status["state"] == "monitoring" and status["paths"][0]["name"] == "lo"
                # Silence: suspect, probe, deadline, acquire.
                while "acquire" not in system.kinds():
                    await trio.sleep(0.01)
                assert system.kinds()[:2] == ["probe", "acquire"]
                while (await trio.to_thread.run_sync(control.request, config.control_socket, "status"))["state"] != "failed_over":
                    await trio.sleep(0.01)
                # The master is back: released at once.
                await sender.sendto(b"heartbeat", (LOOPBACK, port))
                while "release" not in system.kinds():
                    await trio.sleep(0.01)
                # Silence again, take over again, then SIGTERM while holding.
                while system.kinds().count("acquire") < 2:
                    await trio.sleep(0.01)
                while (await trio.to_thread.run_sync(control.request, config.control_socket, "status"))["held"] == []:
                    await trio.sleep(0.01)
                os.kill(os.getpid(), signal.SIGTERM)
    assert status_code == [0]
    assert system.kinds()[-1] == "release" and system.kinds().count("release") == 2
    assert system.max_active == 1
    assert not config.control_socket.exists()


@pytest.mark.trio
async def test_backup_keeps_addresses_on_exit_when_configured(tmp_path: Path) -> None:
    port = free_port()
    system = MemorySystem()
    config = backup_config(tmp_path, port, keep_addresses_on_exit=True)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            result: list[int] = []

            async def run_backup(task_status=trio.TASK_STATUS_IGNORED) -> None:
                result.append(await backup.serve(config, system=system, task_status=task_status))

            await nursery.start(run_backup)
            while (await trio.to_thread.run_sync(control.request, config.control_socket, "status"))["held"] == []:
                await trio.sleep(0.02)
            os.kill(os.getpid(), signal.SIGTERM)
    assert result == [0]
    assert "release" not in system.kinds()


@pytest.mark.trio
async def test_heartbeatd_sends_every_interval_and_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    config = MasterConfig(
        targets=(IPv4Address(LOOPBACK),), port=port, run_mode="debug", interval=0.05, message=b"alive",
        pid_file=tmp_path / "m.pid", control_socket=tmp_path / "m.sock", state_dir=tmp_path / "state",
        hook_dir=tmp_path / "hooks", notify_command="/bin/true",
    )
    result: list[int] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def run_master(task_status=trio.TASK_STATUS_IGNORED) -> None:
                result.append(await master.serve(config, system=MemorySystem(), task_status=task_status))

            await nursery.start(run_master)
            status = await trio.to_thread.run_sync(control.request, config.control_socket, "status")
            assert status["role"] == "master" and status["state"] == "holding"
            before = (await trio.to_thread.run_sync(control.request, config.control_socket, "dump"))["runtime"]
            # Heartbeats keep going out (to loopback, where heartbeatd itself hears them); the
            # test's own deadline bounds the wait, so a loaded machine is slower, not failing.
            while True:
                await trio.sleep(0.05)
                after = (await trio.to_thread.run_sync(control.request, config.control_socket, "dump"))["runtime"]
                if after["datagrams_sent"] >= before["datagrams_sent"] + 5:
                    break
            os.kill(os.getpid(), signal.SIGINT)
    assert result == [0]


@pytest.mark.trio
async def test_backup_records_every_detector_input_to_its_trace(tmp_path: Path) -> None:
    from failoverd.analysis.trace import ActionResult, Datagram, TimerFired, read_trace

    port = free_port()
    config = backup_config(tmp_path, port, trace_file=tmp_path / "trace")
    system = MemorySystem()
    result: list[int] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def run_backup(task_status=trio.TASK_STATUS_IGNORED) -> None:
                result.append(await backup.serve(config, system=system, task_status=task_status))

            await nursery.start(run_backup)
            sender = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with sender:
                await sender.sendto(b"heartbeat", (LOOPBACK, port))
                await sender.sendto(b"forged", (LOOPBACK, port))
            while "acquire" not in system.kinds():
                await trio.sleep(0.01)
            while (await trio.to_thread.run_sync(control.request, config.control_socket, "status"))["held"] == []:
                await trio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)
    assert result == [0]
    recorded = read_trace(config.trace_file)
    datagrams = [e for e in recorded.events if isinstance(e, Datagram)]
    assert [d.data for d in datagrams] == [b"heartbeat", b"forged"]
    assert any(isinstance(e, TimerFired) for e in recorded.events)
    assert any(isinstance(e, ActionResult) for e in recorded.events)


@pytest.mark.trio
@pytest.mark.parametrize("keep", [False, True])
async def test_the_backup_stop_goes_through_its_detector_and_into_its_trace(tmp_path: Path, keep: bool) -> None:
    """The stop is an input of the detector like any other: recorded (``s``), its release an
    action, the release's result recorded too, and the replayed trace does exactly the same."""
    from failoverd.analysis.replay import Setup, replay_exact
    from failoverd.analysis.trace import ActionResult, StopRequested, read_trace

    port = free_port()
    config = backup_config(tmp_path, port, trace_file=tmp_path / "trace", keep_addresses_on_exit=keep)
    system = MemorySystem()
    result: list[int] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def run_backup(task_status=trio.TASK_STATUS_IGNORED) -> None:
                result.append(await backup.serve(config, system=system, task_status=task_status))

            await nursery.start(run_backup)
            while (await trio.to_thread.run_sync(control.request, config.control_socket, "status"))["held"] == []:
                await trio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)
    assert result == [0]
    assert system.kinds()[-1] == ("acquire" if keep else "release")
    recorded = read_trace(config.trace_file)
    (stop,) = [i for i, e in enumerate(recorded.events) if isinstance(e, StopRequested)]
    assert recorded.events[stop].release is not keep
    after = [e for e in recorded.events[stop + 1:] if isinstance(e, ActionResult)]
    assert [type(e.result).__name__ for e in after] == ([] if keep else ["ReleaseDone"])
    replayed = replay_exact(Setup.from_header(recorded.header, None), recorded.events)
    assert not replayed.divergences
    kinds = [entry.kind for entry in replayed.timeline]
    assert "stop" in kinds and ("release" in kinds[kinds.index("stop"):]) is not keep


@pytest.mark.trio
async def test_sighup_rereads_the_key_file_and_sigusr1_logs_the_full_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"0123456789abcdef0123\n")
    os.chmod(key_file, 0o600)
    config = backup_config(tmp_path, free_port(), key_file=key_file)
    caplog.set_level("INFO", logger="failoverd")
    result: list[int] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def run_backup(task_status=trio.TASK_STATUS_IGNORED) -> None:
                result.append(await backup.serve(config, system=MemorySystem(), task_status=task_status))

            await nursery.start(run_backup)
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGHUP)
            await trio.sleep(0.1)
            key_file.write_bytes(b"another-key-0123456789\n")
            os.kill(os.getpid(), signal.SIGHUP)
            await trio.sleep(0.1)
            os.kill(os.getpid(), signal.SIGTERM)
    assert result == [0]
    messages = [r.getMessage() for r in caplog.records]
    dump = next(m for m in messages if m.startswith("state dump: "))
    assert '"mode": "authenticated"' in dump and '"runtime"' in dump
    assert any("key file" in m and "unchanged" in m for m in messages)
    assert any("changed: using the new key from now on" in m for m in messages)
    # Nothing of the master is kept for the next start (only our own epoch):
    # a restarted backup counts only heartbeats that acknowledge its new epoch.
    assert sorted(p.name for p in config.state_dir.iterdir()) == ["epoch"]
