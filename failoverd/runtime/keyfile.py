"""The shared heartbeat key, read from a file an administrator controls.

The key is the file's bytes with surrounding whitespace stripped (so a key
written with ``echo`` or an editor's trailing newline still matches the peer's),
at least :data:`failoverd.core.wire.MIN_KEY_LENGTH` bytes long. A key anybody on
the host can read is no secret: such a file is refused, as ssh refuses a
private key with loose permissions.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from failoverd.core.wire import MIN_KEY_LENGTH


class KeyFileError(Exception):
    """The key file cannot be used; the message says why and names the file."""


def read_key(path: Path | str) -> bytes:
    """The key in ``path``, or :class:`KeyFileError`.

    Error handling: a missing or unreadable file, a world-readable or
    world-writable file, a file that is not a regular file, and a key shorter
    than the minimum are each refused with their own message.
    """
    path = Path(path)
    try:
        # O_NOFOLLOW is not used: a key symlinked from a secrets directory is
        # common; the checks below apply to the file it points to.
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise KeyFileError(f"key file {path} is not a regular file")
            if info.st_mode & (stat.S_IROTH | stat.S_IWOTH):
                raise KeyFileError(
                    f"key file {path} is readable or writable by every user (mode {stat.S_IMODE(info.st_mode):04o}); "
                    f"restrict it with: chmod 600 {path}"
                )
            data = handle.read(64 * 1024 + 1)
    except KeyFileError:
        raise
    except OSError as error:
        raise KeyFileError(f"cannot read key file {path}: {error.strerror or error}") from None
    if len(data) > 64 * 1024:
        raise KeyFileError(f"key file {path} is larger than 64 KiB; is it the right file?")
    key = data.strip()
    if len(key) < MIN_KEY_LENGTH:
        raise KeyFileError(
            f"key file {path} holds {len(key)} bytes after stripping whitespace; "
            f"a heartbeat key needs at least {MIN_KEY_LENGTH}"
        )
    return key
