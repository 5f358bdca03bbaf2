"""The runtime's ports are declared whole: System, Transport, Notifications.

Each has one real implementation and one in memory, and each of those has
every member of its port (nothing is looked up with ``getattr``), so a
daemon runs on the in-memory ones exactly as on the host.
"""

from __future__ import annotations

import inspect
import os
import signal
from pathlib import Path

import pytest
import trio
from test_runtime_daemons import VIP, backup_config, free_port

from failoverd.runtime import backup, control, ports
from failoverd.runtime.memory import MemoryNotifications, MemorySystem, MemoryTransport
from failoverd.runtime.udp import HeartbeatSocket
from failoverd.system.mail import Notifier
from failoverd.system.takeover import Takeover

IMPLEMENTATIONS = [
    (ports.System, Takeover),
    (ports.System, MemorySystem),
    (ports.Transport, HeartbeatSocket),
    (ports.Transport, MemoryTransport),
    (ports.Notifications, Notifier),
    (ports.Notifications, MemoryNotifications),
]


def _members(protocol: type) -> list[str]:
    return sorted(name for name, value in vars(protocol).items() if not name.startswith("_") and callable(value))


def _shape(function: object) -> list[tuple[inspect._ParameterKind, bool]]:
    """Each parameter's kind and whether it has a default (names may differ: ``triplets`` for ``addresses``)."""
    parameters = list(inspect.signature(function).parameters.values())[1:]  # self
    return [(p.kind, p.default is not inspect.Parameter.empty) for p in parameters]


@pytest.mark.parametrize(("protocol", "implementation"), IMPLEMENTATIONS, ids=lambda c: c.__name__)
def test_every_implementation_has_every_member_of_its_port(protocol: type, implementation: type) -> None:
    assert _members(protocol), "a port declares what it offers"
    for name in _members(protocol):
        member = getattr(implementation, name, None)
        assert member is not None, f"{implementation.__name__} lacks {protocol.__name__}.{name}"
        assert _shape(member) == _shape(getattr(protocol, name)), f"{implementation.__name__}.{name}"
        assert inspect.iscoroutinefunction(member) == inspect.iscoroutinefunction(getattr(protocol, name))


def test_the_system_port_states_every_capability_the_daemons_use() -> None:
    # Adoption at start, the wire's conflicts and the hooks' metrics are the port's, not found by probing.
    assert {"present", "conflict_watcher", "observe_hooks"} <= set(_members(ports.System))


@pytest.mark.trio
async def test_the_backup_adopts_what_the_system_reports_present_at_start(tmp_path: Path) -> None:
    system = MemorySystem()
    system.held = frozenset({VIP})
    config = backup_config(tmp_path, free_port(), keep_addresses_on_exit=True)
    result: list[int] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def run_backup(task_status=trio.TASK_STATUS_IGNORED) -> None:  # type: ignore[no-untyped-def]
                result.append(await backup.serve(config, system=system, task_status=task_status))

            await nursery.start(run_backup)
            status = await trio.to_thread.run_sync(control.request, config.control_socket, "status")
            os.kill(os.getpid(), signal.SIGTERM)
    assert status["held"] == [str(VIP)]
    assert result == [0] and "acquire" not in system.kinds()  # adopted, not added again
