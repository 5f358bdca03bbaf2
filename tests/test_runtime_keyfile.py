"""The heartbeat key file: what is accepted, and each refusal with its reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from failoverd.runtime.keyfile import KeyFileError, read_key


def write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def test_key_is_the_file_contents_without_surrounding_whitespace(tmp_path: Path) -> None:
    key = write(tmp_path / "key", b"  0123456789abcdef-secret\n\n")
    assert read_key(key) == b"0123456789abcdef-secret"


def test_group_readable_key_is_accepted(tmp_path: Path) -> None:
    assert read_key(write(tmp_path / "key", b"0123456789abcdef", 0o640)) == b"0123456789abcdef"


@pytest.mark.parametrize("mode", [0o644, 0o602, 0o666])
def test_world_readable_or_writable_key_is_refused(tmp_path: Path, mode: int) -> None:
    key = write(tmp_path / "key", b"0123456789abcdef0123", mode)
    with pytest.raises(KeyFileError, match="every user.*chmod 600"):
        read_key(key)


def test_short_key_is_refused_with_its_length(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="holds 15 bytes.*at least 16"):
        read_key(write(tmp_path / "key", b"0123456789abcde\n"))


def test_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"cannot read key file .*nokey"):
        read_key(tmp_path / "nokey")


def test_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError):
        read_key(directory)
