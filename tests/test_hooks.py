"""The hook runner, with real shell scripts in a temporary hook directory.

Charter: hooks are tiny /bin/sh scripts written by the test; every async
test runs under ``trio.fail_after``; processes a hook leaves behind are
looked up by PID in /proc afterwards. Ownership checks need root (files must
be root-owned to run), so the tests skip without it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from failoverd.addresses import parse_triplet
from failoverd.system.hooks import HookRunner, insecurity

TRIPLET = parse_triplet("eth9:10.63.0.5/24")
OTHER = parse_triplet("eth9:10.63.0.6")


@pytest.fixture
def hook_dir(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("hooks must be owned by root: run as root")
    directory = tmp_path / "hooks"
    (directory / "10.63.0.5").mkdir(parents=True)
    directory.chmod(0o755)
    (directory / "10.63.0.5").chmod(0o755)
    yield directory


def write_hook(directory: Path, name: str, body: str, mode: int = 0o755) -> Path:
    path = directory / "10.63.0.5" / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a zombie has finished running)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.trio
async def test_phase_hooks_run_in_name_order_with_arguments_and_environment(hook_dir: Path, tmp_path: Path) -> None:
    record = tmp_path / "record"
    line = f'echo "$(basename "$0") $# $1 $2 $FAILOVER_EVENT $FAILOVER_PHASE $FAILOVER_ADDRESS $FAILOVER_INTERFACE $FAILOVER_PREFIXLEN [$FAILOVER_TRIPLETS] $PWD" >> {record}'
    for name in ("PreAcqB", "PreAcq2", "PreAcq10", "PostAcq1", "PreRel1"):
        write_hook(hook_dir, name, line)
    runner = HookRunner(hook_dir, timeout=5)
    with trio.fail_after(10):
        results = await runner.run_phase("PreAcq", "acquire", TRIPLET, [TRIPLET, OTHER])
    assert [r.path.name for r in results] == ["PreAcq10", "PreAcq2", "PreAcqB"]
    assert all(r.succeeded for r in results)
    tail = f"2 acquire eth9:10.63.0.5/24 acquire PreAcq 10.63.0.5 eth9 24 [eth9:10.63.0.5/24 eth9:10.63.0.6] {hook_dir}/10.63.0.5"
    assert record.read_text().splitlines() == [f"{name} {tail}" for name in ("PreAcq10", "PreAcq2", "PreAcqB")]


@pytest.mark.trio
async def test_environment_is_clean(hook_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FO_SECRET_FROM_PARENT", "leak")
    out = tmp_path / "env"
    write_hook(hook_dir, "PostRel", f"env > {out}")
    with trio.fail_after(10):
        await HookRunner(hook_dir, timeout=5).run_phase("PostRel", "release", TRIPLET)
    names = {line.split("=", 1)[0] for line in out.read_text().splitlines()}
    assert "FO_SECRET_FROM_PARENT" not in names
    assert {"PATH", "FAILOVER_EVENT", "FAILOVER_PHASE", "FAILOVER_TRIPLET", "FAILOVER_HOOK_DIR"} <= names


@pytest.mark.trio
async def test_test_hook_decides(hook_dir: Path) -> None:
    runner = HookRunner(hook_dir, timeout=5)
    with trio.fail_after(10):
        assert await runner.test("acquire", TRIPLET) is True  # missing: go ahead
        write_hook(hook_dir, "Test", "exit 0")
        assert await runner.test("acquire", TRIPLET) is True
        write_hook(hook_dir, "Test", '[ "$1" = release ]')  # refuses acquiring only
        assert await runner.test("acquire", TRIPLET) is False
        assert await runner.test("release", TRIPLET) is True


@pytest.mark.trio
async def test_an_untrusted_test_hook_means_notification_only(hook_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="failoverd.system.hooks")
    write_hook(hook_dir, "Test", "exit 0", mode=0o757)
    with trio.fail_after(10):
        assert await HookRunner(hook_dir, timeout=5).test("acquire", TRIPLET) is False
    assert "writable by group or others (mode 0757)" in caplog.text


@pytest.mark.trio
async def test_failing_hooks_are_reported_and_do_not_stop_the_rest(hook_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="failoverd.system.hooks")
    write_hook(hook_dir, "PreRel1", "echo first says hello; exit 3")
    write_hook(hook_dir, "PreRel2", "kill -KILL $$")
    write_hook(hook_dir, "PreRel3", "exit 0")
    with trio.fail_after(10):
        results = await HookRunner(hook_dir, timeout=5).run_phase("PreRel", "release", TRIPLET)
    assert [r.returncode for r in results] == [3, -9, 0]
    assert results[0].output == "first says hello"
    assert "PreRel1 exited 3; output: 'first says hello'" in caplog.text
    assert "PreRel2 killed by signal SIGKILL" in caplog.text


@pytest.mark.trio
async def test_a_hanging_hook_is_killed_with_its_whole_process_group(hook_dir: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # Ignores SIGTERM, and so does its child (ignored signals survive exec).
    write_hook(hook_dir, "PreAcq", f"trap '' TERM; sleep 300 & echo $$ $! > {pids}; wait")
    runner = HookRunner(hook_dir, timeout=0.5, kill_grace=0.5)
    with trio.fail_after(10):
        (result,) = await runner.run_phase("PreAcq", "acquire", TRIPLET)
    assert result.timed_out and result.returncode is None
    leftovers = [int(pid) for pid in pids.read_text().split()]
    assert len(leftovers) == 2
    assert not any(alive(pid) for pid in leftovers)


@pytest.mark.trio
async def test_a_hanging_test_hook_means_notification_only(hook_dir: Path) -> None:
    write_hook(hook_dir, "Test", "sleep 300")
    with trio.fail_after(10):
        assert await HookRunner(hook_dir, timeout=0.3, kill_grace=0.3).test("release", TRIPLET) is False


@pytest.mark.trio
async def test_cancelling_the_caller_kills_the_hook(hook_dir: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    write_hook(hook_dir, "PostAcq", f"sleep 300 & echo $$ $! > {pids}; wait")
    runner = HookRunner(hook_dir, timeout=60, kill_grace=0.5)
    with trio.fail_after(10):
        with trio.move_on_after(0.5):
            await runner.run_phase("PostAcq", "acquire", TRIPLET)
    leftovers = [int(pid) for pid in pids.read_text().split()]
    assert len(leftovers) == 2
    assert not any(alive(pid) for pid in leftovers)


@pytest.mark.trio
async def test_insecure_or_unusable_hooks_are_refused(hook_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="failoverd.system.hooks")
    ran = tmp_path / "ran"
    write_hook(hook_dir, "PostAcq1", f"echo 1 >> {ran}", mode=0o775)
    os.chown(write_hook(hook_dir, "PostAcq2", f"echo 2 >> {ran}"), 65534, 0)
    write_hook(hook_dir, "PostAcq3", f"echo 3 >> {ran}", mode=0o644)
    (hook_dir / "10.63.0.5" / "PostAcq4").mkdir()
    write_hook(hook_dir, "PostAcq5", f"echo 5 >> {ran}")
    with trio.fail_after(10):
        results = await HookRunner(hook_dir, timeout=5).run_phase("PostAcq", "acquire", TRIPLET)
    assert [r.path.name for r in results] == ["PostAcq5"]
    assert ran.read_text() == "5\n"
    assert "PostAcq1: writable by group or others (mode 0775)" in caplog.text
    assert "PostAcq2: owned by uid 65534, not root" in caplog.text
    assert "PostAcq3: not executable" in caplog.text
    assert "PostAcq4: not a regular file" in caplog.text


@pytest.mark.trio
async def test_an_insecure_directory_refuses_every_hook_in_it(hook_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="failoverd.system.hooks")
    ran = tmp_path / "ran"
    write_hook(hook_dir, "PreAcq", f"echo ran >> {ran}")
    write_hook(hook_dir, "Test", "exit 0")
    (hook_dir / "10.63.0.5").chmod(0o777)
    runner = HookRunner(hook_dir, timeout=5)
    with trio.fail_after(10):
        assert await runner.run_phase("PreAcq", "acquire", TRIPLET) == []
        assert await runner.test("acquire", TRIPLET) is False
    assert not ran.exists()
    assert f"directory {hook_dir}/10.63.0.5 is writable by group or others (mode 0777)" in caplog.text


def test_insecurity_of_a_missing_path(tmp_path: Path) -> None:
    assert insecurity(tmp_path / "absent") == "cannot stat: No such file or directory"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        HookRunner("/nonexistent", timeout=0)
