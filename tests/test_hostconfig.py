"""Hostconfig parsing (failoverd.cli.hostconfig): the shell-style subset, and a
line-numbered error for everything a shell would treat differently."""

from __future__ import annotations

import pytest

from failoverd.cli.exitcodes import EX_CONFIG, ConfigError
from failoverd.cli.hostconfig import MAX_FILE_BYTES, HostconfigError, merged, parse, read

SAMPLE = """\
##
# /etc/hostconfig
##
AFPSERVER=-NO-
FAILOVER_PEER_IP=10.100.0.10
FAILOVER_PEER_IP_PAIRS="en0:192.13.2.2/16 en1:1.2.3.4/24"

FAILOVER_EMAIL_RECIPIENT=failure_notifications@groups.example.com   # who hears about it
export FAILOVERD_OPTIONS='--key-file /etc/failoverd/key'
"""


def test_the_man_page_example() -> None:
    values = parse(SAMPLE)
    assert values == {
        "AFPSERVER": "-NO-",
        "FAILOVER_PEER_IP": "10.100.0.10",
        "FAILOVER_PEER_IP_PAIRS": "en0:192.13.2.2/16 en1:1.2.3.4/24",
        "FAILOVER_EMAIL_RECIPIENT": "failure_notifications@groups.example.com",
        "FAILOVERD_OPTIONS": "--key-file /etc/failoverd/key",
    }


@pytest.mark.parametrize(
    "line, value",
    [
        ("K=plain", "plain"),
        ('K="two words"', "two words"),
        ("K='single $quoted `x`'", "single $quoted `x`"),
        ('K="a"\'b\'c', "abc"),
        ('K="esc \\" \\\\ \\$ \\`"', 'esc " \\ $ `'),
        ('K="keep \\n"', "keep \\n"),
        ("K=a\\ b", "a b"),
        ("K=", ""),
        ('K=""', ""),
        ("K=a#b", "a#b"),
        ("K=x # comment", "x"),
        ("  K=indented", "indented"),
        ("export K=exported", "exported"),
        ('K="# not a comment"', "# not a comment"),
    ],
)
def test_value_forms(line: str, value: str) -> None:
    assert parse(line) == {"K": value}


def test_later_assignment_wins() -> None:
    assert parse("K=1\nK=2\n") == {"K": "2"}


@pytest.mark.parametrize(
    "line, reason",
    [
        ("K = v", "no spaces allowed around '='"),
        ("K =v", "no spaces allowed around '='"),
        ("K=two words", "unquoted space"),
        ('K="open', "unterminated double quote"),
        ("K='open", "unterminated single quote"),
        ("K=$HOME", "'$' is not supported"),
        ('K="$HOME"', "expansion is not supported"),
        ("K=`id`", "'`' is not supported"),
        ("K=a;b", "';' is not supported"),
        ("K=a\\", "line continuation"),
        ("echo hello", "expected KEY=value"),
        ("1K=v", "expected KEY=value"),
        ("=v", "expected KEY=value"),
        ("export", "expected KEY=value"),
    ],
)
def test_malformed_line_is_reported_with_its_number(line: str, reason: str) -> None:
    text = "# header\nGOOD=1\n\n" + line + "\nLATER=2\n"
    with pytest.raises(HostconfigError) as caught:
        parse(text, "/etc/hostconfig")
    assert caught.value.line_number == 4
    assert caught.value.status == EX_CONFIG
    assert str(caught.value).startswith("/etc/hostconfig, line 4: ")
    assert reason in str(caught.value)


def test_read_reports_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError) as caught:
        read(tmp_path / "absent")
    assert "No such file" in str(caught.value)
    assert caught.value.status == EX_CONFIG


def test_read_file(tmp_path) -> None:
    path = tmp_path / "hostconfig"
    path.write_text(SAMPLE)
    assert read(path)["FAILOVER_PEER_IP"] == "10.100.0.10"


def test_environment_overrides_file_and_empty_is_unset() -> None:
    file_values = {"A": "file", "B": "file", "C": "file", "D": ""}
    environment = {"A": "env", "C": "", "UNRELATED": "x"}
    assert merged(file_values, environment, ("A", "B", "C", "D", "E")) == {
        "A": "env",
        "B": "file",
        "C": "file",
    }


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"FAILOVER_PEER_IP_PAIRS=eth0:10.0.1.1\x00", "NUL byte at column 37 (a damaged file?)"),
        (b"\x00\x00\x00\x00", "NUL byte at column 1 (a damaged file?)"),
        (b"# a comment\x00", "NUL byte at column 12 (a damaged file?)"),
        (b'FAILOVER_EMAIL_RECIPIENT="caf\xe9@example.com"', "byte 0xE9 at column 30 is not UTF-8"),
        (b"K=\xff\xfe", "byte 0xFF at column 3 is not UTF-8"),
        (b"\xef\xbb\xbfK=v", "expected KEY=value, got '\\ufeffK=v'"),  # a byte-order mark
        (b"K='" + b"x" * 5000 + b"'", "line is 5004 bytes long, more than 4096"),
        (b'K="open', "K: unterminated double quote"),
    ],
)
def test_damaged_files_are_refused_with_the_line_number(tmp_path, line: bytes, reason: str) -> None:
    path = tmp_path / "hostconfig"
    path.write_bytes(b"# header\nGOOD=1\n\n" + line + b"\nLATER=2\n")
    with pytest.raises(HostconfigError) as caught:
        read(path)
    assert caught.value.line_number == 4
    assert caught.value.status == EX_CONFIG
    assert str(caught.value) == f"{path}, line 4: {reason}"


def test_comment_lines_may_hold_any_text(tmp_path) -> None:
    path = tmp_path / "hostconfig"
    path.write_bytes(b"# Ma\xeetre: caf\xe9\nK=v\n")
    assert read(path) == {"K": "v"}


def test_lines_end_at_newlines_only() -> None:
    # str.splitlines() would also end a line at \x0c, \x1c, \x85 or U+2028,
    # and the numbers would no longer be an editor's.
    text = "A='form\x0cfeed'\nB='next\x85line'\nC=two words\n"
    with pytest.raises(HostconfigError) as caught:
        parse(text, "f")
    assert caught.value.line_number == 3
    assert parse(text.replace("C=two words\n", "")) == {"A": "form\x0cfeed", "B": "next\x85line"}


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path) -> None:
    path = tmp_path / "hostconfig"
    path.write_bytes(b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=f"larger than {MAX_FILE_BYTES} bytes"):
        read(path)


def test_a_missing_file_may_be_allowed(tmp_path) -> None:
    assert read(tmp_path / "absent", missing_ok=True) == {}


def test_environment_values_must_be_utf8() -> None:
    with pytest.raises(ConfigError, match=r"FAILOVER_PEER_IP in the environment is not UTF-8: '\\udcff'"):
        merged({}, {"FAILOVER_PEER_IP": "\udcff"}, ("FAILOVER_PEER_IP",))
