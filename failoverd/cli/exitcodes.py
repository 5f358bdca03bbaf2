"""How the programs end: sysexits(3) status codes and the error that carries one.

The original only promises ">0 if an error occurs". We use the BSD sysexits
values so that a script (or systemd's ``RestartPreventExitStatus=``) can tell
a mistake in the command line from a host that is not ready and from a daemon
that is already running, without parsing messages.
"""

from __future__ import annotations

EX_OK = 0
EX_USAGE = 64
"""Malformed options or arguments: port, facility, address, triplet, timing."""
EX_UNAVAILABLE = 69
"""A needed service is missing: another instance runs, or syslog is unreachable."""
EX_SOFTWARE = 70
"""An internal error (a bug): an exception nobody expected."""
EX_NOPERM = 77
"""Not run as root."""
EX_CONFIG = 78
"""The host or a configuration file is not as the arguments say: a missing
interface, a failed ``-n`` check, a malformed hostconfig, an unusable key file."""


class ProgramError(Exception):
    """A reason to stop before anything is started.

    ``str(error)`` is the complete message for stderr (without the program
    name); ``status`` the exit code.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UsageError(ProgramError):
    def __init__(self, message: str) -> None:
        super().__init__(EX_USAGE, message)


class ConfigError(ProgramError):
    def __init__(self, message: str) -> None:
        super().__init__(EX_CONFIG, message)
