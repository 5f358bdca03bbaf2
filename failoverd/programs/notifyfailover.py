"""NotifyFailover: mail the administrator that the failover peer failed or came back.

    NotifyFailover [options] {up | down} ip_address ...
    NotifyFailover [options] --alarm TEXT [--level LEVEL] [ip_address ...]

``down``: the peer has failed (the backup is taking over the addresses);
``up``: the peer is available again (the backup releases them). ``--alarm``
is our addition: a condition an operator must look at (a contested address,
a quiet heartbeat path), mailed by the same route so that one program decides
how mail leaves the host, as in the original.

Recipients come from ``FAILOVER_EMAIL_RECIPIENT`` (names separated by commas
and/or spaces; unset or blank: ``root``, which the relay delivers locally).
The mail goes by plain SMTP to ``--smtp-host``/``--smtp-port`` (or
``FAILOVER_SMTP_HOST``/``FAILOVER_SMTP_PORT``), default localhost:25 — the
host's own MTA, which queues and relays it further.

Exit status (sysexits): 0 sent; 64 usage (bad option or address); 69 the
relay is unreachable, refused the connection or rejected the mail
permanently (5xx); 75 a temporary failure (timeout, 4xx, dropped
connection), worth retrying; 78 bad configuration in the environment.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import smtplib
import socket
import sys
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from failoverd import __version__
from failoverd.cli.argparser import ArgumentParser, parse_or_exit
from failoverd.core.addresses import AddressError, parse_ip

PROG = "NotifyFailover"
DEFAULT_RECIPIENT = "root"
DEFAULT_SMTP_HOST = "localhost"
DEFAULT_SMTP_PORT = 25
DEFAULT_SMTP_TIMEOUT = 10.0
ALARM_LEVELS = ("info", "warning", "error", "critical")

ENV_RECIPIENT = "FAILOVER_EMAIL_RECIPIENT"
ENV_SMTP_HOST = "FAILOVER_SMTP_HOST"
ENV_SMTP_PORT = "FAILOVER_SMTP_PORT"

# A mailbox as an administrator writes one in hostconfig: local part with an
# optional domain; no display names, quotes or angle brackets (they would
# need header parsing and are never needed for a notification list).
_MAILBOX = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+(@[A-Za-z0-9.-]+)?")
_SUBJECT_TEXT_MAX = 120

USAGE = f"""\
{PROG} [options] {{up|down}} ip_address ...
       {PROG} [options] --alarm TEXT [--level LEVEL] [ip_address ...]"""


class NotifyError(Exception):
    """A reason the mail was not sent; ``status`` is the exit code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        usage=USAGE,
        description="Mail the administrator that the failover peer is down (failed) or up (available again).",
        epilog=(
            f"Recipients: ${ENV_RECIPIENT} (comma/space separated; default {DEFAULT_RECIPIENT}). "
            f"Relay: ${ENV_SMTP_HOST}, ${ENV_SMTP_PORT} (default {DEFAULT_SMTP_HOST}:{DEFAULT_SMTP_PORT}). "
            "Exit status: 0 sent, 64 usage, 69 relay unavailable or mail refused, 75 temporary failure, "
            "78 bad configuration."
        ),
    )
    parser.add_argument("words", nargs="*", metavar="{up|down} ip_address", help=argparse.SUPPRESS)
    parser.add_argument("--alarm", metavar="TEXT", help="send an alarm with this text instead of up/down")
    parser.add_argument(
        "--level", choices=ALARM_LEVELS, default=None, help="severity of an --alarm (default warning)"
    )
    parser.add_argument("--peer", metavar="NAME", help="the failover peer concerned (its address or name)")
    parser.add_argument("--smtp-host", metavar="HOST", help=f"SMTP relay (default ${ENV_SMTP_HOST} or localhost)")
    parser.add_argument("--smtp-port", metavar="PORT", help=f"SMTP port (default ${ENV_SMTP_PORT} or 25)")
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_SMTP_TIMEOUT,
        help=f"bound on each exchange with the relay (default {DEFAULT_SMTP_TIMEOUT:g})",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the message and its recipients instead of sending it"
    )
    parser.add_argument("-v", "--version", action="version", version=f"{PROG} {__version__}")
    return parser


def parse_recipients(text: str | None) -> list[str]:
    """``FAILOVER_EMAIL_RECIPIENT`` as a list; unset or blank means ``root``."""
    names = [n for n in re.split(r"[,\s]+", text or "") if n]
    if not names:
        return [DEFAULT_RECIPIENT]
    for name in names:
        if _MAILBOX.fullmatch(name) is None:
            raise NotifyError(
                os.EX_CONFIG,
                f"{ENV_RECIPIENT}: {name!r} is not a mail address (expected user or user@domain)",
            )
    # Keep the administrator's order, drop repeats.
    return list(dict.fromkeys(names))


