"""The manual pages in man/ against the programs' real parsers, and mandoc.

For each section 8 page, named after its program:

- every option string the program's argparse parser accepts (short and long
  forms; for failoverctl, those of every subcommand too) is the head of an
  item in the page's OPTIONS list; and every option the OPTIONS heads or the
  SYNOPSIS name is one the parser accepts;
- failoverctl: each subcommand's SYNOPSIS line names every option of that
  subcommand (one of its forms is enough) and none it does not take;
- every other ``.Fl`` in any page names an option of some program of the
  family, so a mention elsewhere cannot be a typo;
- ``mandoc -T lint`` reports nothing and ``mandoc -T utf8`` renders the page
  with every option in it (skipped where mandoc is missing; scripts/bootstrap
  installs it, so CI runs them);
- pyproject.toml installs every page into share/man/man8.

The parsers are those the programs build, imported from their modules (two of
the builders are private, ``_build_parser`` and ``_parser``: the modules have
no public one). What argparse accepts beyond the option strings is not
compared: a prefix of a long option where ``allow_abbrev`` is on (failoverctl,
NotifyFailover and ProcessFailover; a page may say so in prose) and ``--``,
the end of options, which ipfailover's page shows because the daemon's
options follow it. Options a page documents before their parser has them are
listed in ``DOCUMENTED_AHEAD``, each with its reason, and a test fails as soon
as the parser accepts one, so the list cannot outlive its reason.

The pages are read with the small mdoc reader below, not with mandoc's tree
output, whose format mandoc documents as subject to change; so the option
checks run even where mandoc is not installed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from failoverd.cli import options
from failoverd.programs import failoverctl, ipfailover, notifyfailover, processfailover

ROOT = Path(__file__).resolve().parent.parent
MAN_DIR = ROOT / "man"

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "failoverd": options.backup_parser,
    "heartbeatd": options.master_parser,
    "ProcessFailover": processfailover.build_parser,
    "NotifyFailover": notifyfailover._build_parser,
    "ipfailover": ipfailover._parser,
    "failoverctl": failoverctl.build_parser,
}
PROGRAMS = sorted(PARSERS)

END_OF_OPTIONS = "--"
"""argparse's end-of-options marker: no option string, but a page may show it."""

DOCUMENTED_AHEAD: dict[str, dict[str, set[str]]] = {}
"""program -> command -> option strings its page documents ahead of its parser."""

# mdoc(7) macros that are parsed and callable: inside another macro's
# arguments, one of these words starts a new macro (unless it is quoted).
CALLABLE = frozenset(
    ["Ac", "Ad", "An", "Ao", "Ap", "Aq", "Ar", "At", "Bc", "Bo", "Bq", "Brc", "Bro", "Brq", "Bsx", "Bx", "Cd", "Cm", "Dc", "Do", "Dq", "Dv", "Dx", "Ec", "Em", "En", "Eo", "Er", "Es", "Ev", "Fa", "Fc", "Fl", "Fn", "Fo", "Fr", "Ft", "Fx", "Ic", "In", "Li", "Lk", "Ms", "Mt", "Nm", "No", "Ns", "Nx", "Oc", "Oo", "Op", "Ot", "Ox", "Pa", "Pc", "Pf", "Po", "Pq", "Qc", "Ql", "Qo", "Qq", "Rv", "Sc", "So", "Sq", "St", "Sx", "Sy", "Ta", "Tn", "Ux", "Va", "Vt", "Xc", "Xo", "Xr"]
)
# Macros whose arguments are never macros (``.Bl -tag`` is no flag).
NOT_PARSED = frozenset(["Bd", "Bf", "Bk", "Bl", "Dd", "Dt", "Ed", "Ef", "Ek", "El", "Ex", "Lb", "Os", "Pp", "Rs", "Re", "Sm"])
# Delimiters get no hyphen from Fl: ``.Fl d | n`` is "-d | -n".
DELIMITERS = frozenset(["(", "[", ".", ",", ":", ";", ")", "]", "?", "!", "|"])

