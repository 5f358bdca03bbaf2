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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from failoverd.exitcodes import ConfigError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHELL_SPECIAL = set(";&|<>()`$")


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


def parse(text: str, source: str = "<hostconfig>") -> dict[str, str]:
    """Parse hostconfig text into a dict; raise HostconfigError naming the line."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
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


def read(path: Path) -> dict[str, str]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return parse(text, str(path))


def merged(file_values: Mapping[str, str], environment: Mapping[str, str], keys: tuple[str, ...]) -> dict[str, str]:
    """The value of each of ``keys``: the environment's if set there, else the file's.

    The environment wins so that ``FAILOVER_PEER_IP=... ipfailover --dry-run``
    tries a change without editing the file; an empty value counts as unset.
    """
    result = {}
    for key in keys:
        value = environment.get(key) or file_values.get(key)
        if value:
            result[key] = value
    return result
