"""A claim on an address set, held through an etcd v3 cluster: the witness (spec/witness.md).

The client speaks etcd's gRPC-JSON gateway (``/v3/kv/txn``, ``/v3/kv/range``,
``/v3/lease/grant``, ``/v3/lease/keepalive``, ``/v3/lease/revoke``,
``/v3/watch``, ``/v3/auth/authenticate``) over httpx, which runs under Trio
through anyio: one dependency that is maintained, already speaks TLS with
client certificates, and needs no generated gRPC code (spec/witness.md,
"The client", says what else was considered).

A claim is one key, ``<prefix>claim/<name>``, whose value names the holder and
carries a token new at every claim, attached to an etcd lease so that a dead
holder's claim disappears on its own (the lease is only that: safety never
rests on when etcd expires it). The four operations:

- :meth:`Witness.claim` -- a transaction that writes the key only when no claim
  exists (``create_revision == 0``), or, to take over a claim that stopped
  renewing, only when the key is unchanged since it was read
  (``mod_revision == seen``);
- :meth:`Witness.renew` -- a transaction that rewrites the key only while it
  still holds this claim's token. Its :class:`Proof` says when the request was
  *sent*: the claim was current at some instant after that, which is all the
  holder may rely on (spec/witness.md, "The holder's deadline");
- :meth:`Witness.release` -- delete the key if it is still ours, and revoke the lease;
- :meth:`Witness.watch` -- the key's changes, as they are committed (``async with
  witness.watch(name) as events: async for event in events``).

Every read is linearizable (never ``serializable``): a minority member must
not answer for the cluster.

Error handling: every failure is a :class:`WitnessError` whose message names
the endpoint(s) and what happened. :class:`WitnessUnreachable`: no endpoint
answered within the request's deadline (each endpoint's own failure is in the
message). :class:`WitnessRefused`: etcd answered with an error (its code and
words). :class:`ClaimRefused`: another claim exists (it carries it).
:class:`ClaimLost`: this claim is no longer the key's. :class:`WitnessConfigError`:
an endpoint, prefix, name, TTL, TLS file or credentials file is unusable; raised
by the constructor or :func:`read_credentials`, before anything is sent. A
request that timed out may still take effect later: the caller must treat the
claim as unknown, as the design does.

Resource handling: :class:`Witness` is an async context manager owning one
httpx client (its connections); every request has a deadline (``timeout``,
for all the endpoints together), and a watch's stream (read by a task of its
own) ends when its ``async with`` is left.
"""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
import ssl
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from failoverd.system.trusted import Untrusted, open_trusted

DEFAULT_PREFIX = "/failoverd/"
DEFAULT_TIMEOUT = 0.5  # seconds, every endpoint together; renewals need far less (spec/witness.md)
MAX_CREDENTIALS_FILE = 4096
CREDENTIALS_MODES = (0o600, 0o400)
# etcd's gRPC status codes that mean "this member cannot serve now; another may".
_TRY_ANOTHER = {14}  # UNAVAILABLE (no leader, member stopping, ...)
_AUTH_EXPIRED = {16}  # UNAUTHENTICATED: a token from before a restart


class WitnessError(Exception):
    """Something about the witness failed; the message says what and where."""


class WitnessConfigError(WitnessError):
    """An option or a file for the witness is unusable."""


class WitnessUnreachable(WitnessError):
    """No endpoint answered within the deadline."""


class WitnessRefused(WitnessError):
    """etcd answered the request with an error."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Holder:
    """What the claim key holds now."""

    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    @property
    def host(self) -> str:
        """The holder's name as its claim gives it ("?" for a value that is not a failoverd claim)."""
        try:
            return str(json.loads(self.value)["host"])
        except (ValueError, KeyError, TypeError):
            return "?"


class ClaimRefused(WitnessError):
    """The key already holds a claim (or changed since it was read)."""

    def __init__(self, message: str, holder: Holder | None) -> None:
        super().__init__(message)
        self.holder = holder


class ClaimLost(WitnessError):
    """This claim is no longer the key's: another host's replaced it, or its lease expired."""


@dataclass(frozen=True)
class Claim:
    """A claim this host made: the key, the value it wrote (with its token), its lease."""

    name: str
    key: bytes
    value: bytes
    lease: int
    ttl: int  # the lease's TTL in seconds, as etcd granted it (it raises a too-short one)
    revision: int  # the store's revision at the claim
    sent_at: float  # trio's clock before the claim's transaction was sent: the claim is a proof from here
    answered_at: float  # trio's clock when its answer was read: the wait after the grant counts from here


