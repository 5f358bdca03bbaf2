"""The atheris harnesses in fuzz/: every committed input passes, and a bounded
fuzzing run of each finds no crash.

Each harness runs in its own interpreter (atheris instruments modules as it
imports them, and libFuzzer owns the process). A crash found by a longer run
(fuzz/run.sh HARNESS SECONDS) is added to fuzz/regressions/HARNESS/ and is then
replayed here on every run, next to a unit test of the fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
HARNESSES = ("fuzz_wire", "fuzz_addresses", "fuzz_hostconfig", "fuzz_trace", "fuzz_ndp", "fuzz_pcap")
SECONDS = int(os.environ.get("FAILOVERD_FUZZ_SECONDS", "20"))

pytest.importorskip("atheris")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(FUZZ.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("harness", HARNESSES)
def test_seeds_and_regressions_pass(harness: str) -> None:
    inputs = sorted((FUZZ / "corpus" / harness).iterdir())
    regressions = FUZZ / "regressions" / harness
    if regressions.is_dir():
        inputs += sorted(regressions.iterdir())
    assert inputs, f"no seed corpus for {harness}"
    # Given files instead of directories, libFuzzer runs each once and stops.
    done = subprocess.run([sys.executable, str(FUZZ / f"{harness}.py"), *map(str, inputs)],
                          capture_output=True, text=True, timeout=120, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("harness", HARNESSES)
def test_bounded_fuzzing_finds_no_crash(harness: str, tmp_path: Path) -> None:
    env = _env() | {"PYTHON": sys.executable, "FUZZ_ARTIFACTS": str(tmp_path)}
    done = subprocess.run(["bash", str(FUZZ / "run.sh"), harness, str(SECONDS)], capture_output=True, text=True,
                          timeout=SECONDS + 120, env=env)
    crashes = sorted(p.name for p in tmp_path.iterdir())
    assert done.returncode == 0 and not crashes, f"{harness} crashed; inputs {crashes}:\n{done.stderr[-3000:]}"
    assert "Done" in done.stderr, done.stderr[-2000:]
