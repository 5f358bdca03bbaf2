"""The per-boot epoch never goes back, whatever the wall clock does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from failoverd.runtime.epoch import next_epoch


def test_epochs_follow_the_clock_and_are_recorded(tmp_path: Path) -> None:
    assert next_epoch(tmp_path, now_ns=1000) == 1000
    assert next_epoch(tmp_path, now_ns=5000) == 5000
    assert (tmp_path / "epoch").read_text() == "5000\n"


def test_a_clock_stepped_back_still_gives_a_newer_epoch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    next_epoch(tmp_path, now_ns=10**18)
    assert next_epoch(tmp_path, now_ns=10**15) == 10**18 + 1  # e.g. booted without an RTC
    assert "behind the last epoch" in caplog.text


def test_an_unreadable_or_unwritable_state_is_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "epoch").write_text("garbage")
    assert next_epoch(tmp_path, now_ns=42) == 42
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert next_epoch(blocked / "sub", now_ns=7) == 7  # a file where the directory should be
    assert os.path.isfile(blocked)


# --- only root's state counts --------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="ownership rules need root")


def test_an_epoch_file_that_is_a_link_is_neither_followed_nor_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(f"{10**18}\n")
    (state / "epoch").symlink_to(elsewhere)
    assert next_epoch(state, now_ns=42) == 42  # the planted 10**18 was not read
    assert f"refusing the epoch file {state}/epoch: a symbolic link" in caplog.text
    assert (state / "epoch").is_symlink() and elsewhere.read_text() == f"{10**18}\n"


@needs_root
@pytest.mark.parametrize("mode", [0o777, 0o1777])
def test_a_state_directory_others_can_write_is_neither_read_nor_written(
    tmp_path: Path, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "epoch").write_text(f"{10**18}\n")
    state.chmod(mode)
    assert next_epoch(state, now_ns=42) == 42
    assert f"refusing the epoch file {state}/epoch: directory {state} is writable by group or others" in caplog.text
    assert (state / "epoch").read_text() == f"{10**18}\n"
    assert not (state / "epoch.tmp").exists()


@needs_root
def test_an_epoch_file_of_another_user_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    (state / "epoch").write_text(f"{10**18}\n")
    os.chown(state / "epoch", 65534, 65534)
    assert next_epoch(state, now_ns=42) == 42
    assert "owned by uid 65534, not root" in caplog.text
