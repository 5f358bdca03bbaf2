"""The programs' one argument parser: argparse whose errors are usage errors (exit 64).

argparse prints its own message and exits 2 on a bad argument; every program
here exits with sysexits' EX_USAGE (64) instead, and most of them report the
error as they report every other refusal. So :meth:`ArgumentParser.error`
raises :class:`ArgumentsError` and the program decides how to print it:

- the daemons and ipfailover print ``str(error)``, argparse's reason followed by
  the usage line, as every other :class:`~failoverd.cli.exitcodes.UsageError`;
- processfailover prints its own usage first (``usage_in_message=False``);
- failoverctl and NotifyFailover keep argparse's look (usage line, then
  ``PROG: reason``) through :func:`parse_or_exit`.

Error handling: only argparse's own errors pass through here; ``-h`` still
prints the help and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from failoverd.cli.exitcodes import EX_USAGE, UsageError


class ArgumentsError(UsageError):
    """argparse refused the command line: ``reason`` is its message, ``prog`` and ``usage`` the (sub)command's."""

    def __init__(self, reason: str, prog: str, usage: str, usage_in_message: bool) -> None:
        super().__init__(f"{reason}\n{usage}" if usage_in_message else reason)
        self.reason = reason
        self.prog = prog
        self.usage = usage


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument raises :class:`ArgumentsError` (exit 64) instead of exiting 2.

    ``usage_in_message``: the error's message ends with the usage line
    (default; processfailover prints its usage itself). Subcommands made with
    ``add_subparsers(parser_class=ArgumentParser)`` raise alike.
    """

    def __init__(self, *args: Any, usage_in_message: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.usage_in_message = usage_in_message

    def error(self, message: str) -> NoReturn:
        raise ArgumentsError(message, self.prog, self.format_usage().rstrip(), self.usage_in_message)


def parse_or_exit(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; on a bad argument argparse's look (usage, then ``PROG: reason``) and exit 64."""
    try:
        return parser.parse_args(argv)
    except ArgumentsError as error:
        print(error.usage, file=sys.stderr)
        print(f"{error.prog}: {error.reason}", file=sys.stderr)
        raise SystemExit(EX_USAGE) from None
