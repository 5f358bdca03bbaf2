"""Reading /etc/hostconfig-format files: shell-style ``KEY=value`` lines.

The original's startup item sourced /etc/hostconfig with the shell; we parse
the subset such files use and refuse the rest with the line number, instead
of running a shell:

- ``KEY=value``, ``KEY="value"``, ``KEY='value'`` (adjacent pieces join, as in
  ``KEY="a b"'c'``), optionally preceded by ``export``;
- ``#`` starts a comment at the start of a word; blank lines are ignored;
- in double quotes ``\\"``, ``\\\\``, ``\\$`` and ``\\``` are escapes; unquoted,
  a backslash quotes the next character;
- a later assignment of the same key wins.

Refused, because the shell would do something a parser cannot: ``$`` and
backquote expansion, spaces around ``=``, unquoted spaces inside a value
(``KEY=a b`` would *run* ``b``), unterminated quotes, and anything that is not
an assignment.

Refused as well, because the values become a daemon's command line and
environment: a NUL byte anywhere (no argument can hold one; a file that was
being written when the host lost power often has them), bytes that are not
UTF-8 in an assignment (comment lines may hold any text), lines longer than
:data:`MAX_LINE_BYTES` and files larger than :data:`MAX_FILE_BYTES`.

Lines end at ``\n`` only, as for the shell, so the line numbers are an editor's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from failoverd.cli.exitcodes import ConfigError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHELL_SPECIAL = set(";&|<>()`$")
# Bytes that are not UTF-8 decode (surrogateescape) to lone surrogates U+DC80..U+DCFF.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")

MAX_LINE_BYTES = 4096
"""Far above any real assignment, far below what one argument may be (128 KiB)."""
MAX_FILE_BYTES = 1024 * 1024


class HostconfigError(ConfigError):
    def __init__(self, source: str, line_number: int, reason: str) -> None:
        super().__init__(f"{source}, line {line_number}: {reason}")
        self.source = source
        self.line_number = line_number
        self.reason = reason


def _value(text: str, start: int) -> tuple[str, int]:
    """Scan a shell word from ``start``; return its value and where it ended."""
    out: list[str] = []
    i = start
    while i < len(text) and not text[i].isspace():
        char = text[i]
        if char == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ValueError("unterminated single quote")
            out.append(text[i + 1 : end])
            i = end + 1
        elif char == '"':
            i += 1
            while True:
                if i >= len(text):
                    raise ValueError("unterminated double quote")
                char = text[i]
                if char == '"':
                    i += 1
                    break
                if char == "\\" and i + 1 < len(text) and text[i + 1] in '"\\$`':
                    out.append(text[i + 1])
                    i += 2
                elif char in "$`":
                    raise ValueError(f"{char!r} expansion is not supported; quote the value with '...'")
                else:
                    out.append(char)
                    i += 1
        elif char == "\\":
            if i + 1 >= len(text):
                raise ValueError("line continuation with '\\' is not supported")
            out.append(text[i + 1])
            i += 2
        elif char in _SHELL_SPECIAL:
            raise ValueError(f"unquoted {char!r} is not supported; quote the value with '...'")
        else:
            out.append(char)
            i += 1
    return "".join(out), i


def _byte_problem(line: str) -> str | None:
    """What makes ``line`` unusable whatever it says, if anything."""
    nul = line.find("\x00")
    if nul >= 0:
        return f"NUL byte at column {nul + 1} (a damaged file?)"
    size = len(line.encode("utf-8", "surrogateescape"))
    if size > MAX_LINE_BYTES:
        return f"line is {size} bytes long, more than {MAX_LINE_BYTES}"
    return None


def parse(text: str, source: str = "<hostconfig>") -> dict[str, str]:
    """Parse hostconfig text into a dict; raise HostconfigError naming the line.

    ``text`` is the file decoded as UTF-8 with ``surrogateescape`` (as
    :func:`read` does), so bytes that are not UTF-8 can be reported.
    """
    values: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        problem = _byte_problem(line)
        if problem is not None:
            raise HostconfigError(source, number, problem)
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        undecodable = _NOT_UTF8.search(line)
        if undecodable is not None:
            byte = ord(undecodable.group()) - 0xDC00
            raise HostconfigError(
                source, number, f"byte 0x{byte:02X} at column {undecodable.start() + 1} is not UTF-8"
            )
        if stripped.startswith("export") and stripped[6:7].isspace():
            stripped = stripped[6:].lstrip()
        key_match = _KEY.match(stripped)
        if key_match is None:
            raise HostconfigError(source, number, f"expected KEY=value, got {line.strip()!r}")
        key = key_match.group()
        rest = stripped[key_match.end() :]
        if not rest.startswith("="):
            if rest.lstrip().startswith("="):
                raise HostconfigError(source, number, f"no spaces allowed around '=' in {key}")
            raise HostconfigError(source, number, f"expected KEY=value, got {line.strip()!r}")
        try:
            value, end = _value(stripped, key_match.end() + 1)
        except ValueError as exc:
            raise HostconfigError(source, number, f"{key}: {exc}") from None
        trailing = stripped[end:].strip()
        if trailing and not trailing.startswith("#"):
            raise HostconfigError(
                source, number, f"{key}: unquoted space in the value; write {key}=\"...\" to keep {trailing!r}"
            )
        values[key] = value
    return values


def read(path: Path, *, missing_ok: bool = False) -> dict[str, str]:
    """The values in the file at ``path`` (none if it is missing and ``missing_ok``).

    Error handling: a file that cannot be read, is larger than
    :data:`MAX_FILE_BYTES` or does not parse raises :class:`ConfigError`.
    """
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise ConfigError(f"cannot read {path}: No such file or directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_FILE_BYTES} bytes; is it a hostconfig file?")
    return parse(data.decode("utf-8", "surrogateescape"), str(path))


def merged(file_values: Mapping[str, str], environment: Mapping[str, str], keys: tuple[str, ...]) -> dict[str, str]:
    """The value of each of ``keys``: the environment's if set there, else the file's.

    The environment wins so that ``FAILOVER_PEER_IP=... ipfailover --dry-run``
    tries a change without editing the file; an empty value counts as unset.

    Error handling: a value from the environment that is not UTF-8 (see
    :func:`parse` for the file's) raises :class:`ConfigError` naming it.
    """
    result = {}
    for key in keys:
        from_environment = environment.get(key)
        if from_environment and _NOT_UTF8.search(from_environment):
            raise ConfigError(f"{key} in the environment is not UTF-8: {from_environment!r}")
        value = from_environment or file_values.get(key)
        if value:
            result[key] = value
    return result