_ESCAPE = re.compile(r"\\(?:\(..|\[[^]]*\]|f[BIRP]|[&e.-])")


# --- the parsers ----------------------------------------------------------------


def accepted(parser: argparse.ArgumentParser, command: str = "") -> dict[str, list[tuple[str, ...]]]:
    """Each command's options, one tuple of option strings per action.

    ``""`` is the program itself; subcommands are named by their words
    (``"status"``), nested ones joined by spaces.
    """
    commands = {command: [tuple(a.option_strings) for a in parser._actions if a.option_strings]}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                commands.update(accepted(sub, f"{command} {name}".strip()))
    return commands


def accepted_strings(program: str) -> set[str]:
    return {s for actions in accepted(PARSERS[program]()).values() for a in actions for s in a}


def ahead(program: str) -> set[str]:
    return {s for strings in DOCUMENTED_AHEAD.get(program, {}).values() for s in strings}


FAMILY = frozenset(s for p in PROGRAMS for s in accepted_strings(p) | ahead(p))


# --- the pages --------------------------------------------------------------------


@dataclass(frozen=True)
class MacroLine:
    number: int
    section: str
    tokens: tuple[tuple[str, bool], ...]
    """The macro's name, then its arguments, each with whether it was quoted."""

    @property
    def name(self) -> str:
        return self.tokens[0][0]

    def _calls(self) -> Iterator[tuple[str, list[tuple[str, bool]]]]:
        """(macro, its arguments) for the line's macro and every macro it calls."""
        if self.name in NOT_PARSED:
            yield self.name, list(self.tokens[1:])
            return
        macro, arguments = self.name, []
        for text, quoted in self.tokens[1:]:
            if not quoted and text in CALLABLE:
                yield macro, arguments
                macro, arguments = text, []
            else:
                arguments.append((text, quoted))
        yield macro, arguments

    def flags(self) -> list[str]:
        """The option strings its ``Fl`` macros print: ``Fl d , Fl -debug`` → -d, --debug."""
        found = []
        for macro, arguments in self._calls():
            if macro != "Fl":
                continue
            words = [text for text, quoted in arguments if quoted or text not in DELIMITERS]
            found += ["-" + word for word in words] or ["-"]
        return found

    def commands(self) -> list[str]:
        return [text for macro, arguments in self._calls() if macro == "Cm" for text, _ in arguments]


def _unescape(text: str, where: str) -> str:
    def plain(escape: re.Match[str]) -> str:
        found = escape.group()
        if found in ("\\-", "\\."):
            return found[1]
        if found == "\\e":
            return "\0"  # a backslash, once the check below is done
        if found == "\\&" or found.startswith("\\f"):
            return ""
        return "\1"  # a named character, such as \(dq: never part of an option
    unescaped = _ESCAPE.sub(plain, text)
    if "\\" in unescaped:
        raise ValueError(f"{where}: an escape this test's mdoc reader does not know: {text!r}")
    return unescaped.replace("\0", "\\")


def _arguments(text: str, where: str) -> tuple[tuple[str, bool], ...]:
    """A macro line's words, roff style: blanks separate, double quotes group, ``""`` is a quote."""
    words: list[tuple[str, bool]] = []
    i = 0
    while i < len(text):
        if text[i] == " ":
            i += 1
            continue
        quoted = text[i] == '"'
        word = []
        if quoted:
            i += 1
            while i < len(text):
                if text[i] == '"':
                    if text[i + 1 : i + 2] != '"':
                        i += 1
                        break
                    i += 1  # "" inside quotes is one quote
                word.append(text[i])
                i += 1
        else:
            while i < len(text) and text[i] != " ":
                if text[i] == "\\" and text[i + 1 : i + 2] == " ":
                    word.append(" ")
                    i += 2
                    continue
                word.append(text[i])
                i += 1
        words.append((_unescape("".join(word), where), quoted))
    return tuple(words)


