"""HTTP health probes: one round polls many instances at once, each with a short timeout. No ORM.

A round is bounded by the timeout, not by the hanging instances, and costs little CPU per instance:
`poll_many` drives every connection from one non-blocking event loop (epoll via `selectors`), so a
probe costs a file descriptor and about 0.1 ms of CPU, not a thread. The round ends `round_deadline`
after it started — ROUND_FACTOR timeouts plus PER_TARGET per instance (the CPU time the connections
themselves need); whatever has not answered by then is timed out. A hang, a connection error, a
non-2xx answer or a redirect is unhealthy, with the reason.

Outbound rules come first: each target's host is passed to `resolve(host, port)` (the panel uses
`common.net.resolve_outbound`), which returns the addresses the panel may connect to or raises; a refusal
is that probe's result and no connection is made. The probe then connects to a returned address, never
resolving the name again, and sends `GET <path>` with the original `Host`. Plain HTTP/1.1; the body is
never read (the status line is the verdict, and a slow body cannot stretch a round).
"""

import contextlib
import errno
import heapq
import ipaddress
import os
import selectors
import socket
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

DEFAULT_TIMEOUT = 2.0
ROUND_FACTOR = 1.5  # a round lasts at most this many per-request timeouts…
PER_TARGET = 0.0003  # …plus this much per instance: setting up 10,000 connections takes CPU time too
MAX_IN_FLIGHT = 2000  # connections open at once (file descriptors); the rest wait their turn
MAX_HEAD_BYTES = 16384
RESOLVER_THREADS = 16  # DNS look-ups of host names run here, before the round's connections


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"


@dataclass(frozen=True)
class ProbeResult:
    url: str
    healthy: bool
    status_code: int | None
    latency_ms: int | None
    reason: str  # why it is unhealthy ("" when healthy)


def round_deadline(timeout: float, count: int) -> float:
    """The longest a round of `count` probes lasts, in seconds."""
    return ROUND_FACTOR * timeout + PER_TARGET * count


