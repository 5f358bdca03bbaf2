"""ipfailover: the boot-time launcher, in place of the original's IPFailover
startup item.

It reads a hostconfig file (default /etc/hostconfig) and the environment and
replaces itself (exec) with the daemon the variables ask for:

- ``FAILOVER_PEER_IP`` + ``FAILOVER_PEER_IP_PAIRS`` →
  ``failoverd [options] $FAILOVER_PEER_IP $FAILOVER_PEER_IP_PAIRS``
- ``FAILOVER_BCAST_IPS`` → ``heartbeatd [options] $FAILOVER_BCAST_IPS``

Options for the daemon come from, in order: ``FAILOVERD_OPTIONS`` /
``HEARTBEATD_OPTIONS`` (split like a shell command line), then whatever
follows ``--`` on ipfailover's own command line (the systemd units pass
``-- -x`` there). Every other ``FAILOVER_*`` variable of the file is exported to
the daemon, so ``FAILOVER_EMAIL_RECIPIENT`` reaches NotifyFailover. A
variable set in the environment overrides the file.

A host configured as both master and backup must say which to start with
``--role``; one configured as neither has nothing to start (exit 0, like the
original startup item), unless ``--role`` demanded a role (exit 78).

Exit status, before the exec (after it, the daemon's own): 0 nothing to
start, or ``--dry-run``; 64 usage; 78 any problem in the file or the
variables (a damaged file included), also a configuration too large to be a
command line (E2BIG); 69 the daemon could not be started otherwise; 70 an
internal error. The systemd units restart on neither 64 nor 78.

SIGHUP is ignored from the start, and the daemon inherits that until its own
handler takes over: ``systemctl reload`` right after a start would otherwise
kill the process by a signal systemd counts as a clean exit (no restart).
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import shutil
import signal
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from failoverd import __version__
from failoverd.cli import hostconfig
from failoverd.cli.argparser import ArgumentParser
from failoverd.cli.exitcodes import EX_CONFIG, EX_OK, EX_SOFTWARE, EX_UNAVAILABLE, ConfigError, ProgramError

DEFAULT_HOSTCONFIG = Path("/etc/hostconfig")

BACKUP_KEYS = ("FAILOVER_PEER_IP", "FAILOVER_PEER_IP_PAIRS", "FAILOVERD_OPTIONS")
MASTER_KEYS = ("FAILOVER_BCAST_IPS", "HEARTBEATD_OPTIONS")
NOTIFY_KEYS = ("FAILOVER_EMAIL_RECIPIENT",)


@dataclass(frozen=True)
class Launch:
    program: str
    arguments: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)
    """Variables to add to the daemon's environment."""

    def command_line(self, executable: Sequence[str]) -> list[str]:
        return [*executable, *self.arguments]


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="ipfailover",
        allow_abbrev=False,
        description="Start failoverd or heartbeatd as /etc/hostconfig says (the original's IPFailover startup item).",
        epilog="Variables: FAILOVER_PEER_IP, FAILOVER_PEER_IP_PAIRS, FAILOVERD_OPTIONS (backup); "
        "FAILOVER_BCAST_IPS, HEARTBEATD_OPTIONS (master); FAILOVER_EMAIL_RECIPIENT (both). "
        "The environment overrides the file. See docs/programs.md.",
    )
    parser.add_argument("--hostconfig", metavar="FILE", type=Path,
                        help=f"hostconfig file to read (default {DEFAULT_HOSTCONFIG}; a missing default is skipped)")
    parser.add_argument("--role", choices=("auto", "backup", "master"), default="auto",
                        help="which daemon to start (default: the one that is configured)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the command line that would run, and exit")
    parser.add_argument("-v", "--version", action="version", version=f"ipfailover {__version__}")
    parser.add_argument("daemon_options", nargs="*", metavar="-- daemon options",
                        help="extra options for the daemon, after --, e.g. -- -x")
    return parser