@dataclass(frozen=True)
class Page:
    program: str
    path: Path
    lines: tuple[MacroLine, ...]

    @property
    def sections(self) -> list[str]:
        return [" ".join(t for t, _ in line.tokens[1:]) for line in self.lines if line.name == "Sh"]

    def in_section(self, name: str) -> list[MacroLine]:
        return [line for line in self.lines if line.section == name]

    def option_heads(self) -> set[str]:
        """The options the OPTIONS list documents: the flags of its ``.It`` heads."""
        return {f for line in self.in_section("OPTIONS") if line.name == "It" for f in line.flags()}

    def synopsis(self, subcommands: set[str]) -> dict[str, list[str]]:
        """Each SYNOPSIS entry's flags, by the subcommand it shows (``""``: none).

        An entry starts at each ``.Nm``; its subcommand is its first ``Cm``
        word if that is one of ``subcommands``.
        """
        entries: list[tuple[list[str], list[str]]] = []
        for line in self.in_section("SYNOPSIS"):
            if line.name == "Nm":
                entries.append(([], []))
            if not entries:
                continue
            entries[-1][0].extend(line.commands())
            entries[-1][1].extend(line.flags())
        by_command: dict[str, list[str]] = {}
        for words, flags in entries:
            command = words[0] if words and words[0] in subcommands else ""
            by_command.setdefault(command, []).extend(flags)
        return by_command

    def all_flags(self) -> list[tuple[int, str]]:
        return [(line.number, f) for line in self.lines for f in line.flags()]


def read_page(program: str) -> Page:
    path = MAN_DIR / f"{program}.8"
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing: {program} has no manual page"
    lines: list[MacroLine] = []
    section = ""
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if raw.startswith(".\\\""):
            continue
        text = raw.split('\\"', 1)[0]
        if not text.startswith((".", "'")) or not text[1:].strip():
            continue
        tokens = _arguments(text[1:].strip(), f"{path.name}:{number}")
        if tokens[0][0] == "Sh":
            section = " ".join(t for t, _ in tokens[1:])
        lines.append(MacroLine(number, section, tokens))
    return Page(program, path, tuple(lines))


def _listed(strings: set[str]) -> str:
    return ", ".join(sorted(strings))


# --- the reader itself --------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "flags"),
    [
        (".It Fl d , Fl -debug", ["-d", "--debug"]),
        (".Op Fl d | n | x", ["-d", "-n", "-x"]),
        (".It Fl p Ar port , Fl -port Ns = Ns Ar port", ["-p", "--port"]),
        (".Pf ( Fl -backup-fail-misses", ["--backup-fail-misses"]),
        (".Op Fl \\- Ar daemon_option ...", ["--"]),
        ('.It "--message applies to legacy heartbeats only"', []),
        (".Bl -tag -width Ds", []),
        (".Dl failoverd Fl n No 10.0.0.1", ["-n"]),
        (".Op Fl -role Cm auto | backup | master", ["--role"]),
        ('.It "say ""Fl x"" here" Fl -json', ["--json"]),
    ],
)
def test_the_reader_finds_what_fl_prints(line: str, flags: list[str]) -> None:
    macro = MacroLine(1, "OPTIONS", _arguments(line[1:], "test"))
    assert macro.flags() == flags


def test_the_parsers_are_really_introspected() -> None:
    # Introspection that found nothing would let a page without options pass.
    assert {"-d", "--debug", "--key-file", "--trace-max-bytes"} <= accepted_strings("failoverd")
    assert {"-m", "--manage"} <= accepted_strings("heartbeatd")
    commands = accepted(failoverctl.build_parser())
    assert set(commands) == {"", "status", "dump", "ping", "watch", "replay", "sweep"}
    assert ("--plot",) in commands["sweep"] and ("--plot",) not in commands["replay"]


