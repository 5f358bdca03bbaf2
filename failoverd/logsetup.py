"""Where the daemons' log lines go.

``-d`` and ``-n``: the terminal (stderr), everything down to DEBUG; with
``-d -L facility`` also syslog. ``-x`` and background mode: syslog only, at
INFO and above, through the standard library's SysLogHandler with the chosen
facility, so each datagram starts with ``<facility*8 + severity>``.

Everything the package logs goes through the ``failoverd`` logger (modules
use ``logging.getLogger(__name__)``); other libraries' loggers are left alone.
"""

from __future__ import annotations

import logging
import logging.handlers
import socket
import sys

from failoverd.config import DEFAULT_SYSLOG_SOCKET, RunMode
from failoverd.exitcodes import EX_UNAVAILABLE, ProgramError

FACILITY_CODES = {
    "daemon": logging.handlers.SysLogHandler.LOG_DAEMON,
    "auth": logging.handlers.SysLogHandler.LOG_AUTH,
    "user": logging.handlers.SysLogHandler.LOG_USER,
    **{f"local{n}": logging.handlers.SysLogHandler.LOG_LOCAL0 + n for n in range(8)},
}

PACKAGE_LOGGER = "failoverd"


def syslog_problem(address: str) -> str | None:
    """Why nothing can be sent to the syslog socket at ``address``, or None."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(address)
    except OSError as exc:
        return f"cannot reach syslog at {address}: {exc.strerror or exc}"
    finally:
        probe.close()
    return None


def syslog_handler(program: str, facility: str, address: str = DEFAULT_SYSLOG_SOCKET) -> logging.Handler:
    """A handler writing ``<PRI>program[pid]: message`` to the syslog socket.

    Raises ProgramError (69) when the socket cannot be reached now: the
    standard handler would silently drop lines until it can, but a daemon
    starting with a mistyped socket must say so while it has a terminal.
    Once running, a syslog restart is survived (the handler reconnects).
    """
    problem = syslog_problem(address)
    if problem is not None:
        raise ProgramError(EX_UNAVAILABLE, f"{problem}; run with -d to log to the terminal")
    handler = logging.handlers.SysLogHandler(address=address, facility=FACILITY_CODES[facility])
    # %(process)d is taken when each line is logged, so it is the daemon's pid
    # after moving to the background, not the launcher's.
    handler.setFormatter(logging.Formatter(f"{program}[%(process)d]: %(message)s"))
    return handler


def terminal_handler(program: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s.%(msecs)03d {program} %(levelname)s %(message)s", "%H:%M:%S")
    )
    return handler


def configure(
    program: str,
    run_mode: RunMode,
    facility: str,
    *,
    syslog_requested: bool = False,
    syslog_address: str = DEFAULT_SYSLOG_SOCKET,
) -> logging.Logger:
    """Point the package logger at the targets for ``run_mode``; return it.

    Replaces (and closes) any handlers a previous call installed, so calling
    it again after moving to the background gives fresh sockets.
    """
    logger = logging.getLogger(PACKAGE_LOGGER)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.propagate = False
    handlers: list[logging.Handler] = []
    if run_mode in ("debug", "no_run"):
        handlers.append(terminal_handler(program))
        level = logging.DEBUG
    else:
        level = logging.INFO
    if run_mode in ("daemon", "no_fork") or (run_mode == "debug" and syslog_requested):
        handlers.append(syslog_handler(program, facility, syslog_address))
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(level)
    return logger


def shutdown() -> None:
    """Close the package logger's handlers (and their sockets)."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
