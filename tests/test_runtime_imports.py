"""What a daemon holds in memory: the runtimes import no more than they use.

Measured in the lab (docs/benchmarks.md, idle cost): ``prometheus_client`` is
some 180 modules and 3 MiB of a daemon's resident memory, for metrics that
are off unless ``--metrics-listen`` is given. Each check runs in a fresh
interpreter, so what other tests imported does not count.
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
