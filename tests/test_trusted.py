"""Trusted paths (failoverd.system.trusted), with real directories, links and owners.

Charter: everything lives below pytest's tmp_path (root's, 0700, inside the
sticky /tmp); "another user" is nobody (uid 65534), made the owner of a file
or directory with chown. The rules need root to be tested: they skip without it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from failoverd.system.trusted import MAX_SYMLINKS, Untrusted, open_state_file, open_trusted

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership rules need root")


@pytest.fixture
def base(tmp_path: Path) -> Path:
    directory = tmp_path / "base"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    return directory


def mkdir(path: Path, mode: int = 0o755, owner: int = 0) -> Path:
    path.mkdir()
    path.chmod(mode)
    os.chown(path, owner, owner)
    return path


def write(path: Path, mode: int = 0o644, owner: int = 0) -> Path:
    path.write_text("x\n")
    path.chmod(mode)
    os.chown(path, owner, owner)
    return path


def resolved(path: Path) -> str:
    fd, _ = open_trusted(path)
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def refusal(path: Path, kind: str = "file") -> str:
    with pytest.raises(Untrusted) as caught:
        open_trusted(path, kind)  # type: ignore[arg-type]
    return str(caught.value)


def test_a_root_owned_path_is_opened_and_the_descriptor_is_the_file(base: Path) -> None:
    target = write(mkdir(base / "etc") / "file")
    fd, info = open_trusted(target)
    try:
        assert os.path.samestat(info, os.stat(target))
        assert os.readlink(f"/proc/self/fd/{fd}") == str(target)
    finally:
        os.close(fd)


def test_a_directory_others_can_write_is_refused_naming_it(base: Path) -> None:
    shared = mkdir(base / "shared", 0o775)
    target = write(mkdir(shared / "inner") / "file")
    assert refusal(target) == f"directory {shared} is writable by group or others (mode 0775)"


def test_a_directory_of_another_user_is_refused_even_if_only_they_can_write_it(base: Path) -> None:
    home = mkdir(base / "home", 0o755, owner=NOBODY)
    target = write(home / "file")
    assert refusal(target) == f"directory {home} is owned by uid 65534, not root"


def test_a_sticky_directory_is_passed_only_towards_an_entry_of_roots(base: Path) -> None:
    sticky = mkdir(base / "tmp", 0o1777)
    mine = write(mkdir(sticky / "root-dir") / "file")
    assert resolved(mine) == str(mine)
    theirs = mkdir(sticky / "nobody-dir", 0o755, owner=NOBODY)
    assert refusal(write(theirs / "file")) == f"directory {theirs} is owned by uid 65534, not root"


def test_the_last_component_must_be_roots_and_of_the_kind_asked(base: Path) -> None:
    assert refusal(write(base / "theirs", owner=NOBODY)) == "owned by uid 65534, not root"
    assert refusal(mkdir(base / "dir")) == "not a regular file"
    with pytest.raises(NotADirectoryError):
        open_trusted(write(base / "file"), "directory")


def test_symbolic_links_are_followed_when_they_and_their_targets_are_trusted(base: Path) -> None:
    secrets = mkdir(base / "secrets", 0o700)
    target = write(secrets / "key", 0o600)
    (base / "relative").symlink_to("secrets/key")
    (base / "absolute").symlink_to(target)
    (base / "chain").symlink_to("relative")
    for name in ("relative", "absolute", "chain"):
        assert resolved(base / name) == str(target)


def test_a_link_into_a_directory_another_user_controls_is_refused(base: Path) -> None:
    attacker = mkdir(base / "attacker", 0o755, owner=NOBODY)
    (attacker / "link").symlink_to("/bin/true")  # a root-owned file, which an old check would have passed
    (base / "hook").symlink_to(attacker / "link")
    assert refusal(base / "hook") == f"directory {attacker} is owned by uid 65534, not root"


def test_a_link_owned_by_another_user_is_refused(base: Path) -> None:
    write(base / "file")
    link = base / "link"
    link.symlink_to("file")
    os.lchown(link, NOBODY, NOBODY)
    assert refusal(link) == "owned by uid 65534, not root"


def test_dot_dot_is_the_physical_parent_as_in_the_kernel(base: Path) -> None:
    deep = mkdir(mkdir(base / "a") / "b")
    target = write(base / "a" / "file")
    (base / "to-b").symlink_to(deep)
    # Lexically "to-b/../file" would be base/file, which does not exist; physically it is a/file.
    assert resolved(base / "to-b" / ".." / "file") == str(target)
    assert resolved(base / "a" / "b" / ".." / ".." / ".." / "base" / "a" / "file") == str(target)


def test_a_link_loop_is_an_error_not_a_hang(base: Path) -> None:
    (base / "one").symlink_to("two")
    (base / "two").symlink_to("one")
    with pytest.raises(OSError) as caught:
        open_trusted(base / "one")
    assert caught.value.errno == errno.ELOOP
    chain = [base / f"l{i}" for i in range(MAX_SYMLINKS + 1)]  # l0 -> l1 -> ... -> l40 -> end
    write(base / "end")
    for link, target in zip(chain, chain[1:] + [base / "end"]):
        link.symlink_to(target.name)
    assert resolved(chain[1]) == str(base / "end")  # as many links as the kernel follows
    with pytest.raises(OSError):
        open_trusted(chain[0])  # one more


def test_missing_components_raise_file_not_found_naming_them(base: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        open_trusted(base / "absent" / "file")
    assert caught.value.filename == str(base / "absent")


def test_a_state_file_is_created_and_opened_without_following_links(base: Path) -> None:
    state = mkdir(base / "state", 0o700)
    fd = open_state_file(state, "pid", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"1\n")
    finally:
        os.close(fd)
    assert (state / "pid").read_text() == "1\n"
    victim = write(base / "victim")
    (state / "link").symlink_to(victim)
    with pytest.raises(Untrusted) as caught:
        open_state_file(state, "link", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    assert str(caught.value) == "a symbolic link (state files are never followed)"
    assert victim.read_text() == "x\n"


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_a_state_file_needs_a_directory_only_root_can_write_sticky_or_not(base: Path, mode: int) -> None:
    state = mkdir(base / "state", mode)
    with pytest.raises(Untrusted) as caught:
        open_state_file(state, "epoch", os.O_RDONLY)
    assert str(caught.value).startswith(f"directory {state} is writable by group or others (mode {mode:04o})")
    if mode & 0o1000:  # passed by the general rule, refused by the state-file rule
        assert str(caught.value).endswith(": state files need a directory only root can write")


def test_a_state_file_of_another_user_is_refused(base: Path) -> None:
    state = mkdir(base / "state", 0o755)
    write(state / "epoch", owner=NOBODY)
    with pytest.raises(Untrusted, match="owned by uid 65534, not root"):
        open_state_file(state, "epoch", os.O_RDONLY)


def test_no_descriptor_is_left_open(base: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    shared = mkdir(base / "shared", 0o777)
    for path in (write(base / "ok"), write(shared / "f"), base / "absent", base / "ok" / "x"):
        try:
            os.close(open_trusted(path)[0])
        except (Untrusted, OSError):
            pass
    assert set(os.listdir("/proc/self/fd")) == before
