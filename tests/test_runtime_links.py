"""The link watch in the live daemons: read at start, each change fed to the core through the shell.

Testing charter: as tests/test_runtime_daemons.py (real UDP on loopback, a real
control socket, the host's addresses and links in memory: MemorySystem.set_link
plays the kernel's link messages); tests/test_linkwatch.py watches real links.
"""

from __future__ import annotations

import os
import signal
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import trio
from test_runtime_daemons import LOOPBACK, VIP, backup_config, free_port

from failoverd.cli.config import MasterConfig
from failoverd.runtime import backup, control, master
from failoverd.runtime.memory import MemorySystem


async def _status(path: Path) -> dict:
    """The core's whole snapshot (the control socket's dump: its status has a fixed shape)."""
    return await trio.to_thread.run_sync(control.request, path, "dump")


async def _until(path: Path, done) -> dict:
    while not done(status := await _status(path)):
        await trio.sleep(0.02)
    return status


@pytest.mark.trio
async def test_a_backup_whose_link_is_down_at_start_takes_over_only_once_it_is_up_and_releases_when_it_goes(
    tmp_path: Path,
) -> None:
    system = MemorySystem()
    system.links["lo"] = False
    config = backup_config(tmp_path, free_port())
    result: list[int] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:

            async def run_backup(task_status=trio.TASK_STATUS_IGNORED) -> None:
                result.append(await backup.serve(config, system=system, task_status=task_status))

            await nursery.start(run_backup)
            # The master is silent from the start: the deadline comes and the backup declines.
            status = await _until(config.control_socket, lambda s: s["state"] == "unfit")
            assert status["links_down"] == ["lo"] and "acquire" not in system.kinds()
            system.set_link("lo", True)
            await _until(config.control_socket, lambda s: s["state"] == "failed_over")
            assert system.kinds()[-2:] == ["probe", "acquire"]  # a fresh probe first
            system.set_link("lo", False)
            status = await _until(config.control_socket, lambda s: s["state"] == "unfit")
            assert status["held"] == [] and system.kinds().count("release") == 1
            os.kill(os.getpid(), signal.SIGTERM)
    assert result == [0] and system.kinds().count("acquire") == 1


@pytest.mark.trio
async def test_a_managing_master_that_adopts_its_addresses_on_a_down_link_releases_them_first(tmp_path: Path) -> None:
    system = MemorySystem()
    system.held = frozenset({VIP})
    system.links["lo"] = False
    port = free_port()
    config = MasterConfig(
        targets=(IPv4Address(LOOPBACK),), port=port, run_mode="debug", interval=0.05, managed=(VIP,),
        pid_file=tmp_path / "m.pid", control_socket=tmp_path / "m.sock", state_dir=tmp_path / "state",
        hook_dir=tmp_path / "hooks", notify_command="/bin/true", fail_misses=4,
    )
    result: list[int] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:

            async def run_master(task_status=trio.TASK_STATUS_IGNORED) -> None:
                result.append(await master.serve(config, system=system, task_status=task_status))

            await nursery.start(run_master)
            status = await _until(config.control_socket, lambda s: s["state"] == "standing_down")
            assert status["held"] == [] and system.kinds() == ["release"]
            # Up again: it rejoins; no backup answers, so it presumes it dead (after a probe) and acquires.
            system.set_link("lo", True)
            status = await _until(config.control_socket, lambda s: s["state"] == "holding")
            assert system.kinds() == ["release", "probe", "acquire"]
            os.kill(os.getpid(), signal.SIGTERM)
    assert result == [0]


@pytest.mark.trio
async def test_a_backup_records_its_link_changes_and_an_exact_replay_follows_them(tmp_path: Path) -> None:
    from failoverd.analysis.replay import Setup, replay_exact
    from failoverd.analysis.trace import LinkChanged, read_trace

    system = MemorySystem()
    system.links["lo"] = False
    config = backup_config(tmp_path, free_port(), trace_file=tmp_path / "trace")
    result: list[int] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:

            async def run_backup(task_status=trio.TASK_STATUS_IGNORED) -> None:
                result.append(await backup.serve(config, system=system, task_status=task_status))

            await nursery.start(run_backup)
            await _until(config.control_socket, lambda s: s["state"] == "unfit")
            system.set_link("lo", True)
            await _until(config.control_socket, lambda s: s["state"] == "failed_over")
            system.set_link("lo", False)
            await _until(config.control_socket, lambda s: s["state"] == "unfit")
            os.kill(os.getpid(), signal.SIGTERM)
    assert result == [0]
    trace = read_trace(config.trace_file)
    links = [(e.interface, e.up) for e in trace.events if isinstance(e, LinkChanged)]
    assert links == [("lo", False), ("lo", True), ("lo", False)]
    replayed = replay_exact(Setup.from_header(trace.header, None), trace.events)
    assert replayed.divergences == [] and replayed.final_state == "unfit"
    triggers = [trigger for _, _, _, trigger in replayed.transitions]
    assert "link_up" in triggers and "link_lost" in triggers