def _words(variable: str, value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise ConfigError(f"{variable}: cannot split {value!r}: {exc}") from None


def read_settings(path: Path | None, environment: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The merged settings, and every FAILOVER_* variable to export."""
    if path is None:
        file_values = hostconfig.read(DEFAULT_HOSTCONFIG, missing_ok=True)
    else:
        file_values = hostconfig.read(path)
    settings = hostconfig.merged(file_values, environment, BACKUP_KEYS + MASTER_KEYS + NOTIFY_KEYS)
    consumed = {"FAILOVER_PEER_IP", "FAILOVER_PEER_IP_PAIRS", "FAILOVER_BCAST_IPS"}
    exported = {
        k: v
        for k, v in file_values.items()
        if k.startswith("FAILOVER_") and k not in consumed and k not in environment
    }
    return settings, exported


def plan(settings: dict[str, str], exported: dict[str, str], role: str, extra: Sequence[str],
         source: str) -> Launch | None:
    """What to start, or None when nothing is configured and no role was demanded."""
    backup = "FAILOVER_PEER_IP" in settings or "FAILOVER_PEER_IP_PAIRS" in settings
    master = "FAILOVER_BCAST_IPS" in settings
    if role == "auto":
        if backup and master:
            raise ConfigError(
                f"{source} configures both a backup (FAILOVER_PEER_IP) and a master (FAILOVER_BCAST_IPS); "
                "choose one with --role backup or --role master"
            )
        role = "backup" if backup else "master" if master else "none"
    if role == "none":
        return None
    if role == "backup":
        if "FAILOVER_PEER_IP" not in settings:
            raise ConfigError(f"FAILOVER_PEER_IP (the master's private address) is not set in {source}")
        if "FAILOVER_PEER_IP_PAIRS" not in settings:
            raise ConfigError(
                f"FAILOVER_PEER_IP is set but FAILOVER_PEER_IP_PAIRS (interface:pub_addr[/mask] ...) "
                f"is not, in {source}"
            )
        peer = _words("FAILOVER_PEER_IP", settings["FAILOVER_PEER_IP"])
        if len(peer) != 1:
            raise ConfigError(f"FAILOVER_PEER_IP must be a single address, got {settings['FAILOVER_PEER_IP']!r}")
        arguments = [
            *_words("FAILOVERD_OPTIONS", settings.get("FAILOVERD_OPTIONS", "")),
            *extra,
            *peer,
            *_words("FAILOVER_PEER_IP_PAIRS", settings["FAILOVER_PEER_IP_PAIRS"]),
        ]
        return Launch("failoverd", tuple(arguments), exported)
    if "FAILOVER_BCAST_IPS" not in settings:
        raise ConfigError(f"FAILOVER_BCAST_IPS (heartbeatd's targets) is not set in {source}")
    arguments = [
        *_words("HEARTBEATD_OPTIONS", settings.get("HEARTBEATD_OPTIONS", "")),
        *extra,
        *_words("FAILOVER_BCAST_IPS", settings["FAILOVER_BCAST_IPS"]),
    ]
    return Launch("heartbeatd", tuple(arguments), exported)


def executable(program: str) -> list[str]:
    """How to run ``program``: the console script next to this Python (a
    virtual environment's bin/), else on PATH, else ``python -m``."""
    beside = Path(sys.executable).parent / program
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which(program)
    if found:
        return [found]
    return [sys.executable, "-m", f"failoverd.programs.{program}"]


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        ns = _parser().parse_args(args)
        environment = dict(os.environ)
        source = f"{ns.hostconfig or DEFAULT_HOSTCONFIG} or the environment"
        settings, exported = read_settings(ns.hostconfig, environment)
        launch = plan(settings, exported, ns.role, ns.daemon_options, source)
        if launch is None:
            print(
                f"ipfailover: neither FAILOVER_PEER_IP nor FAILOVER_BCAST_IPS is set in {source}; "
                "nothing to start"
            )
            return EX_OK
        command = launch.command_line(executable(launch.program))
        if ns.dry_run:
            assignments = [f"{k}={shlex.quote(v)}" for k, v in sorted(launch.environment.items())]
            print(shlex.join(command) if not assignments else " ".join(assignments) + " " + shlex.join(command))
            return EX_OK
    except ProgramError as exc:
        print(f"ipfailover: {exc}", file=sys.stderr)
        return exc.status
    except Exception:
        print("ipfailover: internal error:", file=sys.stderr)
        traceback.print_exc()
        return EX_SOFTWARE
    sys.stdout.flush()
    try:
        os.execve(command[0], command, {**environment, **launch.environment})
    except OSError as exc:
        if exc.errno == errno.E2BIG:
            print(f"ipfailover: cannot start {command[0]}: the command line and environment made from "
                  f"{source} are too large ({exc.strerror})", file=sys.stderr)
            return EX_CONFIG
        print(f"ipfailover: cannot start {command[0]}: {exc.strerror}", file=sys.stderr)
        return EX_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