def _parse_port(text: str, source: str, status: int) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise NotifyError(status, f"{source}: invalid SMTP port {text!r}; valid ports range from 1 to 65535")
    return int(text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _host_name() -> str:
    # gethostname, not getfqdn: a broken resolver must not delay the mail.
    return socket.gethostname() or "localhost"


def compose(
    *,
    event: str,
    addresses: Sequence[str],
    recipients: Sequence[str],
    host: str,
    when: _dt.datetime,
    peer: str | None = None,
    alarm: str | None = None,
    level: str = "warning",
) -> EmailMessage:
    """The message for ``event`` (``up``, ``down`` or ``alarm``)."""
    listed = ", ".join(addresses) if addresses else "none given"
    stamp = when.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    lines: list[str]
    if event == "down":
        subject = f"[failoverd] peer DOWN: {listed} (reported by {host})"
        lines = [
            f"The failover peer{f' {peer}' if peer else ''} has FAILED: {host} stopped hearing its heartbeats.",
            "",
            "On the backup this means it is taking over the public addresses below;",
            "on the master it means the backup is no longer watching.",
        ]
        todo = [
            "Find out why the peer went silent: host down, daemon stopped, or the",
            "  private network between the two hosts cut.",
            "Check which host now answers for the addresses: run `failoverctl status`",
            "  on both hosts; exactly one should hold each address.",
            "Once the peer is repaired and its heartbeats are heard again, the backup",
            "  releases the addresses (you will get an 'up' mail).",
        ]
    elif event == "up":
        subject = f"[failoverd] peer UP: {listed} (reported by {host})"
        lines = [
            f"The failover peer{f' {peer}' if peer else ''} is AVAILABLE again: {host} hears its heartbeats.",
            "",
            "The backup releases the public addresses below so the master serves them.",
        ]
        todo = [
            "Check with `failoverctl status` on both hosts that only the master holds",
            "  the addresses, and that clients reach them.",
            "Look at the log of the earlier failure to see why the peer was down.",
        ]
    elif event == "alarm":
        assert alarm is not None
        summary = _one_line(alarm)
        if len(summary) > _SUBJECT_TEXT_MAX:
            summary = summary[: _SUBJECT_TEXT_MAX - 1] + "…"
        subject = f"[failoverd] ALARM ({level}) on {host}: {summary}"
        lines = [f"failoverd on {host} raised an alarm ({level}):", "", *("  " + line for line in alarm.splitlines())]
        todo = [
            "Run `failoverctl status` on both hosts and read the daemon's log around",
            "  the time below. A contested address means another host answers for it:",
            "  do not take it by hand until you know which one.",
        ]
    else:
        raise ValueError(f"unknown event {event!r}")

    body = [
        *lines,
        "",
        f"Event:     {event}",
        f"Peer:      {peer or 'not given'}",
        f"Addresses: {listed}",
        f"Host:      {host}",
        f"Time:      {stamp}",
        "",
        "What to do:",
        *("  - " + t if not t.startswith("  ") else "    " + t.lstrip() for t in todo),
        "",
        f"-- NotifyFailover {__version__} on {host}",
    ]
    msg = EmailMessage()
    msg["From"] = f"failoverd@{host}"
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(idstring="failoverd", domain=host)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("\n".join(body) + "\n")
    return msg


def _smtp_failure(exc: smtplib.SMTPResponseException, what: str) -> NotifyError:
    status = os.EX_TEMPFAIL if 400 <= exc.smtp_code < 500 else os.EX_UNAVAILABLE
    reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return NotifyError(status, f"{what}: {exc.smtp_code} {reply}")


def send(msg: EmailMessage, recipients: Sequence[str], host: str, port: int, timeout: float) -> None:
    """Hand ``msg`` to the relay or raise :class:`NotifyError`."""
    relay = f"{host}:{port}"
    sender = msg["From"]
    try:
        with smtplib.SMTP(host, port, timeout=timeout, local_hostname=_host_name()) as smtp:
            refused = smtp.send_message(msg, from_addr=sender, to_addrs=list(recipients))
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        status = os.EX_TEMPFAIL if all(400 <= c < 500 for c in codes) else os.EX_UNAVAILABLE
        detail = "; ".join(
            f"{rcpt}: {code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"
            for rcpt, (code, text) in exc.recipients.items()
        )
        raise NotifyError(status, f"relay {relay} refused every recipient: {detail}") from None
    except smtplib.SMTPResponseException as exc:
        raise _smtp_failure(exc, f"relay {relay} rejected the mail") from None
    except smtplib.SMTPServerDisconnected as exc:
        # smtplib reports a read timeout as a disconnection; say what happened.
        if isinstance(exc.__context__, TimeoutError):
            raise NotifyError(os.EX_TEMPFAIL, f"relay {relay} did not answer within {timeout:g} s") from None
        raise NotifyError(os.EX_TEMPFAIL, f"relay {relay} closed the connection: {exc}") from None
    except TimeoutError:
        raise NotifyError(
            os.EX_TEMPFAIL, f"relay {relay} did not answer within {timeout:g} s"
        ) from None
    except socket.gaierror as exc:
        status = os.EX_TEMPFAIL if exc.errno == socket.EAI_AGAIN else os.EX_UNAVAILABLE
        raise NotifyError(status, f"cannot resolve relay host {host!r}: {exc.strerror}") from None
    except ConnectionRefusedError:
        raise NotifyError(
            os.EX_UNAVAILABLE, f"relay {relay} refused the connection (is an MTA listening there?)"
        ) from None
    except OSError as exc:
        raise NotifyError(os.EX_UNAVAILABLE, f"cannot reach relay {relay}: {exc.strerror or exc}") from None
    if refused:
        # Some got it, some did not: the ones left out were not told.
        detail = "; ".join(f"{rcpt}: {code}" for rcpt, (code, _) in refused.items())
        codes = [code for code, _ in refused.values()]
        status = os.EX_TEMPFAIL if all(400 <= c < 500 for c in codes) else os.EX_UNAVAILABLE
        raise NotifyError(status, f"relay {relay} refused some recipients ({detail}); the others were sent the mail")


def _settings(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, int, float]:
    host = args.smtp_host if args.smtp_host is not None else environ.get(ENV_SMTP_HOST, "").strip()
    if args.smtp_host is not None and not host.strip():
        raise NotifyError(os.EX_USAGE, "--smtp-host: empty host name")
    host = host or DEFAULT_SMTP_HOST
    if args.smtp_port is not None:
        port = _parse_port(args.smtp_port, "--smtp-port", os.EX_USAGE)
    elif environ.get(ENV_SMTP_PORT, "").strip():
        port = _parse_port(environ[ENV_SMTP_PORT].strip(), ENV_SMTP_PORT, os.EX_CONFIG)
    else:
        port = DEFAULT_SMTP_PORT
    if not 0 < args.timeout <= 3600:
        raise NotifyError(os.EX_USAGE, f"--timeout: {args.timeout:g} s is outside 0..3600 s")
    return host, port, args.timeout


def _event_and_addresses(args: argparse.Namespace) -> tuple[str, list[str]]:
    words: list[str] = args.words
    if args.alarm is not None:
        if not args.alarm.strip():
            raise NotifyError(os.EX_USAGE, "--alarm: empty alarm text")
        event, address_args = "alarm", words
    else:
        if args.level is not None:
            raise NotifyError(os.EX_USAGE, "--level is only for --alarm")
        if not words or words[0] not in ("up", "down"):
            got = f"{words[0]!r}" if words else "nothing"
            raise NotifyError(os.EX_USAGE, f"expected 'up' or 'down' (or --alarm TEXT), got {got}")
        event, address_args = words[0], words[1:]
        if not address_args:
            raise NotifyError(os.EX_USAGE, f"{event}: at least one ip_address is required")
    addresses: list[str] = []
    for text in address_args:
        try:
            addresses.append(str(parse_ip(text)))
        except AddressError as exc:
            raise NotifyError(os.EX_USAGE, str(exc)) from None
    return event, list(dict.fromkeys(addresses))


def run(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = _build_parser()
    args = parse_or_exit(parser, argv)
    environ = os.environ if environ is None else environ
    try:
        event, addresses = _event_and_addresses(args)
        if args.peer is not None and (not args.peer.strip() or _one_line(args.peer) != args.peer or len(args.peer) > 255):
            raise NotifyError(os.EX_USAGE, f"--peer: {args.peer!r} is not a single word of at most 255 characters")
        host, port, timeout = _settings(args, environ)
        recipients = parse_recipients(environ.get(ENV_RECIPIENT))
        msg = compose(
            event=event,
            addresses=addresses,
            recipients=recipients,
            host=_host_name(),
            when=_dt.datetime.now().astimezone(),
            peer=args.peer,
            alarm=args.alarm,
            level=args.level or "warning",
        )
        if args.dry_run:
            sys.stdout.write(f"# relay {host}:{port}, envelope recipients: {' '.join(recipients)}\n")
            sys.stdout.write(msg.as_string())
            return os.EX_OK
        send(msg, recipients, host, port, timeout)
    except NotifyError as exc:
        if exc.status == os.EX_USAGE:
            parser.print_usage(sys.stderr)
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.status
    return os.EX_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
