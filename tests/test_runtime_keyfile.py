"""The heartbeat key file: what is accepted, and each refusal with its reason.

One rule (failoverd.system.keyfile.read_key) at every door: the program's
host check at start, the runtime's load, and SIGHUP's reload. The doors are
exercised for real: the failoverd program is started, and the reload is the
function the signal handler calls.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from failoverd.cli import preflight
from failoverd.cli.exitcodes import EX_CONFIG, ConfigError, ProgramError
from failoverd.runtime import lifecycle
from failoverd.runtime.backup import load_key
from failoverd.system.keyfile import KeyFileError, read_key

KEY = b"0123456789abcdef0123"
NOBODY = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="ownership rules need root")


def write(path: Path, data: bytes = KEY, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def test_key_is_the_file_contents_without_surrounding_whitespace(tmp_path: Path) -> None:
    key = write(tmp_path / "key", b"  0123456789abcdef-secret\n\n")
    assert read_key(key) == b"0123456789abcdef-secret"


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    assert read_key(write(tmp_path / "key", mode=mode)) == KEY


@pytest.mark.parametrize(
    "mode, who",
    [
        (0o640, "readable by its group"),
        (0o660, "readable and writable by its group"),
        (0o644, "readable by its group, readable by everyone"),
        (0o602, "writable by everyone"),
        (0o700, "executable by its owner"),
        (0o4600, "set-id or sticky bits set"),
        (0o200, "not readable by its owner"),
    ],
)
def test_any_other_mode_is_refused_saying_the_mode_and_the_fix(tmp_path: Path, mode: int, who: str) -> None:
    key = write(tmp_path / "key", mode=mode)
    with pytest.raises(KeyFileError) as caught:
        read_key(key)
    assert str(caught.value) == (
        f"key file {key} has mode {mode:04o} ({who}); a heartbeat key must be readable by its owner only, "
        f"mode 0600 or 0400: chmod 600 {key}"
    )


@needs_root
def test_a_key_of_another_user_is_refused(tmp_path: Path) -> None:
    key = write(tmp_path / "key")
    os.chown(key, NOBODY, NOBODY)
    with pytest.raises(KeyFileError, match=r"key file .*key: owned by uid 65534, not root"):
        read_key(key)


@needs_root
def test_a_key_linked_from_a_trusted_secrets_directory_is_accepted(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    write(secrets / "heartbeat.key")
    link = tmp_path / "key"
    link.symlink_to(secrets / "heartbeat.key")
    assert read_key(link) == KEY


@needs_root
def test_a_key_reached_through_a_directory_another_user_controls_is_refused(tmp_path: Path) -> None:
    # nobody cannot read the key, but can swap the name for a key of their choosing... if it were trusted.
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    write(theirs / "key")
    link = tmp_path / "key"
    link.symlink_to(theirs / "key")
    with pytest.raises(KeyFileError) as caught:
        read_key(link)
    assert str(caught.value) == f"key file {link}: directory {theirs} is owned by uid 65534, not root"
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    key = write(shared / "key")
    with pytest.raises(KeyFileError, match=rf"key file {key}: directory {shared} is writable by group or others"):
        read_key(key)


def test_short_key_is_refused_with_its_length(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"holds 15 bytes.*at least 16"):
        read_key(write(tmp_path / "key", b"0123456789abcde\n"))


def test_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"cannot read key file .*nokey: No such file or directory"):
        read_key(tmp_path / "nokey")


def test_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_key(directory)


# --- the same rule at start and on SIGHUP --------------------------------------------


LOOSE_MODES = [0o640, 0o660]


@pytest.mark.parametrize("mode", LOOSE_MODES)
def test_a_loose_key_is_refused_by_the_host_check_and_the_runtime_at_start(tmp_path: Path, mode: int) -> None:
    key = write(tmp_path / "key", mode=mode)
    with pytest.raises(ConfigError, match=f"has mode {mode:04o}"):
        preflight.require_key_file(key)

    class Config:
        key_file = key

    with pytest.raises(ProgramError) as caught:
        load_key(Config())
    assert caught.value.status == EX_CONFIG


@needs_root
@pytest.mark.parametrize("mode", LOOSE_MODES)
def test_the_failoverd_program_refuses_a_loose_key_before_starting(tmp_path: Path, mode: int) -> None:
    key = write(tmp_path / "key", mode=mode)
    pid_file = tmp_path / "failoverd.pid"
    result = subprocess.run(
        [sys.executable, "-m", "failoverd.programs.failoverd", "-x", "--key-file", str(key),
         "--pid-file", str(pid_file), "--state-dir", str(tmp_path / "state"),
         "--control-socket", str(tmp_path / "control"), "192.0.2.9", "lo:192.0.2.1"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == EX_CONFIG, result.stderr
    assert f"failoverd: key file {key} has mode {mode:04o}" in result.stderr
    assert f"chmod 600 {key}" in result.stderr
    assert not pid_file.exists(), "nothing may start after the refusal"


@pytest.mark.parametrize("mode", LOOSE_MODES)
def test_sighup_refuses_a_loose_key_and_keeps_the_one_in_use(
    tmp_path: Path, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    key = write(tmp_path / "key", b"a-new-key-0123456789", mode=mode)
    installed: list[bytes] = []
    assert lifecycle.reload_key(key, KEY, installed.append) == KEY
    assert installed == []
    assert f"SIGHUP: key file {key} has mode {mode:04o}" in caplog.text
    assert "still using the key read before" in caplog.text
    os.chmod(key, 0o600)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert lifecycle.reload_key(key, KEY, installed.append) == b"a-new-key-0123456789"
    assert installed == [b"a-new-key-0123456789"]
