"""What a daemon holds in memory: the runtimes import no more than they use.

Measured in the lab (docs/benchmarks.md, idle cost): ``prometheus_client`` is
some 180 modules and 3 MiB of a daemon's resident memory, for metrics that
are off unless ``--metrics-listen`` is given; importing any part of
``pyroute2`` runs its package ``__init__`` (IPRoute, NDB, asyncio, sqlite3,
multiprocessing: about 10 MiB and 0.2 - 0.4 s of start-up), so the daemons
speak rtnetlink through their own few messages (failoverd/system/rtnetlink.py).
The etcd client (httpx) is imported only with ``--etcd-endpoints``.
Each check runs in a fresh interpreter, so what other tests imported does not count.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
import {module}
print(" ".join(sorted(name for name in sys.modules if name.split(".")[0] in {names!r})))
"""


def _imported(module: str, names: tuple[str, ...]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(module=module, names=names)],
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.split()


@pytest.mark.parametrize("runtime", ["failoverd.runtime.master", "failoverd.runtime.backup"])
def test_a_daemon_without_metrics_does_not_import_prometheus_client(runtime: str) -> None:
    assert _imported(runtime, ("prometheus_client",)) == []


def test_the_metrics_still_import_it_when_asked_for() -> None:
    assert "prometheus_client" in _imported("failoverd.runtime.metrics", ("prometheus_client",))


@pytest.mark.parametrize("program", ["failoverd.programs.heartbeatd", "failoverd.programs.failoverd"])
@pytest.mark.parametrize("runtime", ["failoverd.runtime.master", "failoverd.runtime.backup"])
def test_a_daemon_does_not_import_pyroute2_or_what_only_it_needs(program: str, runtime: str) -> None:
    heavy = ("pyroute2", "asyncio", "sqlite3", "multiprocessing")
    assert _imported(f"{program}, {runtime}", heavy) == []


@pytest.mark.parametrize("program", ["failoverd.programs.heartbeatd", "failoverd.programs.failoverd"])
@pytest.mark.parametrize("runtime", ["failoverd.runtime.master", "failoverd.runtime.backup"])
def test_a_daemon_without_a_witness_does_not_import_the_etcd_client(program: str, runtime: str) -> None:
    # httpx and what it pulls in (urllib, http.client, email) were some 80 ms of every start-up.
    assert _imported(f"{program}, {runtime}", ("httpx", "httpcore", "h11")) == []
    assert "failoverd.system.witness" not in _imported(f"{program}, {runtime}", ("failoverd",))


def test_the_master_does_not_import_the_backups_detector_nor_the_trace() -> None:
    assert _imported("failoverd.runtime.master", ("failoverd",)).count("failoverd.core.detector") == 0
    assert [m for m in _imported("failoverd.runtime.master", ("failoverd",)) if m.startswith("failoverd.analysis")] == []


def test_the_backup_imports_the_trace_only_to_record_one() -> None:
    assert [m for m in _imported("failoverd.runtime.backup", ("failoverd",)) if m.startswith("failoverd.analysis")] == []


FROZEN = """
import gc
from failoverd.runtime import lifecycle

async def serve(config):
    return gc.get_freeze_count()

print(lifecycle.run_daemon(serve, None))
"""


def test_what_the_daemon_built_before_running_is_out_of_the_collectors_sight() -> None:
    # A full collection of a daemon's heap cost ~27 ms of CPU on the lab's
    # machine, at any moment, a failback included; frozen, the start-up
    # objects are no longer walked.
    done = subprocess.run([sys.executable, "-c", FROZEN], capture_output=True, text=True, timeout=60, check=True)
    assert int(done.stdout) > 1000
