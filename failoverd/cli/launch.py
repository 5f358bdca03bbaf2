"""The life of a daemon program, shared by failoverd and heartbeatd.

In order, each step stopping with its own exit status (docs/programs.md):

1. parse and validate the command line (64), or answer -h / -v;
2. with -n: print the configuration and the host checks, exit 0 or 78;
3. refuse to run without root (77);
4. check the host: interfaces exist, key file usable (78);
5. import the runtime (70 if it is missing: a broken installation);
6. take the pid file (69 while another instance holds it);
7. unless -d or -x: check syslog is reachable (69), then move to the
   background; everything up to here is reported on the terminal;
8. set up logging and hand the configuration to the runtime's
   ``run(config) -> int``, whose result is the exit status.
"""

from __future__ import annotations

import importlib
import logging
import os
import pwd
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TypeVar

from failoverd.cli import logsetup, preflight
from failoverd.cli.config import BackupConfig, MasterConfig
from failoverd.cli.daemonize import PidFile, daemonize, stop_on_sigterm
from failoverd.cli.exitcodes import EX_CONFIG, EX_NOPERM, EX_OK, EX_SOFTWARE, ProgramError
from failoverd.cli.options import ShowHelp, ShowVersion

Config = TypeVar("Config", BackupConfig, MasterConfig)


def require_root(program: str, why: str) -> None:
    uid = os.geteuid()
    if uid != 0:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = "unknown user"
        raise ProgramError(EX_NOPERM, f"must be run as root: {why} (running as uid {uid}, {name})")


def _load_runtime(module_name: str) -> Callable[[Config], int]:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ProgramError(
            EX_SOFTWARE, f"the runtime module {module_name} cannot be imported ({exc}); reinstall failoverd"
        ) from None
    return module.run


def _serve(program: str, config: Config, run: Callable[[Config], int]) -> int:
    pid_file = PidFile(config.pid_file)
    stale_pid = pid_file.acquire()
    try:
        if config.run_mode == "daemon":
            logsetup.syslog_handler(program, config.syslog_facility, config.syslog_socket).close()
            daemonize(pid_file)
        else:
            pid_file.write(os.getpid())
            stop_on_sigterm()
        logger = logsetup.configure(
            program,
            config.run_mode,
            config.syslog_facility,
            syslog_requested=config.syslog_requested,
            syslog_address=config.syslog_socket,
            log_format=config.log_format,
        )
        if stale_pid is not None:
            logger.info("took over the stale pid file %s of pid %d", config.pid_file, stale_pid)
        logger.info("%s starting (pid %d, %s mode)", program, os.getpid(), config.run_mode)
        try:
            status = run(config)
        except Exception:
            logger.exception("%s stopped by an internal error", program)
            return EX_SOFTWARE
        logger.info("%s stopped (status %d)", program, status)
        return status
    finally:
        pid_file.release()
        logsetup.shutdown()


def run_program(
    program: str,
    argv: Sequence[str] | None,
    parse: Callable[[Sequence[str]], Config | ShowHelp | ShowVersion],
    check_host: Callable[[Config], None],
    runtime_module: str,
    root_reason: str,
) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        parsed = parse(args)
        if isinstance(parsed, (ShowHelp, ShowVersion)):
            sys.stdout.write(parsed.text)
            return EX_OK
        if parsed.run_mode == "no_run":
            text, ok = preflight.report(parsed)
            sys.stdout.write(text)
            return EX_OK if ok else EX_CONFIG
        require_root(program, root_reason)
        check_host(parsed)
        run = _load_runtime(runtime_module)
        return _serve(program, parsed, run)
    except ProgramError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    except Exception:
        print(f"{program}: internal error:", file=sys.stderr)
        traceback.print_exc()
        return EX_SOFTWARE


logging.getLogger(logsetup.PACKAGE_LOGGER).addHandler(logging.NullHandler())
