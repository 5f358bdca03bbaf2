"""The shared heartbeat key, read from a file only root can read or change.

The key is the file's bytes with surrounding whitespace stripped (so a key
written with ``echo`` or an editor's trailing newline still matches the peer's),
at least :data:`failoverd.core.wire.MIN_KEY_LENGTH` bytes long.

Whoever can read the key can forge heartbeats, and whoever can change the
file chooses the key: the file must be root's (the daemon's own user's when
it does not run as root) with mode exactly 0600 or 0400, as ssh insists on
for a private key, and every directory above it must pass
:mod:`failoverd.system.trusted`'s rules. A key symlinked from a secrets
directory is fine when the link and where it points pass them too.

:func:`read_key` is the one rule, used alike at start (the program's host
check and the runtime) and on SIGHUP, so a file refused at start is refused
on reload and the other way round.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from failoverd.core.wire import MIN_KEY_LENGTH
from failoverd.system.trusted import Untrusted, open_trusted

MAX_KEY_FILE = 64 * 1024
KEY_FILE_MODES = (0o600, 0o400)


class KeyFileError(Exception):
    """The key file cannot be used; the message says why and names the file."""


def read_key(path: Path | str) -> bytes:
    """The key in ``path``, or :class:`KeyFileError`.

    Error handling: a missing or unreadable file, a path through a directory
    or link another user could change, a file that is not a regular file or
    not root's, any mode other than 0600 or 0400, and a key shorter than the
    minimum are each refused with their own message (the mode refusal says
    how to fix it).
    """
    path = Path(path)
    try:
        fd, info = open_trusted(path, "file")
    except Untrusted as error:
        raise KeyFileError(f"key file {path}: {error.explanation}") from None
    except OSError as error:
        raise KeyFileError(f"cannot read key file {path}: {error.strerror or error}") from None
    try:
        mode = stat.S_IMODE(info.st_mode)
        if mode not in KEY_FILE_MODES:
            raise KeyFileError(
                f"key file {path} has mode {mode:04o} ({_access(mode)}); a heartbeat key must be "
                f"readable by its owner only, mode 0600 or 0400: chmod 600 {path}"
            )
        # The checked descriptor is O_PATH; reading goes through it, not through the name again.
        try:
            with open(f"/proc/self/fd/{fd}", "rb") as handle:
                data = handle.read(MAX_KEY_FILE + 1)
        except OSError as error:
            raise KeyFileError(f"cannot read key file {path}: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"key file {path} is larger than 64 KiB; is it the right file?")
    key = data.strip()
    if len(key) < MIN_KEY_LENGTH:
        raise KeyFileError(
            f"key file {path} holds {len(key)} bytes after stripping whitespace; "
            f"a heartbeat key needs at least {MIN_KEY_LENGTH}"
        )
    return key


def _access(mode: int) -> str:
    """Who besides the owner may do what, in words: "readable by everyone", "writable by its group"."""
    words = []
    for who, shift in (("its group", 3), ("everyone", 0)):
        bits = (mode >> shift) & 0o7
        if bits:
            can = [word for bit, word in ((4, "readable"), (2, "writable"), (1, "executable")) if bits & bit]
            words.append(f"{' and '.join(can)} by {who}")
    if mode & 0o7000:
        words.append("set-id or sticky bits set")
    if mode & 0o100:
        words.append("executable by its owner")
    if not mode & 0o400:
        words.append("not readable by its owner")
    return ", ".join(words)
