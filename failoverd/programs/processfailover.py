"""ProcessFailover: take or give up failover addresses by hand, exactly as the daemon does.

    ProcessFailover [options] {acquire | down | release | up} interface:ip_address[/mask] ...

``acquire`` (alias ``down``: the peer is down) adds the addresses to the named
interfaces; ``release`` (alias ``up``: the peer is up) removes them. Each
address goes through :mod:`failoverd.system.takeover`, the procedure the
daemons use: its Test hook, its PreAcq/PreRel hooks, the address change, a
gratuitous ARP burst after acquiring, its PostAcq/PostRel hooks (see
docs/hooks.md). What happens is logged on stderr.

Exit status (sysexits): 0 every address was changed or its Test hook asked
for notification only; 1 some address change failed (the others were still
made); 64 usage (bad option, command or triplet); 70 an internal error (a
bug); 77 not run as root; 78 an interface that does not exist on this host
(nothing was changed).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import trio

from failoverd import __version__
from failoverd.cli import logsetup, preflight
from failoverd.cli.argparser import ArgumentParser
from failoverd.cli.config import DEFAULT_HOOK_DIR, DEFAULT_HOOK_TIMEOUT
from failoverd.cli.exitcodes import EX_OK, EX_SOFTWARE, EX_USAGE, ProgramError, UsageError
from failoverd.cli.launch import require_root
from failoverd.cli.options import (  # the daemons' own checks, so diagnostics match
    count_at_least,
    seconds,
    triplet_argument,
)
from failoverd.system.arp import Announcer
from failoverd.system.hooks import HookRunner
from failoverd.system.netlink import AddressManager
from failoverd.system.takeover import Takeover

PROG = "ProcessFailover"
EX_CHANGE_FAILED = 1
"""Some address could not be added or removed; the log says which and why."""

COMMANDS = {"acquire": "acquire", "down": "acquire", "release": "release", "up": "release"}
USAGE = f"{PROG} [options] {{acquire|down|release|up}} interface:ip_address[/mask] ..."


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        usage_in_message=False,
        prog=PROG,
        usage=USAGE,
        add_help=False,
        description="Add (acquire, down) or remove (release, up) failover addresses, running the "
        "administrator's hooks, exactly as failoverd does when the master fails or returns.",
    )
    parser.add_argument("command", metavar="{acquire|down|release|up}")
    parser.add_argument("triplets", metavar="interface:ip_address[/mask]", nargs="*")
    parser.add_argument("-d", "--debug", action="store_true", help="log every step, down to debug detail")
    parser.add_argument("--hook-dir", metavar="DIR", type=Path, default=DEFAULT_HOOK_DIR,
                        help=f"hooks for an address live in DIR/<address>/ (default {DEFAULT_HOOK_DIR})")
    parser.add_argument("--hook-timeout", metavar="SECONDS", type=seconds, default=DEFAULT_HOOK_TIMEOUT,
                        help=f"longest a hook may run before it is killed (default {DEFAULT_HOOK_TIMEOUT:g})")
    parser.add_argument("--garp-count", metavar="N", type=count_at_least(0), default=3,
                        help="gratuitous ARPs sent after adding an address (default 3; 0: none)")
    parser.add_argument("--garp-spacing", metavar="SECONDS", type=seconds, default=0.2,
                        help="seconds between gratuitous ARPs (default 0.2)")
    parser.add_argument("-h", "--help", action="help", help="print this summary and exit")
    parser.add_argument("-v", "--version", action="version", version=f"{PROG} {__version__}",
                        help="print the version and exit")
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.command not in COMMANDS:
        raise UsageError(f"unknown command {args.command!r}: expected acquire, down, release or up")
    if not args.triplets:
        raise UsageError("no interface:ip_address[/mask] given")
    args.parsed = [triplet_argument(text, "pub_addr") for text in args.triplets]
    seen: dict[object, str] = {}
    for text, triplet in zip(args.triplets, args.parsed):
        if triplet.address in seen:
            raise UsageError(f"pub_addr {triplet.address} given twice: {seen[triplet.address]!r} and {text!r}")
        seen[triplet.address] = text
    return args


def run(argv: Sequence[str]) -> int:
    args = parse(argv)
    require_root(PROG, "it changes this host's addresses and runs hooks as root")
    preflight.require_interfaces(args.parsed, "pub_addr")
    logger = logging.getLogger(logsetup.PACKAGE_LOGGER)
    logger.addHandler(logsetup.terminal_handler(PROG))
    logger.setLevel(logging.DEBUG if args.debug else logging.INFO)
    logger.propagate = False
    takeover = Takeover(
        AddressManager(),
        HookRunner(args.hook_dir, timeout=args.hook_timeout),
        Announcer(count=args.garp_count, spacing=args.garp_spacing),
    )
    if COMMANDS[args.command] == "acquire":
        failed = trio.run(takeover.acquire, args.parsed).failed
    else:
        failed = trio.run(takeover.release, args.parsed).failed
    return EX_CHANGE_FAILED if failed else EX_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except ProgramError as error:
        if error.status == EX_USAGE:
            print(f"usage: {USAGE}", file=sys.stderr)
        print(f"{PROG}: {error}", file=sys.stderr)
        return error.status
    except Exception:  # a bug: say so, and keep exit 1 meaning "an address change failed"
        traceback.print_exc()
        print(f"{PROG}: internal error (a bug); please report the traceback above", file=sys.stderr)
        return EX_SOFTWARE
    finally:
        logsetup.shutdown()


if __name__ == "__main__":
    sys.exit(main())
