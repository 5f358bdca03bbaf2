"""The emulator's control channel: JSON lines over a Unix stream socket, and a small blocking client.

One request per line, one answer per line, in order. The client opens a connection per request:
control traffic is rare, and a fresh connection can never be left half-read by an earlier error.
"""

from __future__ import annotations

import json
import socket
from typing import Any

MAX_LINE = 1 << 20
DEFAULT_TIMEOUT = 5.0


class ControlError(RuntimeError):
    """The emulator refused a request, or could not be reached."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError(f"not a JSON line: {line[:80]!r} ({exc})") from None


class LineBuffer:
    """Splits a byte stream into lines, refusing any line longer than MAX_LINE."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        if len(self._pending) > MAX_LINE:
            raise ControlError(f"control line longer than {MAX_LINE} bytes")
        return [line for line in lines if line.strip()]


def request(path: str, message: dict[str, Any], timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Send one request and return the answer; raise ControlError if it says ``ok: false``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(encode(message))
            buffer = LineBuffer()
            while True:
                data = sock.recv(65536)
                if not data:
                    raise ControlError(f"emulator at {path} closed the connection without answering")
                lines = buffer.feed(data)
                if lines:
                    break
    except OSError as exc:
        raise ControlError(f"cannot talk to the emulator at {path}: {exc}") from exc
    answer = decode(lines[0])
    if not isinstance(answer, dict):
        raise ControlError(f"emulator answered {answer!r}, not an object")
    if not answer.get("ok"):
        raise ControlError(f"emulator refused {message.get('op')!r}: {answer.get('error')}")
    return answer
