"""Hostconfig parsing (failoverd.hostconfig): the shell-style subset, and a
line-numbered error for everything a shell would treat differently."""

from __future__ import annotations

import pytest

from failoverd.exitcodes import EX_CONFIG, ConfigError
from failoverd.hostconfig import HostconfigError, merged, parse, read

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