# --- options: parser against page ---------------------------------------------------


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_option_the_parser_accepts_is_documented(program: str) -> None:
    missing = accepted_strings(program) - read_page(program).option_heads()
    assert not missing, f"{program} accepts {_listed(missing)}, but no OPTIONS item of {program}.8 has it"


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_option_the_page_documents_is_accepted(program: str) -> None:
    page = read_page(program)
    documented = page.option_heads() | {f for flags in page.synopsis(set()).values() for f in flags}
    unknown = documented - accepted_strings(program) - ahead(program) - {END_OF_OPTIONS}
    assert not unknown, f"{program}.8 documents {_listed(unknown)} in OPTIONS or SYNOPSIS; {program} does not accept it"


@pytest.mark.parametrize("program", [p for p in PROGRAMS if len(accepted(PARSERS[p]())) > 1])
def test_each_subcommands_synopsis_names_its_options(program: str) -> None:
    commands = accepted(PARSERS[program]())
    synopsis = read_page(program).synopsis(set(commands))
    problems = []
    for command, actions in commands.items():
        label = f"{program} {command}".strip()
        if command not in synopsis:
            problems.append(f"no SYNOPSIS line for {label}")
            continue
        shown = set(synopsis[command])
        for strings in actions:
            if not shown & set(strings):
                problems.append(f"{label}: SYNOPSIS lacks {' / '.join(strings)}")
        takes = {s for a in actions for s in a} | DOCUMENTED_AHEAD.get(program, {}).get(command, set())
        for flag in sorted(shown - takes - {END_OF_OPTIONS}):
            problems.append(f"{label}: SYNOPSIS shows {flag}, which it does not take")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_flag_anywhere_is_an_option_of_the_family(program: str) -> None:
    page = read_page(program)
    unknown = [f"line {n}: {flag}" for n, flag in page.all_flags() if flag not in FAMILY | {END_OF_OPTIONS}]
    assert not unknown, f"{program}.8 names options no program of the family accepts: " + "; ".join(unknown)


@pytest.mark.parametrize(
    ("program", "command", "option"),
    [(p, c, o) for p, by_command in DOCUMENTED_AHEAD.items() for c, opts in by_command.items() for o in sorted(opts)],
)
def test_options_documented_ahead_have_not_landed(program: str, command: str, option: str) -> None:
    strings = {s for a in accepted(PARSERS[program]()).get(command, []) for s in a}
    assert option not in strings, (
        f"{program} {command} now accepts {option}: remove it from DOCUMENTED_AHEAD in {Path(__file__).name}"
    )


REQUIRED_SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES", "SEE ALSO", "HISTORY"]
MORE_SECTIONS = {
    "failoverd": ["SIGNALS", "AUTHENTICATED HEARTBEATS", "ENVIRONMENT", "FILES", "DIAGNOSTICS"],
    "heartbeatd": ["SIGNALS", "AUTHENTICATED HEARTBEATS", "ENVIRONMENT", "FILES", "DIAGNOSTICS"],
    "ipfailover": ["ENVIRONMENT", "FILES", "DIAGNOSTICS"],
    "NotifyFailover": ["ENVIRONMENT", "DIAGNOSTICS"],
    "ProcessFailover": ["HOOKS", "FILES", "DIAGNOSTICS"],
    "failoverctl": ["FILES", "DIAGNOSTICS"],
}


@pytest.mark.parametrize("program", PROGRAMS)
def test_the_page_has_its_sections(program: str) -> None:
    sections = read_page(program).sections
    missing = [s for s in REQUIRED_SECTIONS + MORE_SECTIONS[program] if s not in sections]
    assert not missing, f"{program}.8 lacks the sections {', '.join(missing)}"


# --- mandoc ---------------------------------------------------------------------------

needs_mandoc = pytest.mark.skipif(
    shutil.which("mandoc") is None, reason="mandoc is not installed (scripts/bootstrap installs it)"
)


EXTERNAL_PAGES = (("flock", 2), ("ip", 8), ("syslog", 3), ("systemctl", 1), ("systemd.service", 5))
"""The manual pages outside the family that the pages refer to (SEE ALSO and text)."""


