"""Health checks (``--check``): run one command once, as a hook is run, and say whether it passed.

docs/checks.md is the administrator's manual; keep the two in step.

Rules of this module:

- A check is an argv, never a shell command line: ``curl -fsS http://…`` runs
  curl. Its program is found on the hooks' fixed PATH
  (:data:`~failoverd.system.hooks.HOOK_PATH`, not the daemon's own) when it is
  named without a slash, afresh at every run (a program installed later is
  found), and then checked and run by :mod:`failoverd.system.trustedrun`:
  only a program only root can change runs, from the descriptor that was
  checked, in its own session, its whole tree killed at the timeout, its
  output capped.
- Exit status 0 is a pass. Everything else is a failure: a non-zero status, a
  signal, the timeout, a program the trust rules refuse, one that is not
  there or cannot start. A check that cannot run says nothing good about the
  service (keepalived counts a missing script as a success, its issue #2126;
  we do not).
- A check gets a clean environment: ``PATH`` (the hooks'), ``LANG=C``,
  ``FAILOVER_ROLE`` (``master`` or ``backup``) and ``FAILOVER_CHECK`` (the
  command as given); its working directory is ``/`` and stdin /dev/null.

Resource handling and error handling: those of
:func:`~failoverd.system.trustedrun.run_trusted`: every process a check
started has exited when :meth:`CheckRunner.run` returns after a timeout or a
cancellation; nothing a check does raises here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from failoverd.cli.config import CheckCommand
from failoverd.system.hooks import HOOK_PATH
from failoverd.system.trustedrun import DEFAULT_KILL_GRACE, Refused, RunResult, open_program, run_trusted

DETAIL_LIMIT = 200
"""Characters of a failed check's first output line kept in its verdict's reason (the log has more)."""


@dataclass(frozen=True)
class CheckResult:
    """One run of one check: ``passed`` and, for a failure, what happened (``detail``)."""

    passed: bool
    detail: str
    run: RunResult


def locate(program: str) -> Path:
    """The file ``program`` names: itself if absolute, else the first match on the hooks' PATH.

    A name found nowhere gives the first candidate, so the run fails with
    "cannot open …" naming where it was looked for.
    """
    if program.startswith("/"):
        return Path(program)
    candidates = [Path(directory) / program for directory in HOOK_PATH.split(":")]
    for candidate in candidates:
        if os.path.lexists(candidate):
            return candidate
    return candidates[0]


def program_problem(command: CheckCommand) -> str | None:
    """Why ``command`` cannot run here (the trust rules, a missing program), or None (for ``-n``)."""
    path = locate(command.argv[0])
    if not command.argv[0].startswith("/") and not os.path.lexists(path):
        return f"{command.argv[0]} is not on the hooks' PATH ({HOOK_PATH})"
    try:
        os.close(open_program(path))
    except Refused as reason:
        return str(reason) if str(path) in str(reason) else f"{path}: {reason}"
    return None


class CheckRunner:
    """Runs one check once (``role``: which daemon runs it, for its environment)."""

    def __init__(self, role: str, timeout: float, kill_grace: float = DEFAULT_KILL_GRACE) -> None:
        if timeout <= 0:
            raise ValueError(f"check timeout must be positive, not {timeout}")
        if kill_grace <= 0:
            raise ValueError(f"kill grace must be positive, not {kill_grace}")
        self.role = role
        self.timeout = timeout
        self.kill_grace = kill_grace

    def environment(self, command: CheckCommand) -> dict[str, str]:
        return {"PATH": HOOK_PATH, "LANG": "C", "FAILOVER_ROLE": self.role, "FAILOVER_CHECK": command.text}

    async def run(self, command: CheckCommand) -> CheckResult:
        program = command.argv[0]
        path = locate(program)
        if not program.startswith("/") and not os.path.lexists(path):  # noqa: ASYNC240 - one lstat of a local path
            missing = f"{program} is not on the hooks' PATH ({HOOK_PATH})"
            return CheckResult(False, f"could not run: {missing}", RunResult(path, None, error=missing))
        result = await run_trusted(
            path, command.argv, env=self.environment(command), cwd=Path("/"), timeout=self.timeout,
            kill_grace=self.kill_grace, what="check",
        )
        if result.succeeded:
            return CheckResult(True, "", result)
        detail = result.describe()
        first_line = result.output.splitlines()[0] if result.output else ""
        if first_line:
            cut = first_line[:DETAIL_LIMIT] + ("…" if len(first_line) > DETAIL_LIMIT else "")
            detail += f": {cut}"
        return CheckResult(False, detail, result)