@dataclass(frozen=True)
class Proof:
    """A renewal that found the claim current, at an instant after ``sent_at`` (trio's clock)."""

    claim: Claim
    sent_at: float
    revision: int


@dataclass(frozen=True)
class WatchEvent:
    kind: str  # "put" or "delete"
    revision: int
    holder: Holder | None  # the new value ("put"); None for "delete"


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"Credentials(user={self.user!r})"


def read_credentials(path: Path | str) -> Credentials:
    """``user:password`` from the first line of ``path``, a file only its owner can read.

    Error handling: a missing file, an untrusted path (failoverd.system.trusted's
    rules), a mode other than 0600/0400, a file over 4 KiB and a line without
    ``user:`` each get their own :class:`WitnessConfigError`.
    """
    path = Path(path)
    try:
        fd, info = open_trusted(path, "file")
    except Untrusted as error:
        raise WitnessConfigError(f"etcd credentials file {path}: {error.explanation}") from None
    except OSError as error:
        raise WitnessConfigError(f"cannot read etcd credentials file {path}: {error.strerror or error}") from None
    try:
        mode = stat.S_IMODE(info.st_mode)
        if mode not in CREDENTIALS_MODES:
            raise WitnessConfigError(
                f"etcd credentials file {path} has mode {mode:04o}; it holds a password and must be "
                f"readable by its owner only: chmod 600 {path}"
            )
        with open(f"/proc/self/fd/{fd}", "rb") as handle:
            data = handle.read(MAX_CREDENTIALS_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_CREDENTIALS_FILE:
        raise WitnessConfigError(f"etcd credentials file {path} is larger than 4 KiB; is it the right file?")
    try:
        line = data.decode("utf-8").splitlines()[0] if data.strip() else ""
    except UnicodeDecodeError:
        raise WitnessConfigError(f"etcd credentials file {path} is not UTF-8 text") from None
    user, colon, password = line.strip().partition(":")
    if not colon or not user:
        raise WitnessConfigError(f"etcd credentials file {path}: the first line must be user:password")
    return Credentials(user, password)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _int(message: dict[str, Any], field: str) -> int:
    # The gateway writes int64 fields as strings and leaves out zeros.
    return int(message.get(field, 0))


def _holder(kv: dict[str, Any]) -> Holder:
    return Holder(
        value=_unb64(kv.get("value", "")),
        create_revision=_int(kv, "create_revision"),
        mod_revision=_int(kv, "mod_revision"),
        lease=_int(kv, "lease"),
    )


class Watch:
    """The events of a watch (:meth:`Witness.watch`), parsed as they are read."""

    def __init__(self, url: str, lines: trio.MemoryReceiveChannel[bytes | BaseException]) -> None:
        self._url = url
        self._lines = lines
        self._pending: list[WatchEvent] = []

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        while not self._pending:
            try:
                item = await self._lines.receive()
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
            if isinstance(item, BaseException):
                raise item
            if item.strip():
                self._pending.extend(self._parse(item))
        return self._pending.pop(0)

    def _parse(self, line: bytes) -> list[WatchEvent]:
        try:
            message = json.loads(line)
        except ValueError:
            raise WitnessRefused(f"etcd {self._url}/v3/watch: a line that is not JSON: {line[:200]!r}") from None
        if "error" in message:
            raise WitnessRefused(f"etcd {self._url}/v3/watch: {message['error'].get('message')}")
        result = message.get("result", {})
        if result.get("canceled"):
            raise WitnessRefused(f"etcd {self._url}/v3/watch canceled: {result.get('cancel_reason', '?')}")
        events = []
        for event in result.get("events", []):
            kind = event.get("type", "PUT").lower()
            kv = event.get("kv", {})
            events.append(WatchEvent(kind, _int(kv, "mod_revision"), _holder(kv) if kind == "put" else None))
        return events


class _Body(httpx.AsyncByteStream):
    """A request body that is not an async generator. httpx's own (``json=``) is one, and
    when a connection fails before the body is sent (a refused certificate) Trio finds it
    unfinished at garbage collection and warns; this one has nothing to finish."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __aiter__(self) -> _Once:
        return _Once(self._data)


class _Once:
    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data


def _describe(error: BaseException) -> str:
    """The error's own words, or those of the first cause that has some: httpx's
    ConnectError for a refused certificate says nothing itself, the ssl error inside it does."""
    seen: BaseException | None = error
    for _ in range(5):  # bounded: a chain is a few links long
        if seen is None:
            break
        if str(seen):
            return f"{type(error).__name__}: {seen}"
        seen = seen.__cause__ or seen.__context__
    return f"{type(error).__name__} (no detail)"


def check_endpoints(endpoints: Sequence[str]) -> list[str]:
    """The endpoints as base URLs, or :class:`WitnessConfigError` naming the bad one."""
    if not endpoints:
        raise WitnessConfigError("no etcd endpoint given")
    urls = []
    for endpoint in endpoints:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
                or parts.query or parts.fragment or parts.username:
            raise WitnessConfigError(
                f"etcd endpoint {endpoint!r} is not a URL like http://10.0.0.5:2379 or https://etcd1:2379"
            )
        try:
            _ = parts.port  # urlsplit checks the port only when asked for it
        except ValueError:
            raise WitnessConfigError(f"etcd endpoint {endpoint!r} has a bad port") from None
        urls.append(f"{parts.scheme}://{parts.netloc}")
    return urls


class Witness:
    """One host's connection to the etcd cluster, for claims under ``prefix``.

    ``host`` is written into every claim (what operators and other hosts see);
    ``timeout`` bounds each request over all endpoints together. TLS: ``cacert``
    checks the members' certificates (https endpoints), ``cert``/``key`` are this
    host's client certificate. ``credentials``: etcd user and password
    (:func:`read_credentials`), never from the command line.
    """

    def __init__(self, endpoints: Sequence[str], *, host: str, prefix: str = DEFAULT_PREFIX,
                 timeout: float = DEFAULT_TIMEOUT, cacert: str | None = None, cert: str | None = None,
                 key: str | None = None, credentials: Credentials | None = None) -> None:
        self.endpoints = check_endpoints(endpoints)
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise WitnessConfigError(f"etcd prefix {prefix!r} must start and end with '/'")
        if not host:
            raise WitnessConfigError("a witness client needs this host's name")
        if not (0 < timeout <= 60) or math.isnan(timeout):
            raise WitnessConfigError(f"etcd request timeout {timeout!r} must be within (0, 60] seconds")
        if (cert is None) != (key is None):
            raise WitnessConfigError("an etcd client certificate needs both --etcd-cert and --etcd-key")
        if (cacert is not None or cert is not None) and not any(url.startswith("https:") for url in self.endpoints):
            raise WitnessConfigError("etcd TLS files given but no endpoint is https://")
        self.host = host
        self.prefix = prefix
        self.timeout = timeout
        self._credentials = credentials
        self._token: str | None = None
        self._preferred = 0  # the endpoint that answered last: tried first next time
        self._verify: ssl.SSLContext | bool = True
        if cacert is not None or cert is not None:
            try:
                context = ssl.create_default_context(cafile=cacert)
                if cert is not None:
                    context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as error:
                raise WitnessConfigError(f"etcd TLS files ({cacert}, {cert}, {key}): {error}") from None
            self._verify = context
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Witness:
        # No proxy from the environment: the witness is on the hosts' own network.
        self._http = httpx.AsyncClient(verify=self._verify, trust_env=False,
                                       timeout=httpx.Timeout(self.timeout))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def key(self, name: str) -> bytes:
        if not name or "/" in name or any(ord(c) < 0x21 for c in name):
            raise WitnessConfigError(f"claim name {name!r} must be non-empty, printable, without '/'")
        return f"{self.prefix}claim/{name}".encode()

    # --- the operations ------------------------------------------------------

    async def read(self, name: str) -> Holder | None:
        """The claim on ``name`` now (a linearizable read), or None."""
        reply = await self._call("/v3/kv/range", {"key": _b64(self.key(name))})
        kvs = reply.get("kvs", [])
        return _holder(kvs[0]) if kvs else None

    async def claim(self, name: str, ttl: int, *, replacing: Holder | None = None) -> Claim:
        """Claim ``name`` with a lease of ``ttl`` seconds: only if no claim exists, or, with
        ``replacing``, only if the key still is exactly what was read then.

        Raises :class:`ClaimRefused` with the claim found instead. The lease of a refused
        claim is revoked (best effort: it expires anyway)."""
        if not isinstance(ttl, int) or not 1 <= ttl <= 3600:
            raise WitnessConfigError(f"claim lease TTL {ttl!r} must be a whole number of seconds, 1..3600")
        key = self.key(name)
        value = json.dumps({"host": self.host, "token": secrets.token_hex(16)}, sort_keys=True).encode()
        grant = await self._call("/v3/lease/grant", {"TTL": ttl})
        lease, granted = _int(grant, "ID"), _int(grant, "TTL")
        if replacing is None:
            compare = {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        else:
            compare = {"key": _b64(key), "target": "MOD", "result": "EQUAL",
                       "mod_revision": str(replacing.mod_revision)}
        sent_at = trio.current_time()
        try:
            reply = await self._call("/v3/kv/txn", {
                "compare": [compare],
                "success": [{"request_put": {"key": _b64(key), "value": _b64(value), "lease": str(lease)}}],
                "failure": [{"request_range": {"key": _b64(key)}}],
            })
        except WitnessError:
            await self._revoke_quietly(lease)
            raise
        if not reply.get("succeeded"):
            await self._revoke_quietly(lease)
            kvs = reply.get("responses", [{}])[0].get("response_range", {}).get("kvs", [])
            holder = _holder(kvs[0]) if kvs else None
            found = f"held by {holder.host} (revision {holder.mod_revision})" if holder else "gone since it was read"
            raise ClaimRefused(f"claim {name}: {found}", holder)
        return Claim(name, key, value, lease, granted, _int(reply.get("header", {}), "revision"),
                     sent_at, trio.current_time())

    async def renew(self, claim: Claim, *, keepalive: bool = True) -> Proof:
        """Rewrite the claim if it is still ours; with ``keepalive``, renew its lease too.

        Raises :class:`ClaimLost` when the key holds another value or none."""
        sent_at = trio.current_time()  # before anything is sent: the proof counts from here
        reply = await self._call("/v3/kv/txn", {
            "compare": [{"key": _b64(claim.key), "target": "VALUE", "result": "EQUAL", "value": _b64(claim.value)}],
            "success": [{"request_put": {"key": _b64(claim.key), "value": _b64(claim.value),
                                         "lease": str(claim.lease)}}],
        }, lost=claim)
        if not reply.get("succeeded"):
            raise ClaimLost(f"claim {claim.name}: the key no longer holds this host's claim")
        if keepalive:
            alive = await self._call("/v3/lease/keepalive", {"ID": str(claim.lease)}, lost=claim)
            if _int(alive.get("result", alive), "TTL") <= 0:
                raise ClaimLost(f"claim {claim.name}: its lease {claim.lease:x} expired")
        return Proof(claim, sent_at, _int(reply.get("header", {}), "revision"))

    async def release(self, claim: Claim) -> bool:
        """Delete the key if it still holds this claim, and revoke the lease; whether it did."""
        reply = await self._call("/v3/kv/txn", {
            "compare": [{"key": _b64(claim.key), "target": "VALUE", "result": "EQUAL", "value": _b64(claim.value)}],
            "success": [{"request_delete_range": {"key": _b64(claim.key)}}],
        })
        await self._revoke_quietly(claim.lease)
        return bool(reply.get("succeeded"))

    @asynccontextmanager
    async def watch(self, name: str, *, start_revision: int | None = None) -> AsyncIterator[Watch]:
        """The changes of ``name``'s claim from ``start_revision`` (default: from now on),
        as a :class:`Watch` to iterate while the context is open; leaving it ends the stream.

        The stream has no deadline (it is quiet while nothing changes); connecting has
        the usual one. Iterating raises :class:`WitnessUnreachable` when the stream breaks
        and :class:`WitnessRefused` when etcd ends it."""
        request: dict[str, Any] = {"key": _b64(self.key(name))}
        if start_revision is not None:
            request["start_revision"] = str(start_revision)
        url = self.endpoints[self._preferred]
        # A task reads the stream and only passes its lines on: it stops only by being
        # cancelled while it waits for the network, so httpx's chain of async generators
        # always finishes (stopping one of them half-way makes Trio warn). Lines are few
        # (one per write of the key) and the caller reads them as they come.
        send, receive = trio.open_memory_channel[bytes | BaseException](math.inf)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_stream, url, {"create_request": request}, send)
            try:
                yield Watch(url, receive)
            finally:
                nursery.cancel_scope.cancel()

    async def _read_stream(self, url: str, body: dict[str, Any],
                           send: trio.MemorySendChannel[bytes | BaseException]) -> None:
        with send:
            try:
                response = await self._client().send(
                    self._request(url + "/v3/watch", body, timeout=httpx.Timeout(self.timeout, read=None)),
                    stream=True)
                try:
                    if response.status_code != 200:
                        body_text = await response.aread()
                        send.send_nowait(self._refusal(url, "/v3/watch", response.status_code, body_text))
                        return
                    async for line in response.aiter_lines():
                        send.send_nowait(line.encode())
                    send.send_nowait(WitnessUnreachable(f"etcd {url}/v3/watch: the stream ended"))
                finally:
                    with trio.CancelScope(shield=True):
                        await response.aclose()
            except httpx.TransportError as error:
                send.send_nowait(WitnessUnreachable(f"etcd {url}/v3/watch: {_describe(error)}"))

    # --- plumbing --------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise WitnessError("the witness client is not open (use it as `async with Witness(...)`)")
        return self._http

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token} if self._token else {}

    def _request(self, url: str, body: dict[str, Any], timeout: httpx.Timeout | None = None) -> httpx.Request:
        data = json.dumps(body).encode()
        request = self._client().build_request(
            "POST", url, content=data, headers={**self._headers(), "Content-Type": "application/json"},
            timeout=timeout or httpx.Timeout(self.timeout))
        request.stream = _Body(data)  # same bytes, same Content-Length: see _Body
        return request

    async def _revoke_quietly(self, lease: int) -> None:
        try:
            await self._call("/v3/lease/revoke", {"ID": str(lease)})
        except WitnessError:
            pass  # it expires on its own; the claim's outcome is already decided

    async def _authenticate(self) -> None:
        assert self._credentials is not None
        self._token = None
        reply = await self._call("/v3/auth/authenticate",
                                 {"name": self._credentials.user, "password": self._credentials.password},
                                 authenticating=True)
        self._token = reply.get("token")
        if not self._token:
            raise WitnessRefused("etcd /v3/auth/authenticate: no token in the answer (is auth enabled?)")

    async def _call(self, path: str, body: dict[str, Any], *, lost: Claim | None = None,
                    authenticating: bool = False) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the first endpoint that serves it, within ``timeout``.

        An endpoint that cannot be reached, or answers UNAVAILABLE, passes the request to
        the next; any other etcd error is final. With ``lost``, etcd's "lease not found"
        is :class:`ClaimLost` for that claim."""
        if self._credentials is not None and self._token is None and not authenticating:
            await self._authenticate()
        http = self._client()
        failures: list[str] = []
        with trio.move_on_after(self.timeout) as scope:
            for attempt in range(len(self.endpoints) * 2):  # each endpoint at most twice (auth renewal)
                index = (self._preferred + attempt) % len(self.endpoints)
                url = self.endpoints[index]
                try:
                    response = await http.send(self._request(url + path, body))
                except httpx.TransportError as error:
                    failures.append(f"{url}: {_describe(error)}")
                    continue
                if response.status_code == 200:
                    self._preferred = index
                    try:
                        reply = json.loads(response.content.splitlines()[0]) if response.content else {}
                    except (ValueError, IndexError):
                        raise WitnessRefused(f"etcd {url}{path}: an answer that is not JSON: "
                                             f"{response.content[:200]!r}") from None
                    if "error" in reply:  # a stream's error (keepalive)
                        refused = reply["error"]
                        raise self._refusal(url, path, refused.get("http_code", 500), json.dumps(refused).encode(),
                                            lost)
                    return reply
                refusal = self._refusal(url, path, response.status_code, response.content, lost)
                if refusal.code in _TRY_ANOTHER:
                    failures.append(str(refusal))
                    continue
                if refusal.code in _AUTH_EXPIRED and self._credentials is not None and not authenticating:
                    await self._authenticate()
                    continue
                raise refusal
        if scope.cancelled_caught:
            failures.append(f"no answer within {self.timeout:g} s")
        raise WitnessUnreachable(f"etcd {path}: no endpoint answered: " + "; ".join(failures))

    @staticmethod
    def _refusal(url: str, path: str, status: int, content: bytes, lost: Claim | None = None) -> WitnessRefused:
        try:
            detail = json.loads(content)
        except ValueError:
            detail = None
        if not isinstance(detail, dict):
            detail = {"message": content[:200].decode("utf-8", "replace")}
        message = detail.get("message") or detail.get("error") or "?"
        code = detail.get("code")
        if lost is not None and "lease not found" in str(message):
            raise ClaimLost(f"claim {lost.name}: its lease {lost.lease:x} expired ({message})")
        return WitnessRefused(f"etcd {url}{path}: HTTP {status}: {message}", code)
