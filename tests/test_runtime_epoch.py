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
