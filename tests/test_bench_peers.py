"""The peer benchmark does not rot: one run of bench/peers.py, host death and failback at 1 s,
ours, keepalived and ucarp on one kernel-bridge lab.

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


def test_one_run_of_host_death_gives_a_figure_for_every_daemon() -> None:
    peers = _bench()
    keys = ["ours", "keepalived", "ucarp"]
    for key in keys:
        why = peers.ensure_installed(key, install=True)
        if why is not None:
            pytest.skip(f"{key} is needed for the peer benchmark: {why}")
    with time_limit(150):
        cells = peers.measure(keys, [1.0], runs=1, idle_seconds=0, seed=3, skipped={}, settle=3.0)
    for key in keys:
        cell = cells[(key, 1.0)]
        assert cell.failures == [], (key, cell.failures)
        for figure in ("takeover", "overlap", "gap", "restart"):
            assert len(getattr(cell, figure)) == 1, (key, figure)
    table = peers.report(cells, keys, [1.0], {}, markdown=True)
    assert "| 1 s | host death → VIP up on the backup, ms |" in table
