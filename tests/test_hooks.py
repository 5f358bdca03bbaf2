"""The hook runner, with real shell scripts in a temporary hook directory.

Charter: hooks are tiny /bin/sh scripts written by the test; every async
test runs under ``trio.fail_after`` (or, where a hook's timeout must fire at
a chosen moment, a mock clock the test jumps, with every real wait bounded);
processes a hook leaves behind are looked up by PID in /proc afterwards.
"Another user" is nobody, through setpriv (as tests/test_root_check.py).
Ownership checks need root (files must be root-owned to run), so the tests
skip without it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from failoverd.core.addresses import parse_triplet
from failoverd.system.hooks import OUTPUT_LIMIT, HookResult, HookRunner

TRIPLET = parse_triplet("eth9:10.63.0.5/24")
OTHER = parse_triplet("eth9:10.63.0.6")
NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


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


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def wait_for_file(path: Path, timeout: float = 30.0) -> str:
    """The file's text once a writer renamed it into place; bounded, real time (run it in a thread)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)
    return path.read_text()


def kill_if_alive(pid: int) -> None:
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.trio
async def test_phase_hooks_run_in_name_order_with_arguments_and_environment(hook_dir: Path, tmp_path: Path) -> None:
    record = tmp_path / "record"
    line = f'echo "$(basename "$FAILOVER_HOOK") $# $1 $2 $FAILOVER_EVENT $FAILOVER_PHASE $FAILOVER_ADDRESS $FAILOVER_INTERFACE $FAILOVER_PREFIXLEN [$FAILOVER_TRIPLETS] $PWD" >> {record}'
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
    assert {"PATH", "FAILOVER_EVENT", "FAILOVER_PHASE", "FAILOVER_TRIPLET", "FAILOVER_HOOK_DIR", "FAILOVER_HOOK"} <= names


