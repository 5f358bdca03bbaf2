"""Paths only root can change: what the daemons run, read their key from, and keep state in.

A path is *trusted* when nobody but root (or the daemon's own user, when it
does not run as root) can change what it names. It is resolved here one
component at a time from ``/``, each component opened with ``O_PATH |
O_NOFOLLOW`` relative to the directory before it and checked on its
descriptor (``fstat``), so what is checked is what the next step uses, and
a rename or a swapped symbolic link between a check and a use cannot slip
another file in. The rules:

- every directory on the way is owned by root and not writable by group or
  others; a *sticky* directory writable by others (``/tmp``) is passed only
  when the entry below it is root's, because the sticky bit lets nobody but
  that entry's owner rename or remove it;
- every symbolic link on the way is root's and lies in such a directory; it
  is followed (at most :data:`MAX_SYMLINKS` of them), and where it points is
  checked by the same rules, from ``/`` for an absolute target;
- the last component is root's; what its mode must be is the caller's rule
  (a hook, a key and a state file each have their own).

:func:`open_trusted` returns the descriptor of the last component, with
its ``stat``; :func:`open_state_file` opens a file in a directory that only
root can write (no sticky exception: another user could otherwise create the
name first), with ``O_NOFOLLOW``.

Error handling: a path that breaks a rule raises :class:`Untrusted`, naming
the component and the reason; a component that cannot be opened raises the
``OSError`` (``FileNotFoundError`` for a missing one), so callers can tell
"absent" from "refused".

Resource handling: the descriptors of the directories walked through are
closed before a function returns; the one returned is the caller's to close
(all are close-on-exec).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

MAX_SYMLINKS = 40  # as the kernel's own path walk (ELOOP beyond)

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC

Kind = Literal["file", "directory"]


class Untrusted(Exception):
    """``path`` cannot be trusted: its component ``component`` is ``reason``."""

    def __init__(self, path: Path, component: Path, what: str, reason: str) -> None:
        self.path = path
        self.component = component
        self.what = what
        self.reason = reason
        super().__init__(self.explanation)

    @property
    def explanation(self) -> str:
        """The reason alone when the path itself is at fault, else naming the component that is."""
        if self.component == self.path:
            return self.reason
        return f"{self.what} {self.component} is {self.reason}"

    def about(self, path: Path) -> Untrusted:
        """The same refusal, explained as a refusal of ``path`` (a file in the directory refused)."""
        return Untrusted(path, self.component, self.what, self.reason)


def trusted_owners() -> frozenset[int]:
    """Root, and the daemon's own user when it is not root (-n as an ordinary user, tests)."""
    return frozenset({0, os.geteuid()})


def writable_by_others(info: os.stat_result) -> str | None:
    """The reason ``info`` is writable by group or others, or None."""
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _owner_problem(info: os.stat_result) -> str | None:
    if info.st_uid not in trusted_owners():
        return f"owned by uid {info.st_uid}, not root"
    return None


def _what(info: os.stat_result) -> str:
    if stat.S_ISDIR(info.st_mode):
        return "directory"
    if stat.S_ISLNK(info.st_mode):
        return "symbolic link"
    return "file"


