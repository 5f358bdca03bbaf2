"""The peer benchmark does not rot: one run of bench/peers.py, host death and failback at 1 s with
the client's view of both (scenario 4: a request every 10 ms to an echo service on the VIP), ours,
keepalived and ucarp on one kernel-bridge lab.

Asserts only that every daemon produced its figures (the numbers are the benchmark's business,
docs/benchmarks.md). Root and namespaces needed; keepalived and ucarp are installed with apt-get
when missing (scripts/bootstrap does so too), and the test is skipped if that cannot be done.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from failoverd.lab.pytest_plugin import requires_netns, time_limit

pytestmark = [requires_netns, pytest.mark.netns, pytest.mark.slow]

BENCH = Path(__file__).resolve().parent.parent / "bench" / "peers.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_peers", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_one_run_of_host_death_and_the_clients_view_gives_figures_for_every_daemon() -> None:
    peers = _bench()
    keys = ["ours", "keepalived", "ucarp"]
    for key in keys:
        why = peers.ensure_installed(key, install=True)
        if why is not None:
            pytest.skip(f"{key} is needed for the peer benchmark: {why}")
    with time_limit(150):
        cells = peers.measure(keys, [1.0], runs=1, idle_seconds=0, seed=3, skipped={}, settle=3.0,
                              scenarios=frozenset({"1", "3", "4"}))
    for key in keys:
        cell = cells[(key, 1.0)]
        assert cell.failures == [], (key, cell.failures)
        for figure in ("takeover", "overlap", "gap", "restart", "death_failed", "failback_failed"):
            assert len(getattr(cell, figure)) == 1, (key, figure)
        # A dead host answers nothing until its backup has taken over: the client saw that.
        assert cell.death_failed[0] >= 1, key
        assert cell.death_first[0] < cell.death_last[0], (key, cell)
    table = peers.report(cells, keys, [1.0], {}, markdown=True, scenarios=frozenset({"1", "3", "4"}))
    assert "| 1 s | host death → VIP up on the backup, ms |" in table
    assert "| 1 s | client, host death: last failed request, ms after |" in table