def lint(page: Path, tmp_path: Path) -> str:
    """What ``mandoc -T lint`` says about ``page`` (nothing, for a clean page).

    ``-T lint`` alone means ``-W base``, which adds checks only for OpenBSD
    and NetBSD pages but looks ``.Xr`` references up in /usr/share/man only,
    where this family's pages are only once installed there; ``-W style``
    keeps every other message and looks them up along the manpath, to which
    ``-m`` adds a man8 directory of the pages in man/.
    """
    manpath = tmp_path / "manpath"
    (manpath / "man8").mkdir(parents=True, exist_ok=True)
    for source in MAN_DIR.glob("*.8"):
        link = manpath / "man8" / source.name
        if not link.exists():
            link.symlink_to(source)
    # The pages the family refers to outside itself, as stand-ins: the lint
    # must not depend on which documentation the machine happens to carry
    # (container images often have none), and a reference to any page not
    # listed here is still reported.
    for name, section in EXTERNAL_PAGES:
        stub = manpath / f"man{section}" / f"{name}.{section}"
        stub.parent.mkdir(exist_ok=True)
        stub.write_text(f'.Dd January 1, 2026\n.Dt {name.upper()} {section}\n.Os\n.Sh NAME\n.Nm {name}\n.Nd stand-in\n')
    done = subprocess.run(
        ["mandoc", "-T", "lint", "-W", "style", "-m", str(manpath), str(page)],
        capture_output=True, text=True, timeout=60,
    )
    # The lint's messages go to stdout. stderr has mandoc's remarks about the
    # manpath's missing mandoc.db ("outdated mandoc.db lacks ip(8) entry"),
    # which say nothing of the page; it is shown only when mandoc failed
    # without saying why on stdout.
    if done.returncode != 0 and not done.stdout:
        return f"mandoc exit status {done.returncode}: {done.stderr}"
    return done.stdout


@needs_mandoc
def test_the_lint_check_sees_style_problems(tmp_path: Path) -> None:
    # -W style and -m must not have silenced the lint: a page with trailing
    # blanks and a reference to a page nobody has is reported.
    page = tmp_path / "sloppy.8"
    page.write_text(
        ".Dd December 2, 2026\n.Dt SLOPPY 8\n.Os\n.Sh NAME\n.Nm sloppy\n.Nd a bad page\n"
        ".Sh DESCRIPTION\nText with a blank at the end. \n.Sh SEE ALSO\n.Xr nosuchpage 8\n"
    )
    said = lint(page, tmp_path)
    assert "whitespace at end of input line" in said and "referenced manual not found" in said


@needs_mandoc
@pytest.mark.parametrize("program", PROGRAMS)
def test_mandoc_lint_reports_nothing(program: str, tmp_path: Path) -> None:
    page = read_page(program).path
    assert lint(page, tmp_path) == ""


@needs_mandoc
@pytest.mark.parametrize("program", PROGRAMS)
def test_the_page_renders_with_every_option(program: str) -> None:
    page = read_page(program)
    done = subprocess.run(
        ["mandoc", "-T", "utf8", str(page.path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    text = re.sub(".\b", "", done.stdout)  # bold and underline are overstruck
    lines = text.splitlines()
    assert lines and lines[0].startswith(f"{program.upper()}(8)")
    for section in page.sections:
        assert section in lines, f"{program}.8 renders without its {section} heading"
    missing = {flag for flag in page.option_heads() if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)}
    assert not missing, f"{program}.8 renders without {_listed(missing)}"


# --- installation ------------------------------------------------------------------------


def test_pyproject_installs_every_page() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installed = config["tool"]["setuptools"].get("data-files", {}).get("share/man/man8")
    assert installed is not None, "pyproject.toml installs no manual pages ([tool.setuptools.data-files])"
    assert sorted(installed) == sorted(f"man/{p.name}" for p in MAN_DIR.glob("*.8"))
    assert sorted(Path(p).stem for p in installed) == PROGRAMS