def open_trusted(path: Path | str, kind: Kind = "file") -> tuple[int, os.stat_result]:
    """An ``O_PATH`` descriptor of ``path`` and its ``fstat``, once every component passed the rules.

    ``kind`` is what the last component must be: a regular ``"file"`` or a
    ``"directory"`` (which must then also pass the directory rule). A
    relative ``path`` is taken from the working directory, which is walked
    from ``/`` like the rest.
    """
    requested = Path(path) if Path(path).is_absolute() else Path.cwd() / path  # ".." kept, as the kernel
    pending = list(reversed(requested.parts[1:]))  # a stack: the next component is the last one
    fd, current = _open_root(requested)
    try:
        followed = 0
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                # The physical parent, as the kernel's walk; checked again like any directory.
                parent = os.open("..", _PATH_FLAGS | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd, current = parent, current.parent
                _check_directory(requested, current, os.fstat(fd))
                continue
            component = current / name
            try:
                child = os.open(name, _PATH_FLAGS, dir_fd=fd)
            except OSError as error:
                raise OSError(error.errno, error.strerror, str(component)) from None
            try:
                info = os.fstat(child)
                # Every entry must be root's: below a sticky directory that is what keeps
                # it in place, everywhere else it is the rule itself.
                problem = _owner_problem(info)
                if problem is not None:
                    raise Untrusted(requested, component, _what(info), problem)
                if stat.S_ISLNK(info.st_mode):
                    followed += 1
                    if followed > MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(requested))
                    target = Path(os.readlink(name, dir_fd=fd))
                    pending.extend(reversed(target.parts[1:] if target.is_absolute() else target.parts))
                    if target.is_absolute():
                        os.close(fd)
                        fd, current = _open_root(requested)
                    continue
                if stat.S_ISDIR(info.st_mode):
                    _check_directory(requested, component, info)
                elif pending:
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(component))
                os.close(fd)
                fd, child, current = child, -1, component
            finally:
                if child >= 0:
                    os.close(child)
        info = os.fstat(fd)
        if kind == "directory" and not stat.S_ISDIR(info.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(requested))
        if kind == "file" and not stat.S_ISREG(info.st_mode):
            raise Untrusted(requested, current, _what(info), "not a regular file")
        result, fd = fd, -1
        return result, info
    finally:
        if fd >= 0:
            os.close(fd)


def _open_root(requested: Path) -> tuple[int, Path]:
    fd = os.open("/", _PATH_FLAGS | os.O_DIRECTORY)
    try:
        _check_directory(requested, Path("/"), os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd, Path("/")


def _check_directory(requested: Path, component: Path, info: os.stat_result) -> None:
    """Raise :class:`Untrusted` unless ``component`` is root's and only root can write it (or it is sticky)."""
    problem = _owner_problem(info)
    if problem is not None:
        raise Untrusted(requested, component, "directory", problem)
    problem = writable_by_others(info)
    if problem is not None and not info.st_mode & stat.S_ISVTX:
        raise Untrusted(requested, component, "directory", problem)


@contextmanager
def trusted_directory(path: Path | str) -> Iterator[int]:
    """An ``O_PATH`` descriptor of a trusted directory that only root can write (sticky or not).

    For state files: a directory where another user may create names is
    refused even when sticky, because that user could create the file first.
    """
    fd, info = open_trusted(path, "directory")
    try:
        problem = writable_by_others(info)
        if problem is not None:
            requested = Path(path)
            reason = f"{problem}: state files need a directory only root can write"
            raise Untrusted(requested, requested, "directory", reason)
        yield fd
    finally:
        os.close(fd)


def open_state_file(directory: Path | str, name: str, flags: int, mode: int = 0o600) -> int:
    """``os.open`` of ``directory/name`` with ``O_NOFOLLOW``, in a directory only root can write.

    The file, when it exists, must be a regular file and root's. ``flags``
    are ``os.open`` flags (``O_CLOEXEC`` and ``O_NOFOLLOW`` are added).
    A symbolic link at ``name`` is refused (:class:`Untrusted`), never followed.
    """
    path = Path(directory) / name
    try:
        with trusted_directory(directory) as dir_fd:
            try:
                fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
            except OSError as error:
                if error.errno == errno.ELOOP:
                    raise Untrusted(path, path, "file", "a symbolic link (state files are never followed)") from None
                raise
    except Untrusted as error:
        raise error.about(path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Untrusted(path, path, _what(info), "not a regular file")
        problem = _owner_problem(info)
        if problem is not None:
            raise Untrusted(path, path, "file", problem)
    except BaseException:
        os.close(fd)
        raise
    return fd
