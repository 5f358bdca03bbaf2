"""failoverd's and heartbeatd's command lines: every documented option and
long form, every diagnostic with its documented wording, and -n's host checks
(run inside a network namespace this test creates and always deletes)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from failoverd.cli import preflight
from failoverd.cli.config import BackupConfig, MasterConfig
from failoverd.cli.exitcodes import EX_CONFIG, EX_USAGE, UsageError
from failoverd.cli.options import ShowHelp, ShowVersion, parse_backup, parse_master
from failoverd.core.addresses import Triplet

MASTER = "10.100.0.10"
PAIR = "en0:192.13.2.2"


def run(program: str, args: list[str], netns: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", f"failoverd.programs.{program}", *args]
    if netns is not None:
        command = ["ip", "netns", "exec", netns, *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def usage_error(parse, argv: list[str]) -> str:
    with pytest.raises(UsageError) as caught:
        parse(argv)
    assert caught.value.status == EX_USAGE
    return str(caught.value)


# --- documented forms ---------------------------------------------------------


def test_man_page_examples() -> None:
    simple = parse_backup(["10.100.0.100", "en0:192.13.2.2"])
    assert isinstance(simple, BackupConfig)
    assert simple.master == IPv4Address("10.100.0.100")
    assert simple.triplets == (Triplet("en0", IPv4Address("192.13.2.2"), None),)
    assert (simple.port, simple.run_mode, simple.syslog_facility) == (1694, "daemon", "daemon")
    multi = parse_backup(["10.100.0.10", "en0:192.13.2.2/16", "en1:1.2.3.4/24"])
    assert [str(t) for t in multi.triplets] == ["en0:192.13.2.2/16", "en1:1.2.3.4/24"]


@pytest.mark.parametrize(
    "flags, mode",
    [([], "daemon"), (["-d"], "debug"), (["--debug"], "debug"), (["-n"], "no_run"), (["--no-run"], "no_run"),
     (["-x"], "no_fork"), (["--no-fork"], "no_fork")],
)
@pytest.mark.parametrize("parse, positional", [(parse_backup, [MASTER, PAIR]), (parse_master, ["10.0.0.255"])])
def test_run_modes(parse, positional, flags: list[str], mode: str) -> None:
    assert parse([*flags, *positional]).run_mode == mode


@pytest.mark.parametrize("pair", [["-d", "-n"], ["-n", "-x"], ["--debug", "--no-fork"], ["-x", "-d"]])
def test_run_modes_are_mutually_exclusive(pair: list[str]) -> None:
    message = usage_error(parse_backup, [*pair, MASTER, PAIR])
    assert "not allowed with argument" in message


@pytest.mark.parametrize("form", [["-p", "1700"], ["-p1700"], ["--port", "1700"], ["--port=1700"]])
def test_port_forms(form: list[str]) -> None:
    assert parse_backup([*form, MASTER, PAIR]).port == 1700
    assert parse_master([*form, "10.0.0.255"]).port == 1700


@pytest.mark.parametrize("form", [["-L", "local3"], ["--syslog", "local3"], ["--syslog=local3"], ["-Llocal3"]])
def test_syslog_forms(form: list[str]) -> None:
    config = parse_backup([*form, MASTER, PAIR])
    assert (config.syslog_facility, config.syslog_requested) == ("local3", True)


@pytest.mark.parametrize("facility", ["daemon", "auth", "user"] + [f"local{n}" for n in range(8)])
def test_every_supported_facility(facility: str) -> None:
    assert parse_master(["-L", facility, "10.0.0.255"]).syslog_facility == facility


@pytest.mark.parametrize("form", [["-h"], ["--help"], ["-h", "garbage"], ["--help", "-p", "1700"]])
def test_help(form: list[str]) -> None:
    shown = parse_backup(form)
    assert isinstance(shown, ShowHelp) and shown.text.startswith("usage: failoverd [-d | -n | -x]")


@pytest.mark.parametrize("form", [["-v"], ["--version"]])
def test_version(form: list[str]) -> None:
    assert parse_master(form) == ShowVersion("heartbeatd 0.1.0\n")


@pytest.mark.parametrize("form", [["-m", "alive"], ["--message", "alive"], ["--message=alive"], ["-malive"]])
def test_heartbeatd_message(form: list[str]) -> None:
    assert parse_master([*form, "10.0.0.255"]).message == b"alive"


def test_options_may_follow_positionals() -> None:
    config = parse_backup([MASTER, "-d", PAIR, "--port=1700"])
    assert (config.run_mode, config.port, len(config.triplets)) == ("debug", 1700, 1)


def test_backup_long_options() -> None:
    config = parse_backup([
        "--interval", "0.5", "--suspect-misses", "2", "--fail-misses", "6", "--allowance", "0",
        "--probe-count", "4", "--probe-spacing", "0.05", "--garp-count", "5", "--garp-spacing", "0.1",
        "--key-file", "/etc/failoverd/key", "--hook-dir", "/srv/hooks", "--hook-timeout", "12",
        "--pid-file", "/tmp/f.pid", "--control-socket", "/tmp/f.sock", "--state-dir", "/tmp/state",
        "--trace", "/tmp/trace", "--trace-max-bytes", "2M", "--notify-command", "/bin/true",
        "--keep-addresses-on-exit", "--syslog-socket", "/tmp/log", MASTER, PAIR,
    ])
    t = config.timing
    assert (t.interval, t.suspect_misses, t.fail_misses, t.allowance) == (0.5, 2, 6, 0.0)
    assert (t.probe_count, t.probe_spacing, t.garp_count, t.garp_spacing) == (4, 0.05, 5, 0.1)
    assert config.key_file == Path("/etc/failoverd/key") and config.authenticated
    assert (config.hook_dir, config.hook_timeout) == (Path("/srv/hooks"), 12.0)
    assert (config.pid_file, config.control_socket, config.state_dir) == (
        Path("/tmp/f.pid"), Path("/tmp/f.sock"), Path("/tmp/state"))
    assert (config.trace_file, config.trace_max_bytes) == (Path("/tmp/trace"), 2 * 1024 * 1024)
    assert (config.notify_command, config.keep_addresses_on_exit) == ("/bin/true", True)
    assert config.syslog_socket == "/tmp/log"
    assert parse_backup(["--message", "hello", MASTER, PAIR]).message == b"hello"
    assert parse_backup(["--no-arp-probe", MASTER, PAIR]).arp_probe is False


def test_master_long_options() -> None:
    config = parse_master([
        "--interval", "0.25", "--backup-fail-misses", "4", "--manage", "eth0:192.0.2.10/24",
        "--manage", "eth1:198.51.100.7", "--no-arp-probe", "--garp-count", "2", "--garp-spacing", "0.3",
        "--probe-count", "2", "--probe-spacing", "0.02", "--key-file", "/k", "--hook-dir", "/h",
        "--hook-timeout", "5", "--pid-file", "/p", "--control-socket", "/s", "--state-dir", "/d",
        "--notify-command", "mail-it", "10.0.0.2", "10.0.0.255",
    ])
    assert isinstance(config, MasterConfig)
    assert config.targets == (IPv4Address("10.0.0.2"), IPv4Address("10.0.0.255"))
    assert (config.interval, config.fail_misses, config.backup_fail_after) == (0.25, 4, 1.0)
    assert [str(t) for t in config.managed] == ["eth0:192.0.2.10/24", "eth1:198.51.100.7"]
    assert (config.arp_probe, config.garp_count, config.garp_spacing) == (False, 2, 0.3)
    assert (config.probe_count, config.probe_spacing) == (2, 0.02)
    assert (config.pid_file, config.control_socket, config.notify_command) == (Path("/p"), Path("/s"), "mail-it")


def test_describe_shows_what_was_understood() -> None:
    lines = "\n".join(parse_backup(["-p", "1700", "-L", "local2", MASTER, "en0:192.13.2.2/16"]).describe())
    assert "master_priv_addr: 10.100.0.10" in lines
    assert "port: 1700/udp" in lines
    assert "public address: 192.13.2.2 on en0, mask /16" in lines
    assert "syslog facility local2" in lines
    master = "\n".join(parse_master(["--manage", "eth0:192.0.2.10", "10.0.0.2"]).describe())
    assert "managed address: 192.0.2.10 on eth0, mask none (/32)" in master


# --- diagnostics ------------------------------------------------------------------


@pytest.mark.parametrize("port", ["0", "65536", "-1", "abc", "+80", " 80", "80 ", "1e3", "", "0x50", "999999"])
def test_invalid_port(port: str) -> None:
    message = usage_error(parse_backup, ["-p", port, MASTER, PAIR])
    assert message == f"Invalid port. Valid ports range from 1 to 65535 (IPV6PORT_ANONMAX): {port!r}"


@pytest.mark.parametrize("facility", ["kern", "local8", "DAEMON", "mail", ""])
def test_invalid_facility(facility: str) -> None:
    message = usage_error(parse_master, ["-L", facility, "10.0.0.255"])
    assert message.startswith(f"Invalid syslog facility: {facility!r}")


@pytest.mark.parametrize("address", ["10.1", "1.2.3.256", "0x0a.0.0.1", "+1.2.3.4", " 1.2.3.4", "010.0.0.1",
                                     "host.example.com"])
def test_invalid_master_address(address: str) -> None:
    message = usage_error(parse_backup, [address, PAIR])
    assert message.startswith(f"CNode: invalid IP address: master_priv_addr {address!r}")


@pytest.mark.parametrize("address", ["0.0.0.0", "255.255.255.255", "224.0.0.1"])
def test_master_must_be_unicast(address: str) -> None:
    assert "not a unicast host address" in usage_error(parse_backup, [address, PAIR])


@pytest.mark.parametrize("pair", ["en0:10.1", "en0:1.2.3.256/24", "en0:0x01.2.3.4",
                                  # The interface ends at the first colon: the rest is a (bad) IPv6 address.
                                  "en0:1.2.3.4:5", "en0:2001:db8::g/64", "en0:fe80::1%en0", "en0:::ffff:1.2.3.4"])
def test_invalid_pub_addr(pair: str) -> None:
    assert usage_error(parse_backup, [MASTER, pair]).startswith(f"CNode: invalid IP address: pub_addr {pair!r}")


@pytest.mark.parametrize("pair", ["en0", "192.13.2.2", "en0:192.13.2.2/33", "en0:192.13.2.2/", ":192.13.2.2",
                                  "en0:1.2.3.4/24/8", "averyveryverylongname:1.2.3.4",
                                  "en0:2001:db8::1/129", "en0:2001:db8::1/064"])
def test_invalid_pair(pair: str) -> None:
    message = usage_error(parse_backup, [MASTER, pair])
    assert message.startswith(f"Invalid interface / IP address pair: pub_addr {pair!r}")


# --- IPv6 (issue 13) ---------------------------------------------------------------


def test_ipv6_master_and_triplets() -> None:
    config = parse_backup(["2001:db8:1::10", "eth0:2001:DB8::10/64", "eth0:192.0.2.10/24", "eth1:fe80::10"])
    assert isinstance(config, BackupConfig)
    assert config.master == IPv6Address("2001:db8:1::10")
    assert [str(t) for t in config.triplets] == ["eth0:2001:db8::10/64", "eth0:192.0.2.10/24", "eth1:fe80::10"]
    lines = config.describe()
    assert "public address: 2001:db8::10 on eth0, mask /64" in lines
    assert "public address: fe80::10 on eth1, mask none (/128)" in lines


def test_link_local_master_carries_its_interface() -> None:
    config = parse_backup(["fe80::1%priv0", "pub0:2001:db8::10/64"])
    assert isinstance(config, BackupConfig)
    # The runtime compares this text with each heartbeat's source.
    assert str(config.master) == "fe80::1%priv0"


@pytest.mark.parametrize(
    "address, detail",
    [
        ("fe80::1", "a link-local address needs its interface, e.g. fe80::1%eth1"),
        ("2001:db8::1%eth0", "a %scope is for link-local addresses (fe80::/10) only"),
        ("2001:db8:::1", "expected an IPv6 address, e.g. 2001:db8::10"),
        ("::ffff:10.0.0.1", "an IPv4-mapped address: write 10.0.0.1"),
    ],
)
def test_invalid_ipv6_master_keeps_the_wording(address: str, detail: str) -> None:
    message = usage_error(parse_backup, [address, PAIR])
    assert message == f"CNode: invalid IP address: master_priv_addr {address!r} ({detail})"


@pytest.mark.parametrize("address", ["::", "ff02::1%eth0", "ff05::2"])
def test_ipv6_master_must_be_unicast(address: str) -> None:
    assert "not a unicast host address" in usage_error(parse_backup, [address, PAIR])


def test_ipv6_pub_addr_equal_to_a_link_local_master() -> None:
    message = usage_error(parse_backup, ["fe80::1%eth0", "eth0:fe80::1/64"])
    assert message.startswith("pub_addr 'eth0:fe80::1/64' is master_priv_addr fe80::1%eth0")


def test_ipv6_heartbeat_targets() -> None:
    config = parse_master(["--manage", "eth0:2001:db8::10/64", "2001:db8:1::2", "fe80::2%priv0", "10.0.0.2"])
    assert isinstance(config, MasterConfig)
    assert [str(t) for t in config.targets] == ["2001:db8:1::2", "fe80::2%priv0", "10.0.0.2"]
    assert [str(t) for t in config.managed] == ["eth0:2001:db8::10/64"]
    assert "given twice" in usage_error(parse_master, ["2001:db8::2", "2001:DB8:0::2"])
    assert ":: is not a destination" in usage_error(parse_master, ["::"])
    assert "IPv6 has no broadcast" in usage_error(parse_master, ["ff02::1%eth0"])
    assert usage_error(parse_master, ["fe80::2"]) == (
        "CNode: invalid IP address: ip_addr 'fe80::2' (a link-local address needs its interface, e.g. fe80::2%eth1)"
    )


def test_legacy_message_must_fit_an_ipv6_frame() -> None:
    assert isinstance(parse_master(["-m", "x" * 1472, "10.0.0.2"]), MasterConfig)
    assert isinstance(parse_master(["-m", "x" * 1452, "2001:db8::2"]), MasterConfig)
    assert "over IPv6 a heartbeat must be 1 to 1452 bytes, got 1453" in usage_error(
        parse_master, ["-m", "x" * 1453, "10.0.0.2", "2001:db8::2"])
    assert "over IPv6 a heartbeat must be 1 to 1452 bytes" in usage_error(
        parse_backup, ["--message", "x" * 1460, "2001:db8::1", PAIR])


def test_ipv6_from_hostconfig() -> None:
    from failoverd.cli import hostconfig
    from failoverd.programs.ipfailover import plan

    text = 'FAILOVER_PEER_IP=fe80::1%priv0\nFAILOVER_PEER_IP_PAIRS="pub0:2001:db8::10/64 pub0:192.0.2.10/24"\n'
    launch = plan(hostconfig.parse(text), {}, "auto", [], "<test>")
    assert launch is not None and launch.program == "failoverd"
    config = parse_backup(list(launch.arguments))
    assert isinstance(config, BackupConfig)
    assert str(config.master) == "fe80::1%priv0"
    assert [str(t) for t in config.triplets] == ["pub0:2001:db8::10/64", "pub0:192.0.2.10/24"]
    master = plan(hostconfig.parse('FAILOVER_BCAST_IPS="fe80::2%priv0 2001:db8::2"\n'), {}, "auto", [], "<test>")
    assert master is not None
    config = parse_master(list(master.arguments))
    assert isinstance(config, MasterConfig)
    assert [str(t) for t in config.targets] == ["fe80::2%priv0", "2001:db8::2"]


def test_no_arguments_and_no_triplet() -> None:
    assert "missing master_priv_addr" in usage_error(parse_backup, [])
    assert "no interface:pub_addr[/mask] triplet given" in usage_error(parse_backup, [MASTER])
    assert "no ip_addr given" in usage_error(parse_master, ["-d"])


def test_triplet_in_place_of_master_gets_a_hint() -> None:
    assert "the first argument is master_priv_addr" in usage_error(parse_backup, [PAIR])


def test_same_pub_addr_twice() -> None:
    message = usage_error(parse_backup, [MASTER, "en0:192.13.2.2", "en1:192.13.2.2/24"])
    assert message == "pub_addr 192.13.2.2 given twice: 'en0:192.13.2.2' and 'en1:192.13.2.2/24'"


def test_pub_addr_equal_to_master() -> None:
    message = usage_error(parse_backup, [MASTER, f"en0:{MASTER}/24"])
    assert message.startswith(f"pub_addr 'en0:{MASTER}/24' is master_priv_addr {MASTER}")


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--interval", "0"], "argument --interval: invalid value '0'"),
        (["--interval", "nan"], "argument --interval: invalid value 'nan'"),
        (["--fail-misses", "1"], "Invalid timing: fail misses (1) must be greater"),
        (["--interval", "1", "--probe-count", "50"], "Invalid timing: the ARP probe"),
        (["--garp-count", "-1"], "argument --garp-count"),
        (["--trace-max-bytes", "0"], "argument --trace-max-bytes: invalid size '0'"),
        (["--hook-timeout", "inf"], "argument --hook-timeout"),
        (["--message", ""], "invalid message"),
        (["--message", "x", "--key-file", "/k"], "--message applies to legacy heartbeats only"),
        (["--debu"], "unrecognized arguments: --debu"),
        (["-q"], "unrecognized arguments: -q"),
    ],
)
def test_other_usage_errors(argv: list[str], text: str) -> None:
    assert text in usage_error(parse_backup, [*argv, MASTER, PAIR])


def test_option_missing_its_value() -> None:
    # "-p 10.100.0.10" would take the address as the port, so -p comes last.
    assert "argument -p/--port: expected one argument" in usage_error(parse_backup, [MASTER, PAIR, "-p"])


def test_heartbeatd_diagnostics() -> None:
    assert usage_error(parse_master, ["10.1"]).startswith("CNode: invalid IP address: ip_addr '10.1'")
    assert "given twice" in usage_error(parse_master, ["10.0.0.2", "10.0.0.2"])
    assert "0.0.0.0 is not a destination" in usage_error(parse_master, ["0.0.0.0"])
    assert usage_error(parse_master, ["--manage", "eth0", "10.0.0.2"]).startswith(
        "Invalid interface / IP address pair: --manage 'eth0'")
    assert "given twice" in usage_error(
        parse_master, ["--manage", "a:192.0.2.1", "--manage", "b:192.0.2.1/24", "10.0.0.2"])
    assert "argument --backup-fail-misses" in usage_error(parse_master, ["--backup-fail-misses", "1", "10.0.0.2"])
    assert "invalid message" in usage_error(parse_master, ["-m", "x" * 1473, "10.0.0.2"])


def test_heartbeatd_backups() -> None:
    key = ["--key-file", "/etc/failoverd/key"]
    assert parse_master(["10.0.0.2"]).backups == 1
    config = parse_master([*key, "--backups", "2", "--manage", "eth0:192.0.2.10", "10.0.0.2", "10.0.0.3"])
    assert isinstance(config, MasterConfig) and config.backups == 2 and config.master_settings().backups == 2
    assert "backups: 2, each acknowledged by the heartbeats to its own address" in "\n".join(config.describe())
    assert "argument --backups: invalid value '0': expected a whole number >= 1" in usage_error(
        parse_master, ["--backups", "0", "10.0.0.2"])
    assert "--backups 255: at most 254 (the backups' priorities are 1..254)" in usage_error(
        parse_master, [*key, "--backups", "255", "10.0.0.2"])
    assert usage_error(parse_master, ["--backups", "2", "10.0.0.2", "10.0.0.3"]).startswith(
        "--backups 2 needs --key-file: legacy heartbeats carry no status")
    assert usage_error(parse_master, [*key, "--backups", "3", "10.0.0.2", "255.255.255.255"]).startswith(
        "--backups 3 with ip_addr 255.255.255.255: a heartbeat acknowledges one backup")
    assert usage_error(parse_master, [*key, "--backups", "3", "10.0.0.2", "10.0.0.3"]).startswith(
        "--backups 3 with 2 ip_addr: a heartbeat acknowledges the one backup heard from the address it is sent to")
    # One backup: a broadcast target and legacy mode stay what they always were.
    assert parse_master(["--backups", "1", "255.255.255.255"]).backups == 1


# --- through the real programs: stderr, exit status, nothing started --------------


@pytest.mark.parametrize(
    "program, args, status, text",
    [
        ("failoverd", ["-p", "70000", MASTER, "lo:192.0.2.1"], 64,
         "failoverd: Invalid port. Valid ports range from 1 to 65535 (IPV6PORT_ANONMAX): '70000'"),
        ("failoverd", ["-L", "kern", MASTER, "lo:192.0.2.1"], 64, "failoverd: Invalid syslog facility: 'kern'"),
        ("failoverd", ["10.1", "lo:192.0.2.1"], 64, "failoverd: CNode: invalid IP address: master_priv_addr '10.1'"),
        ("failoverd", [MASTER, "lo-192.0.2.1"], 64, "failoverd: Invalid interface / IP address pair: pub_addr"),
        ("failoverd", [MASTER, "fonosuch0:192.0.2.1"], 78,
         "failoverd: CNode: invalid interface name: pub_addr 'fonosuch0:192.0.2.1'"),
        ("failoverd", ["-d", "-x", MASTER, "lo:192.0.2.1"], 64, "not allowed with argument"),
        ("heartbeatd", ["-p", "0", "10.0.0.255"], 64, "heartbeatd: Invalid port."),
        ("heartbeatd", ["--manage", "fonosuch0:192.0.2.1", "10.0.0.255"], 78,
         "heartbeatd: CNode: invalid interface name: --manage 'fonosuch0:192.0.2.1'"),
    ],
)
def test_program_diagnostics(tmp_path: Path, program: str, args: list[str], status: int, text: str) -> None:
    pid_file = tmp_path / "d.pid"
    result = run(program, ["--pid-file", str(pid_file), *args])
    assert result.returncode == status
    assert text in result.stderr
    assert result.stdout == ""
    assert not pid_file.exists(), "nothing may start after a diagnostic"


def test_key_file_must_not_be_world_readable(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    result = run("failoverd", ["--key-file", str(key), "--pid-file", str(tmp_path / "p"), MASTER, "lo:192.0.2.1"])
    assert result.returncode == EX_CONFIG
    assert "readable by everyone" in result.stderr


def test_program_help_and_version() -> None:
    for program in ("failoverd", "heartbeatd"):
        assert run(program, ["-v"]).stdout == f"{program} 0.1.0\n"
        result = run(program, ["--help"])
        assert result.returncode == 0 and "usage:" in result.stdout


# --- -n in a namespace of our own ----------------------------------------------------


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    name = "fo" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=30)


def ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", netns, *args], check=True, timeout=30)


@pytest.mark.netns
def test_no_run_checks_the_host(netns: str, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    (hooks / "10.9.0.2").mkdir(parents=True)
    hooks.chmod(0o755)
    (hooks / "10.9.0.2").chmod(0o755)
    hook = hooks / "10.9.0.2" / "PreAcq-log"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    args = ["-n", "-p", "1694", "--hook-dir", str(hooks), "--state-dir", str(tmp_path / "state"),
            "--syslog-socket", str(tmp_path / "no-syslog"), "10.9.0.1", "lo:10.9.0.2/24"]

    # A new namespace's loopback is down.
    down = run("failoverd", args, netns)
    assert down.returncode == EX_CONFIG
    assert "FAIL  interface lo is down" in down.stdout
    assert "master_priv_addr: 10.9.0.1" in down.stdout
    assert "public address: 10.9.0.2 on lo, mask /24" in down.stdout

    ip(netns, "link", "set", "lo", "up")
    good = run("failoverd", args, netns)
    assert good.returncode == 0, good.stdout
    assert "ok    interface lo is up" in good.stdout
    assert "ok    port 1694/udp is free" in good.stdout
    assert "ok    hooks for 10.9.0.2: PreAcq-log" in good.stdout
    assert "warn  cannot reach syslog" in good.stdout
    assert good.stdout.rstrip().endswith("result: configuration OK (2 warnings)")

    ip(netns, "addr", "add", "10.9.0.2/24", "dev", "lo")
    taken = run("failoverd", args, netns)
    assert taken.returncode == EX_CONFIG
    assert "FAIL  10.9.0.2 is already configured on lo" in taken.stdout

    missing = run("failoverd", [*args[:-1], "fonosuch0:10.9.0.3"], netns)
    assert missing.returncode == EX_CONFIG
    assert "FAIL  CNode: invalid interface name: no interface 'fonosuch0'" in missing.stdout

    hooks.chmod(0o777)
    writable = run("failoverd", args[:-1] + ["lo:10.9.0.3"], netns)
    assert writable.returncode == EX_CONFIG
    assert "writable by group or others" in writable.stdout

    master = run("heartbeatd", ["-n", "--hook-dir", str(tmp_path / "none"), "--manage", "lo:10.9.0.2",
                                "--state-dir", str(tmp_path), "10.9.0.255"], netns)
    assert master.returncode == EX_CONFIG
    assert "FAIL  10.9.0.2 is already configured on lo; heartbeatd adds managed addresses itself" in master.stdout


def test_port_in_use_is_reported() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        check = preflight._port_check(port)
    assert check.status == "FAIL" and f"port {port}/udp is already in use" in check.text


def test_key_file_problems(tmp_path: Path) -> None:
    key = tmp_path / "key"
    assert "No such file" in preflight.key_file_problem(key)
    key.write_bytes(b"")
    key.chmod(0o600)
    assert "holds 0 bytes" in preflight.key_file_problem(key)
    key.write_bytes(b"0123456789abcdef")
    assert preflight.key_file_problem(key) is None
    key.chmod(0o620)
    assert "has mode 0620 (writable by its group)" in preflight.key_file_problem(key)
    assert "not a regular file" in preflight.key_file_problem(tmp_path)


# --- health checks (docs/checks.md) -----------------------------------------------


def test_checks_are_argvs_with_their_settings_on_both_daemons() -> None:
    backup = parse_backup(["--check", "curl -fsS 'http://127.0.0.1/a b'", "--check", "/usr/local/sbin/check-db",
                           "--check-interval", "0.5", "--check-rise", "3", "--check-fall", "1", MASTER, PAIR])
    assert isinstance(backup, BackupConfig)
    checks = backup.checks
    assert [c.argv for c in checks.commands] == [("curl", "-fsS", "http://127.0.0.1/a b"), ("/usr/local/sbin/check-db",)]
    assert (checks.interval, checks.effective_timeout, checks.rise, checks.fall) == (0.5, 0.5, 3, 1)
    assert "while one fails, this backup does not take over" in "\n".join(backup.describe())
    heartbeatd = parse_master(["--check", "sh -c 'pgrep -x nginx'", "--check-timeout", "5", "10.0.0.2"])
    assert isinstance(heartbeatd, MasterConfig)
    assert heartbeatd.checks.commands[0].argv == ("sh", "-c", "pgrep -x nginx")
    assert (heartbeatd.checks.interval, heartbeatd.checks.effective_timeout) == (2.0, 5.0)
    assert "this master steps down" in "\n".join(heartbeatd.describe())
    assert parse_master(["10.0.0.2"]).checks.commands == ()
    assert "health checks: none (no --check)" in parse_master(["10.0.0.2"]).describe()


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--check", ""], "argument --check: invalid check: empty"),
        (["--check", "curl 'http://x"], "invalid check \"curl 'http://x\": no closing quotation"),
        (["--check", "./check-web"], "'./check-web' is a relative path"),
        (["--check", "true", "--check", "true"], "--check 'true' given twice"),
        (["--check-fall", "3"], "--check-fall given without --check"),
        (["--check", "true", "--check-rise", "0"], "argument --check-rise: invalid value '0'"),
        (["--check", "true", "--check-interval", "0.001"], "expected seconds within 0.01..3600"),
        (["--check", "true", "--check-timeout", "nan"], "argument --check-timeout: invalid value 'nan'"),
    ],
)
def test_check_diagnostics(argv: list[str], text: str) -> None:
    assert text in usage_error(parse_backup, [*argv, MASTER, PAIR])
    assert text in usage_error(parse_master, [*argv, "10.0.0.2"])


def test_no_run_says_whether_each_check_can_run(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a program must be root's to pass the checks' rules")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    (shared / "check").write_text("#!/bin/sh\nexit 0\n")
    (shared / "check").chmod(0o755)
    result = run("heartbeatd", ["-n", "--check", "true", "--check", "no-such-check-4f2a",
                                "--check", str(shared / "check"), "10.0.0.2"])
    assert result.returncode == EX_CONFIG
    lines = result.stdout.splitlines()
    assert any(line.startswith("  ok    health check 'true' runs /usr/bin/true") for line in lines)
    assert any(line.startswith("  FAIL  health check 'no-such-check-4f2a' cannot run") and "not on the hooks' PATH" in line
               for line in lines)
    assert any(line.startswith(f"  FAIL  health check '{shared / 'check'}' cannot run") and "writable by group" in line
               for line in lines)


@pytest.mark.netns
def test_no_run_sees_an_ipv6_address_already_configured(netns: str, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    hooks.chmod(0o755)
    args = ["-n", "--hook-dir", str(hooks), "--state-dir", str(tmp_path / "state"),
            "--syslog-socket", str(tmp_path / "no-syslog"), "2001:db8:9::1", "lo:2001:db8:9::2/64"]
    ip(netns, "link", "set", "lo", "up")
    good = run("failoverd", args, netns)
    assert good.returncode == 0, good.stdout
    assert "ok    2001:db8:9::2 is not configured on this host" in good.stdout
    ip(netns, "addr", "add", "2001:db8:9::2/64", "dev", "lo", "nodad")
    taken = run("failoverd", args, netns)
    assert taken.returncode == EX_CONFIG
    assert "FAIL  2001:db8:9::2 is already configured on lo" in taken.stdout


def test_every_program_parses_its_arguments_with_the_one_parser() -> None:
    # One argparse subclass (failoverd.cli.argparser) for every program: its errors exit 64, never argparse's 2.
    import ast

    import failoverd

    root = Path(failoverd.__file__).parent
    subclasses = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("ArgumentParser") for b in node.bases):
                subclasses.append(f"{path.relative_to(root)}:{node.name}")
    assert subclasses == ["cli/argparser.py:ArgumentParser"]


# --- the etcd witness (spec/witness.md) ------------------------------------------

ETCD = ["--etcd-endpoints", "http://10.9.0.1:2379, https://etcd2:2379"]


def test_witness_options_on_both_daemons() -> None:
    assert parse_backup([MASTER, PAIR]).witness is None
    assert parse_master(["--manage", "eth0:192.0.2.10", "10.0.0.2"]).witness is None
    config = parse_backup([*ETCD, "--etcd-prefix", "/site-a/", "--etcd-cacert", "/ca", "--etcd-cert", "/c",
                           "--etcd-key", "/k", "--etcd-credentials", "/etc/failoverd/etcd",
                           "--etcd-unreachable", "drop", "--interval", "0.1", MASTER, PAIR])
    witness = config.witness
    assert witness is not None
    assert witness.endpoints == ("http://10.9.0.1:2379", "https://etcd2:2379")
    assert (witness.prefix, witness.cacert, witness.cert, witness.key) == ("/site-a/", Path("/ca"), Path("/c"), Path("/k"))
    assert (witness.credentials_file, witness.unreachable) == (Path("/etc/failoverd/etcd"), "drop")
    # The witness timing follows the heartbeat interval: spec/witness.md's table at 0.1 s.
    t = witness.timing
    assert (t.renew_period, t.validity, t.release_margin, t.wait_after_grant) == (0.1, 0.4, 0.05, 0.401)
    assert witness.request_timeout == 0.1
    master = parse_master([*ETCD, "--manage", "eth0:192.0.2.10", "10.0.0.2"])
    assert isinstance(master, MasterConfig) and master.witness is not None
    assert (master.witness.prefix, master.witness.unreachable) == ("/failoverd/", "keep")
    assert master.witness.timing.validity == 4.0 and master.witness.request_timeout == 0.5
    described = "\n".join(config.describe())
    assert "witness: etcd at http://10.9.0.1:2379 https://etcd2:2379, prefix /site-a/" in described
    assert "credentials from /etc/failoverd/etcd" in described and "witness unreachable: drop" in described
    assert "witness: none (no --etcd-endpoints)" in "\n".join(parse_backup([MASTER, PAIR]).describe())


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--etcd-prefix", "/x/"], "--etcd-prefix given without --etcd-endpoints"),
        (["--etcd-unreachable", "drop", "--etcd-credentials", "/c"],
         "--etcd-credentials, --etcd-unreachable given without --etcd-endpoints"),
        (["--etcd-endpoints", "ftp://a"], "etcd endpoint 'ftp://a' is not a URL like http://10.0.0.5:2379"),
        (["--etcd-endpoints", "http://a:99999"], "etcd endpoint 'http://a:99999' has a bad port"),
        (["--etcd-endpoints", "http://a:1,,http://b:1"], "an empty endpoint between commas"),
        (["--etcd-endpoints", "http://a:1,http://a:1/"], "an endpoint given twice"),
        (["--etcd-endpoints", "http://a:1", "--etcd-prefix", "failoverd"], "--etcd-prefix 'failoverd' must start and end"),
        (["--etcd-endpoints", "http://a:1", "--etcd-cert", "/c"], "needs both --etcd-cert and --etcd-key"),
        (["--etcd-endpoints", "http://a:1", "--etcd-cacert", "/ca"], "no --etcd-endpoints URL is https://"),
        (["--etcd-endpoints", "http://a:1", "--etcd-unreachable", "hold"], "argument --etcd-unreachable: invalid choice"),
    ],
)
def test_witness_diagnostics(argv: list[str], text: str) -> None:
    assert text in usage_error(parse_backup, [*argv, MASTER, PAIR])
    assert text in usage_error(parse_master, [*argv, "--manage", "eth0:192.0.2.10", "10.0.0.2"])


def test_a_witness_cannot_leave_addresses_behind() -> None:
    assert "nobody would renew the claim" in usage_error(parse_backup, [*ETCD, "--keep-addresses-on-exit", MASTER, PAIR])


def test_a_witness_without_httpx_is_a_clear_usage_error() -> None:
    # httpx is an optional extra (failoverd[witness]): a process where it cannot be imported.
    code = ("import sys; sys.modules['httpx'] = None\n"
            "from failoverd.cli.options import parse_backup\n"
            "from failoverd.cli.exitcodes import UsageError\n"
            "try:\n    parse_backup(['--etcd-endpoints', 'http://10.0.0.5:2379', '10.0.0.1', 'eth0:10.0.0.100'])\n"
            "except UsageError as error:\n    print(error)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "the etcd witness needs httpx" in done.stdout and "install failoverd[witness]" in done.stdout, done


def test_a_witness_mode_backup_may_record_a_trace() -> None:
    config = parse_backup([*ETCD, "--trace", "/tmp/t", MASTER, PAIR])
    assert config.trace_file == Path("/tmp/t") and config.witness is not None


def test_heartbeatd_witness_needs_managed_addresses() -> None:
    assert "--etcd-endpoints needs --manage" in usage_error(parse_master, [*ETCD, "10.0.0.2"])


def test_no_run_checks_the_witness_files(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the credentials file must be root's to pass the trusted-path rules")
    credentials = tmp_path / "etcd"
    credentials.write_text("failoverd:secret\n")
    credentials.chmod(0o644)
    args = ["-n", "--etcd-endpoints", "https://10.9.0.1:2379", "--etcd-credentials", str(credentials),
            "--etcd-cacert", str(tmp_path / "no-ca.pem"), "--manage", "eth0:192.0.2.10", "10.0.0.2"]
    result = run("heartbeatd", args)
    assert result.returncode == EX_CONFIG
    assert f"FAIL  etcd credentials file {credentials} has mode 0644" in result.stdout
    assert f"FAIL  --etcd-cacert {tmp_path / 'no-ca.pem'}: No such file or directory" in result.stdout
    assert "secret" not in result.stdout
    credentials.chmod(0o600)
    assert f"ok    etcd credentials file {credentials} is usable" in run("heartbeatd", args).stdout


# --- several backups (spec/backups.md) ------------------------------------------


def test_several_backups_options() -> None:
    config = parse_backup([
        "--key-file", "/k", "--peer", "10.100.0.12=250", "--peer", "fe80::2%eth1=50", "--priority", "200", "--preempt",
        MASTER, PAIR,
    ])
    assert isinstance(config, BackupConfig)
    assert config.peers == (IPv4Address("10.100.0.12"), IPv6Address("fe80::2%eth1"))
    assert config.peer_priorities == (250, 50) and config.rank == 1
    assert config.priority == 200 and config.preempt
    assert config.ipv6  # an IPv6 peer: the heartbeat socket is dual-stack
    settings = config.detector_settings()
    assert settings.peers == ("10.100.0.12", "fe80::2%eth1") and settings.wire_priority == 200
    assert settings.peer_table == {"10.100.0.12": 250, "fe80::2%eth1": 50}
    assert any("several backups: priority 200 (rank 1), peers 10.100.0.12=250 fe80::2%eth1=50" in line
               for line in config.describe())


def test_several_backups_with_a_witness() -> None:
    """--peer and --backups N go with --etcd-endpoints, keep (the default) and drop alike: the
    claim decides who holds, and keep needs every other host's confirmation (spec/witness.md,
    "With several backups")."""
    for outage in ([], ["--etcd-unreachable", "drop"]):
        config = parse_backup(["--key-file", "/k", "--peer", "10.100.0.12=50", *ETCD, *outage, MASTER, PAIR])
        assert isinstance(config, BackupConfig) and config.witness is not None
        assert config.peers == (IPv4Address("10.100.0.12"),)
        assert config.witness.unreachable == ("drop" if outage else "keep")
        settings = config.detector_settings()
        assert settings.witness is not None and settings.peer_table == {"10.100.0.12": 50}
        master = parse_master(["--key-file", "/k", "--backups", "2", *ETCD, *outage, "--manage", "eth0:192.0.2.10",
                               "10.0.0.2", "10.0.0.3"])
        assert isinstance(master, MasterConfig) and master.witness is not None and master.backups == 2


def test_several_backups_defaults() -> None:
    config = parse_backup([MASTER, PAIR])
    assert isinstance(config, BackupConfig)
    assert config.peers == () and config.priority == 100 and not config.preempt and not config.ipv6
    assert config.detector_settings().wire_priority == 0  # a pair: priority 0 on the wire, as ever


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--peer", "10.100.0.12=50"], "--peer needs --key-file: legacy heartbeats carry no status"),
        (["--key-file", "/k", "--peer", "10.100.0.12=50", "--peer", "10.100.0.12=60"],
         "--peer 10.100.0.12 is given twice"),
        (["--key-file", "/k", "--peer", f"{MASTER}=50"], f"--peer {MASTER}=50 is master_priv_addr"),
        (["--key-file", "/k", "--peer", "10.100.0.300=50"], "--peer 10.100.0.300=50: address '10.100.0.300'"),
        (["--key-file", "/k", "--peer", "224.0.0.1=50"], "not a unicast host address"),
        (["--key-file", "/k", "--peer", "10.100.0.12"],
         "--peer 10.100.0.12: expected ADDR=PRIORITY (the peer's --priority, 1-254), e.g. --peer 10.100.0.12=50"),
        (["--key-file", "/k", "--peer", "=50"], "--peer =50: no address before '='"),
        (["--key-file", "/k", "--peer", "10.100.0.12="], "--peer 10.100.0.12=: priority '' is not a whole number 1-254"),
        (["--key-file", "/k", "--peer", "10.100.0.12=high"],
         "--peer 10.100.0.12=high: priority 'high' is not a whole number 1-254"),
        (["--key-file", "/k", "--peer", "10.100.0.12=255"], "--peer 10.100.0.12=255: priority 255 is not within 1-254"),
        (["--key-file", "/k", "--peer", "10.100.0.12=0"], "--peer 10.100.0.12=0: priority 0 is not within 1-254"),
        (["--key-file", "/k", "--peer", "10.100.0.12=100"],
         "--peer 10.100.0.12=100: priority 100 is ours too (--priority 100); each backup of one master needs its own"),
        (["--key-file", "/k", "--priority", "7", "--peer", "10.100.0.12=50", "--peer", "fe80::2%eth1=50"],
         "--peer fe80::2%eth1=50: priority 50 is --peer 10.100.0.12=50's too"),
        (["--priority", "0"], "argument --priority: 0 is not within 1-254"),
        (["--priority", "255"], "argument --priority: 255 is not within 1-254"),
        (["--priority", "high"], "argument --priority: 'high' is not a whole number 1-254"),
        (["--priority", "+50"], "argument --priority: '+50' is not a whole number 1-254"),
        (["--key-file", "/k", "--peer", "10.100.0.12=5_0"],
         "--peer 10.100.0.12=5_0: priority '5_0' is not a whole number 1-254"),
        (["--key-file", "/k", "--peer", "10.100.0.12= 50"],
         "--peer 10.100.0.12= 50: priority ' 50' is not a whole number 1-254"),
        (["--key-file", "/k", "--peer", "10.100.0.12=\u0665\u0660"], "is not a whole number 1-254"),
        (["--preempt"], "--preempt needs --peer"),
        (["--key-file", "/k", "--peer", "10.100.0.12=50", "--preempt", "--etcd-endpoints", "http://10.0.0.9:2379"],
         "--preempt with --etcd-endpoints is not supported yet"),
    ],
)
def test_several_backups_usage_errors(argv: list[str], text: str) -> None:
    assert text in usage_error(parse_backup, [*argv, MASTER, PAIR])


def test_preflight_checks_each_peer_is_another_host_and_its_scope_exists() -> None:
    host = preflight.HostView(links={"eth1": 0}, addresses={IPv4Address("10.100.0.11"): "eth0"})
    peers = (IPv4Address("10.100.0.11"), IPv6Address("fe80::2%eth9"), IPv6Address("fe80::2%eth1"))
    checks = preflight._peer_checks(zip(peers, (50, 60, 150)), 100, host)
    assert [c.status for c in checks] == ["FAIL", "FAIL", "ok"]
    assert "configured here on eth0" in checks[0].text and "no interface eth9" in checks[1].text
    assert checks[2].text == "peer backup fe80::2%eth1, priority 150 (takes over before us; ours 100)"


def test_a_peer_that_is_this_host_or_a_broadcast_address_here_is_refused_at_start_and_by_n() -> None:
    host = preflight.HostView(links={"eth1": 0}, addresses={IPv4Address("10.100.0.11"): "eth0"},
                              broadcasts={IPv4Address("10.100.0.255"): "eth0"})
    config = parse_backup(["--key-file", "/k", "--peer", "10.100.0.255=50", "--peer", "10.100.0.11=60",
                           "--peer", "10.100.0.12=70", MASTER, PAIR])
    assert isinstance(config, BackupConfig)
    assert preflight.peer_problems(config, host) == [
        "--peer 10.100.0.255: it is the broadcast address of eth0's network; name each other backup's unicast address",
        "--peer 10.100.0.11 is configured here on eth0; list the other backups, not this one",
    ]
    checks = preflight._peer_checks(zip(config.peers, config.peer_priorities), config.priority, host)
    assert [c.status for c in checks] == ["FAIL", "FAIL", "ok"]


@pytest.mark.netns
def test_several_backups_refuse_a_broadcast_target_of_this_host(netns: str, tmp_path: Path) -> None:
    """A subnet's broadcast address is known only on the host: refused at start (78) and by -n."""
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    ip(netns, "link", "set", "lo", "up")
    ip(netns, "addr", "add", "10.9.7.1/24", "dev", "lo")
    args = ["--key-file", str(key), "--backups", "2", "--state-dir", str(tmp_path / "state"),
            "--pid-file", str(tmp_path / "p"), "--syslog-socket", str(tmp_path / "no-syslog")]
    refused = run("heartbeatd", [*args, "10.9.7.2", "10.9.7.255"], netns)
    assert refused.returncode == EX_CONFIG and not (tmp_path / "p").exists()
    assert ("heartbeatd: --backups 2 with ip_addr 10.9.7.255: it is the broadcast address of lo's network"
            in refused.stderr)
    checked = run("heartbeatd", ["-n", *args, "10.9.7.2", "10.9.7.255"], netns)
    assert checked.returncode == EX_CONFIG
    assert "FAIL  --backups 2 with ip_addr 10.9.7.255: it is the broadcast address" in checked.stdout
    unicast = run("heartbeatd", ["-n", *args, "10.9.7.2", "10.9.7.3"], netns)
    assert "broadcast address" not in unicast.stdout, unicast.stdout

