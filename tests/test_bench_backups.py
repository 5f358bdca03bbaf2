"""The several-backups benchmark does not rot: one run of each case of bench/backups.py at a 0.2 s
interval on one three-host lab (one backup; two, the higher taking; two with the higher dead, the
lower taking after its rank delay).

Asserts that every case produced its figure and that the right backup, alone, took the VIP in each
(the numbers themselves are the benchmark's business, docs/benchmarks.md). Root and namespaces needed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from failoverd.lab.pytest_plugin import requires_netns, time_limit

pytestmark = [requires_netns, pytest.mark.netns, pytest.mark.slow]

BENCH = Path(__file__).resolve().parent.parent / "bench" / "backups.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_backups", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_one_run_of_each_case_gives_its_figure_and_the_right_backup_alone_takes_over() -> None:
    bench = _bench()
    cases = list(bench.CASES)
    with time_limit(150):
        cells = bench.measure(0.2, runs=1, seed=3, cases=cases)
    assert list(cells) == cases
    for case, series in cells.items():
        assert len(series.takeover) == 1, case
        assert series.takeover[0] > 0, case
        assert series.wrong == 0, (case, "a backup other than", bench.TAKER[case], "held the VIP")
        assert series.overlaps == 0, (case, "two hosts held the VIP at once")
    text = bench.report([cells], markdown=False)
    assert "the lower backup's rank delay" in text
    table = bench.report([cells], markdown=True)
    assert "| 0.2 s | two backups, the higher takes | 1 |" in table


def test_the_command_line_refuses_what_it_cannot_measure(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench()
    for argv in (["--runs", "0"], ["--intervals", "0"], ["--cases", "three"]):
        with pytest.raises(SystemExit) as exited:
            bench.main(argv)
        assert exited.value.code == 2, argv
    err = capsys.readouterr().err
    assert "--runs must be at least 1" in err and "--intervals must be positive" in err
    assert "invalid choice: 'three'" in err