def _request(target: Target) -> bytes:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return (
        f"GET {target.path} HTTP/1.1\r\nHost: {host}:{target.port}\r\nUser-Agent: fleet-canary-probe/2\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def _parse_head(url: str, head: bytes, latency: int) -> ProbeResult:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return ProbeResult(url, False, None, latency, "not an HTTP answer")
    code = int(parts[1])
    if 200 <= code < 300:
        return ProbeResult(url, True, code, latency, "")
    if 300 <= code < 400:
        location = next(
            (line.split(b":", 1)[1].strip() for line in lines[1:] if line.lower().startswith(b"location:")), b""
        )
        text = location.decode("latin-1")[:200]
        return ProbeResult(url, False, code, latency, f"redirect (HTTP {code}) to {text}")
    return ProbeResult(url, False, code, latency, f"HTTP {code}")


def _open(ip: str, port: int) -> socket.socket:
    """A non-blocking socket with its connection to ip:port under way (the only place a probe connects)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    code = sock.connect_ex((ip, port))
    if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
        sock.close()
        raise OSError(code, os.strerror(code))
    return sock


def _reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "connection error: connection refused"
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"connection error: {text.lower()[:200]}"


class _Probe:
    """One probe in flight: connecting, then reading the response head."""

    __slots__ = ("index", "target", "addresses", "sock", "started", "expires", "buffer", "request", "sent")

    def __init__(self, index, target, addresses, started, expires):
        self.index, self.target, self.addresses = index, target, list(addresses)
        self.started, self.expires, self.buffer, self.sent = started, expires, b"", False
        self.request = _request(target)
        self.sock = None


class _Round:
    """The event loop of one round (see `poll_many`)."""

    def __init__(self, targets, resolved, timeout):
        self.targets, self.timeout = targets, timeout
        self.results: list[ProbeResult | None] = [None] * len(targets)
        self.queue = deque()
        for index, (target, addresses) in enumerate(zip(targets, resolved, strict=True)):
            if isinstance(addresses, str):  # refused by the outbound rules: never contacted
                self.results[index] = ProbeResult(target.url, False, None, None, addresses)
            else:
                self.queue.append((index, addresses))
        self.selector = selectors.DefaultSelector()
        self.expiries: list[tuple[float, int, _Probe]] = []
        self.open: dict[int, _Probe] = {}

    def run(self) -> list[ProbeResult]:
        deadline = time.monotonic() + round_deadline(self.timeout, len(self.targets))
        try:
            while self.queue or self.open:
                now = time.monotonic()
                if now >= deadline:
                    self._read(0)  # answers already waiting are in time: the loop, not the instance, was late
                    break
                self._start_more(deadline)
                wait = min(0.05, deadline - now, (self.expiries[0][0] - now) if self.expiries else 0.05)
                self._read(max(0.0, wait))
                self._expire(time.monotonic())
        finally:
            self._give_up()
            self.selector.close()
        return self.results

    def _start_more(self, deadline) -> None:
        while self.queue and len(self.open) < MAX_IN_FLIGHT:
            index, addresses = self.queue.popleft()
            now = time.monotonic()  # each probe's own start: opening 2,000 connections takes a while
            expires = min(now + self.timeout, deadline)
            probe = _Probe(index, self.targets[index], addresses, now, expires)
            if self._connect(probe):
                heapq.heappush(self.expiries, (expires, index, probe))

    def _connect(self, probe) -> bool:
        while probe.addresses:  # in the order the resolver gave them, like socket.create_connection
            ip = probe.addresses.pop(0)
            try:
                probe.sock = _open(ip, probe.target.port)
            except OSError as exc:
                if not probe.addresses:
                    self._finish(probe, ProbeResult(probe.target.url, False, None, _ms(probe.started), _reason(exc)))
                continue
            self.open[probe.index] = probe
            self.selector.register(probe.sock, selectors.EVENT_WRITE, probe)
            return True
        return False

    def _ready(self, probe) -> None:
        if self.results[probe.index] is not None:
            return
        try:
            if not probe.sent:
                error = probe.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise OSError(error, os.strerror(error))
                probe.sock.send(probe.request)
                probe.sent = True
                self.selector.modify(probe.sock, selectors.EVENT_READ, probe)
                return
            chunk = probe.sock.recv(4096)
        except OSError as exc:
            self._close(probe)
            if exc.errno == errno.ECONNREFUSED and probe.addresses and self._connect(probe):
                return
            self._finish(probe, ProbeResult(probe.target.url, False, None, _ms(probe.started), _reason(exc)))
            return
        probe.buffer += chunk
        if not chunk and not probe.buffer:
            result = ProbeResult(
                probe.target.url,
                False,
                None,
                _ms(probe.started),
                "connection error: the connection closed without an answer",
            )
        elif not chunk or b"\r\n\r\n" in probe.buffer or len(probe.buffer) > MAX_HEAD_BYTES:
            result = _parse_head(probe.target.url, probe.buffer, _ms(probe.started))
        else:
            return
        self._close(probe)
        self._finish(probe, result)

    def _read(self, wait: float) -> None:
        for key, _mask in self.selector.select(wait):
            self._ready(key.data)

    def _expire(self, now) -> None:
        """Time out the probes past their expiry. Answers already in the socket buffers are read first: on
        a busy loop (thousands of connections) an answer can sit there a while, and it came in time."""
        if not (self.expiries and self.expiries[0][0] <= now):
            return
        self._read(0)
        while self.expiries and self.expiries[0][0] <= now:
            _, _, probe = heapq.heappop(self.expiries)
            if self.results[probe.index] is None:
                self._close(probe)
                self._finish(probe, self._timed_out(probe))

    def _timed_out(self, probe) -> ProbeResult:
        return ProbeResult(probe.target.url, False, None, _ms(probe.started), f"timed out after {self.timeout:.2g} s")

    def _give_up(self) -> None:
        """The round's deadline: what is still open timed out; what never started was not polled."""
        for probe in list(self.open.values()):
            self._close(probe)
            if self.results[probe.index] is None:
                self._finish(probe, self._timed_out(probe))
        for index, _ in self.queue:
            reason = "not polled: the round's deadline passed before it started"
            self.results[index] = ProbeResult(self.targets[index].url, False, None, None, reason)

    def _close(self, probe) -> None:
        if probe.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(probe.sock)
            probe.sock.close()
            probe.sock = None
        self.open.pop(probe.index, None)

    def _finish(self, probe, result) -> None:
        if self.results[probe.index] is None:
            self.results[probe.index] = result


def _literal_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve_all(targets, resolve) -> list:
    """For every target its addresses, or the refusal text. Host names are looked up in threads."""

    def one(key):
        host, port = key
        try:
            return list(resolve(host, port))
        except Exception as exc:  # noqa: BLE001 - a refusal or a failed look-up is that probe's result
            return getattr(exc, "message", None) or f"The panel could not reach {host}:{port}."

    keys = list(dict.fromkeys((t.host, t.port) for t in targets))
    names = [k for k in keys if not _literal_ip(k[0])]
    found = {}
    if names:
        with ThreadPoolExecutor(max_workers=min(RESOLVER_THREADS, len(names))) as pool:
            found = dict(zip(names, pool.map(one, names), strict=True))
    for key in keys:
        if key not in found:
            found[key] = one(key)  # an IP literal: checked against the deny list, no DNS
    return [found[(t.host, t.port)] for t in targets]


def poll_many(targets: list[Target], *, timeout: float = DEFAULT_TIMEOUT, resolve) -> list[ProbeResult]:
    """Probe every target concurrently; results in the order of `targets`. Ends by `round_deadline`.

    One non-blocking loop over plain sockets instead of a thread (or an asyncio task) per probe: what it
    buys is CPU — about 0.1 ms per probe, so a round of 10,000 instances fits in 5 s on two shared cores
    (bench/canary_poll.py), where a requests.Session per thread cost about 1 ms each.
    """
    if not targets:
        return []
    return _Round(list(targets), _resolve_all(targets, resolve), float(timeout)).run()


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def probe(url: str, *, timeout: float = DEFAULT_TIMEOUT, resolve=None) -> ProbeResult:
    """One `http://host[:port]/path` probed exactly as a round probes it (the outbound rules of
    common.net.resolve_outbound unless `resolve` is given). For tools and tests; rounds use poll_many."""
    from urllib.parse import urlsplit

    if resolve is None:
        from common.net import resolve_outbound as resolve
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    (result,) = poll_many([Target(parts.hostname or "", parts.port or 80, path)], timeout=timeout, resolve=resolve)
    return result