@pytest.mark.trio
async def test_a_hook_runs_from_the_descriptor_that_was_checked(hook_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    hook = write_hook(hook_dir, "PreAcq", f'echo "$0 $FAILOVER_HOOK" > {out}')
    with trio.fail_after(10):
        (result,) = await HookRunner(hook_dir, timeout=5).run_phase("PreAcq", "acquire", TRIPLET)
    assert result.succeeded
    zero, named = out.read_text().split()
    assert zero.startswith("/proc/self/fd/") and named == str(hook)


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


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        HookRunner("/nonexistent", timeout=0)


# --- what runs is what was checked ---------------------------------------------------

needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to become nobody")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A root-owned 0755 directory in /tmp, so that nobody can reach what is made inside it."""
    directory = Path(tempfile.mkdtemp(prefix="fo-hooks-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def attacker_dir(shared: Path) -> Path:
    directory = shared / "attacker"
    directory.mkdir()
    directory.chmod(0o755)
    os.chown(directory, NOBODY, NOBODY)
    return directory


SWAPPER = textwrap.dedent(
    """
    import os, sys
    link, first, second, stop = sys.argv[1:]
    new = os.path.join(os.path.dirname(link), "." + os.path.basename(link) + ".new")  # not a hook's name
    for i in range(2_000_000):
        if i % 256 == 0 and os.path.exists(stop):
            break
        os.symlink(first if i % 2 else second, new)
        os.replace(new, link)
    """
)


@contextmanager
def swapping(link: Path, first: Path, second: Path, stop: Path, prefix: list[str]) -> Iterator[None]:
    """A process (as ``prefix`` says: another user, or root) that keeps pointing ``link`` at
    ``first``, then ``second``, until ``stop`` exists (a bounded loop in any case)."""
    swapper = subprocess.Popen(
        [*prefix, sys.executable, "-I", "-c", SWAPPER, str(link), str(first), str(second), str(stop)]
    )
    try:
        yield
    finally:
        stop.write_text("")
        try:
            swapper.wait(timeout=30)
        finally:
            if swapper.poll() is None:
                swapper.kill()
                swapper.wait(timeout=30)
    assert swapper.returncode == 0


@pytest.mark.trio
async def test_a_hook_linked_through_a_directory_another_user_controls_is_refused(
    hook_dir: Path, shared_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="failoverd.system.hooks")
    ran = shared_dir / "ran"
    benign = shared_dir / "benign"
    benign.write_text(f"#!/bin/sh\necho benign >> {ran}\n")
    benign.chmod(0o755)
    attacker = attacker_dir(shared_dir)
    (attacker / "link").symlink_to(benign)  # root's file: what the old check looked at and passed
    (hook_dir / "10.63.0.5" / "PreAcq1").symlink_to(attacker / "link")
    with trio.fail_after(10):
        assert await HookRunner(hook_dir, timeout=5).run_phase("PreAcq", "acquire", TRIPLET) == []
    assert not ran.exists()
    assert f"PreAcq1: directory {attacker} is owned by uid 65534, not root" in caplog.text


@needs_setpriv
@pytest.mark.trio
async def test_another_user_swapping_a_link_while_hooks_run_never_gets_their_file_run(
    hook_dir: Path, shared_dir: Path
) -> None:
    """The race of issue 9: found the attacker's script run 85 times in 1,500."""
    evil_ran = shared_dir / "evil-ran"
    benign = shared_dir / "benign"
    benign.write_text("#!/bin/sh\nexit 0\n")
    benign.chmod(0o755)
    attacker = attacker_dir(shared_dir)
    evil = attacker / "evil"
    evil.write_text(f"#!/bin/sh\necho root ran me >> {evil_ran}\n")
    evil.chmod(0o755)
    os.chown(evil, NOBODY, NOBODY)
    link = attacker / "link"
    link.symlink_to(benign)
    os.lchown(link, NOBODY, NOBODY)
    (hook_dir / "10.63.0.5" / "PreAcq1").symlink_to(link)
    runner = HookRunner(hook_dir, timeout=5)
    with swapping(link, benign, evil, shared_dir / "stop", AS_NOBODY):
        with trio.fail_after(120):
            for _ in range(300):
                for result in await runner.run_phase("PreAcq", "acquire", TRIPLET):
                    assert result.succeeded
    assert not evil_ran.exists()


@pytest.mark.trio
async def test_a_file_swapped_in_after_the_check_is_not_the_one_that_runs(hook_dir: Path, tmp_path: Path) -> None:
    """Root's own link flipping between a good hook and one the rules refuse (group-writable):
    a check by name passes the good one and then runs whatever the name points to by then."""
    refused_ran = tmp_path / "refused-ran"
    good = tmp_path / "good"
    good.write_text("#!/bin/sh\nexit 0\n")
    good.chmod(0o755)
    refused = tmp_path / "refused"
    refused.write_text(f"#!/bin/sh\necho ran >> {refused_ran}\n")
    refused.chmod(0o775)
    link = hook_dir / "10.63.0.5" / "PreRel1"
    link.symlink_to(good)
    runner = HookRunner(hook_dir, timeout=5)
    with swapping(link, good, refused, tmp_path / "stop", []):
        with trio.fail_after(120):
            for _ in range(300):
                for result in await runner.run_phase("PreRel", "release", TRIPLET):
                    assert result.succeeded or result.error.startswith("refused: writable by group or others")
    assert not refused_ran.exists()


@pytest.mark.trio
async def test_an_interpreter_another_user_controls_is_refused(
    hook_dir: Path, shared_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="failoverd.system.hooks")
    attacker = attacker_dir(shared_dir)
    shell = attacker / "sh"
    shutil.copy("/bin/sh", shell)
    ran = shared_dir / "ran"
    hook = hook_dir / "10.63.0.5" / "PostAcq1"
    hook.write_text(f"#!{shell}\necho ran >> {ran}\n")
    hook.chmod(0o755)
    with trio.fail_after(10):
        assert await HookRunner(hook_dir, timeout=5).run_phase("PostAcq", "acquire", TRIPLET) == []
    assert not ran.exists()
    assert f"PostAcq1: interpreter {shell}: directory {attacker} is owned by uid 65534, not root" in caplog.text


# --- a hook's whole tree, and nothing else -----------------------------------------------


GRANDCHILD = (
    # The grandchild leaves the hook's session, ignores SIGTERM, and says who it is (pid, session).
    "( trap '' TERM; setsid sh -c 'echo $$ $(cut -d\" \" -f6 /proc/$$/stat) > {info}.tmp; "
    "mv {info}.tmp {info}; exec sleep 300' & )"
)


@pytest.mark.trio
async def test_a_grandchild_that_left_the_session_is_killed_when_the_hook_times_out(
    hook_dir: Path, tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    info = tmp_path / "grandchild"
    # The hook itself obeys SIGTERM and is gone at once: the grandchild is then nobody's but init's.
    write_hook(hook_dir, "PreAcq", GRANDCHILD.format(info=info) + "\nexec sleep 300")
    runner = HookRunner(hook_dir, timeout=30, kill_grace=30)
    results: list[HookResult] = []

    async def run() -> None:
        results.extend(await runner.run_phase("PreAcq", "acquire", TRIPLET))

    pid = 0
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            pid, session = map(int, (await trio.to_thread.run_sync(wait_for_file, info)).split())
            assert session == pid, "the grandchild must have left the hook's session"
            mock_clock.jump(30)  # the hook's timeout, now that its tree is complete
        (result,) = results
        assert result.timed_out
        assert not alive(pid)
    finally:
        if pid:
            kill_if_alive(pid)


@pytest.mark.trio
async def test_cancelling_the_caller_kills_a_grandchild_that_left_the_session(hook_dir: Path, tmp_path: Path) -> None:
    info = tmp_path / "grandchild"
    write_hook(hook_dir, "PostAcq", GRANDCHILD.format(info=info) + "\nsleep 300")
    runner = HookRunner(hook_dir, timeout=60, kill_grace=0.5)
    pid = 0
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(runner.run_phase, "PostAcq", "acquire", TRIPLET)
                pid, _ = map(int, (await trio.to_thread.run_sync(wait_for_file, info)).split())
                nursery.cancel_scope.cancel()
        assert not alive(pid)
    finally:
        if pid:
            kill_if_alive(pid)


PR_GET_CHILD_SUBREAPER = 37


def is_subreaper() -> bool:
    flag = ctypes.c_int(-1)
    assert ctypes.CDLL(None, use_errno=True).prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0
    return flag.value == 1


@pytest.mark.trio
async def test_the_daemon_reaps_only_its_own_children_and_adopts_none(hook_dir: Path, tmp_path: Path) -> None:
    """Hooks are their own trees' subreapers, the daemon is none: it never gets an orphan to reap,
    and a child Trio waits for keeps its exit status while a hook tree is being killed."""
    left = tmp_path / "left"
    write_hook(hook_dir, "PostAcq", f"setsid sleep 300 > /dev/null 2>&1 & echo $! > {left}.tmp; mv {left}.tmp {left}")
    write_hook(hook_dir, "PreRel", "trap '' TERM; sleep 300 & wait")
    pid = 0
    try:
        with trio.fail_after(30):
            (result,) = await HookRunner(hook_dir, timeout=5).run_phase("PostAcq", "acquire", TRIPLET)
            assert result.succeeded
            pid = int(left.read_text())
            # Left running (docs/hooks.md), and not handed to us when the hook exited.
            assert alive(pid) and parent_of(pid) != os.getpid()
            assert not is_subreaper()
            async with trio.open_nursery() as nursery:
                stuck = HookRunner(hook_dir, timeout=0.3, kill_grace=0.3)
                nursery.start_soon(stuck.run_phase, "PreRel", "release", TRIPLET)
                other = await trio.run_process(["sh", "-c", "sleep 1; exit 7"], check=False)
            assert other.returncode == 7
    finally:
        if pid:
            kill_if_alive(pid)


# --- output --------------------------------------------------------------------------------


@pytest.mark.trio
async def test_a_hook_printing_100_mb_is_read_through_a_pipe_and_only_the_log_limit_kept(
    hook_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="failoverd.system.hooks")
    where = tmp_path / "where"
    # The shell's stderr (stdout is the same pipe; dash redirects its own stdout for a command's "> file").
    write_hook(hook_dir, "PostRel", f"readlink /proc/$$/fd/2 > {where}; yes | head -c 100000000")
    with trio.fail_after(120):
        (result,) = await HookRunner(hook_dir, timeout=60).run_phase("PostRel", "release", TRIPLET)
    assert result.succeeded
    assert where.read_text().startswith("pipe:"), "no file may hold the output"
    assert result.output == ("y\n" * (OUTPUT_LIMIT // 2)).strip()
    assert result.dropped == 100_000_000 - OUTPUT_LIMIT
    assert f"({100_000_000 - OUTPUT_LIMIT} more bytes not logged)" in caplog.text


@pytest.mark.trio
async def test_a_process_left_holding_the_output_does_not_hold_up_the_hook(hook_dir: Path, tmp_path: Path) -> None:
    left = tmp_path / "left"
    write_hook(hook_dir, "PreAcq", f"echo before; sleep 300 & echo $! > {left}; echo after")
    pid = 0
    try:
        with trio.fail_after(30):
            (result,) = await HookRunner(hook_dir, timeout=60).run_phase("PreAcq", "acquire", TRIPLET)
        pid = int(left.read_text())
        assert result.succeeded and result.output == "before\nafter"
        assert alive(pid)  # it still has the pipe open: the hook was over when the hook exited anyway
    finally:
        if pid:
            kill_if_alive(pid)
