"""HTTP health probes: one round polls many instances at once, each with a short timeout. No ORM.

A round is bounded by the timeout, not by the number of instances: every probe runs on one asyncio
event loop (a connection costs a file descriptor and a few hundred microseconds of CPU, not a thread),
and the round ends ROUND_FACTOR timeouts after it started; whatever has not answered by then is timed
out. A hang, a connection error, a non-2xx answer or a redirect is unhealthy, with the reason.

Outbound rules come first: each target's host is passed to `resolve(host, port)` (the panel uses
`common.net.resolve_outbound`), which returns the addresses the panel may connect to or raises; a refusal
is that probe's result and no connection is made. The probe then connects to a returned address, never
resolving the name again, and sends `GET <path>` with the original `Host`. Plain HTTP/1.1; the body is
never read (the status line is the verdict, and a slow body cannot stretch a round).
"""

import asyncio
import ipaddress
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

DEFAULT_TIMEOUT = 2.0
ROUND_FACTOR = 1.5  # a round lasts at most this many per-request timeouts
MAX_IN_FLIGHT = 2000  # connections open at once (file descriptors); the rest wait their turn
MAX_HEAD_BYTES = 16384
RESOLVER_THREADS = 16  # DNS look-ups of host names run here, off the event loop


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


class _Head(asyncio.Protocol):
    """Sends the request, collects the response head (status line and headers), then hangs up."""

    def __init__(self, request: bytes, done: asyncio.Future):
        self.request, self.done, self.buffer = request, done, b""

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        self.buffer += data
        if b"\r\n\r\n" in self.buffer or len(self.buffer) > MAX_HEAD_BYTES:
            self._finish(None)

    def connection_lost(self, exc):
        self._finish(exc)

    def _finish(self, exc):
        if self.done.done():
            return
        if self.buffer:
            self.done.set_result(self.buffer)
        else:
            self.done.set_exception(exc or ConnectionResetError("the connection closed without an answer"))
        self.transport.abort()


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


async def _connect_and_read(loop, target: Target, addresses: list[str]) -> bytes:
    last_error: Exception = OSError("no address")
    for ip in addresses:  # in the order the resolver gave them, like socket.create_connection
        done = loop.create_future()
        try:
            transport, _ = await loop.create_connection(
                lambda done=done: _Head(_request(target), done), ip, target.port
            )
        except OSError as exc:
            last_error = exc
            continue
        try:
            return await done
        finally:
            transport.abort()  # also when the timeout cancels the wait: never leave a socket open
    raise last_error


async def _probe(loop, target, addresses, timeout, deadline, gate) -> ProbeResult:
    async with gate:
        started = time.monotonic()
        budget = min(timeout, deadline - started)
        if budget <= 0:
            return ProbeResult(
                target.url, False, None, None, "not polled: the round's deadline passed before it started"
            )
        try:
            async with asyncio.timeout(budget):
                head = await _connect_and_read(loop, target, addresses)
        except TimeoutError:
            return ProbeResult(target.url, False, None, _ms(started), f"timed out after {timeout:.2g} s")
        except ConnectionRefusedError:
            return ProbeResult(target.url, False, None, _ms(started), "connection error: connection refused")
        except OSError as exc:
            return ProbeResult(target.url, False, None, _ms(started), f"connection error: {_short(exc)}")
        return _parse_head(target.url, head, _ms(started))


def _literal_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve_all(loop, targets, resolve) -> list:
    """{index: addresses or the refusal text} for every target; host names are looked up in threads."""

    def one(target):
        try:
            return list(resolve(target.host, target.port))
        except Exception as exc:  # noqa: BLE001 - a refusal or a failed look-up is that probe's result
            return getattr(exc, "message", None) or f"the panel could not reach {target.host}:{target.port}"

    cache: dict[tuple[str, int], object] = {}
    names = {(t.host, t.port): t for t in targets if not _literal_ip(t.host)}
    if names:
        with ThreadPoolExecutor(max_workers=min(RESOLVER_THREADS, len(names))) as pool:
            futures = {key: loop.run_in_executor(pool, one, t) for key, t in names.items()}
            for key, future in futures.items():
                cache[key] = await future
    results = []
    for target in targets:
        key = (target.host, target.port)
        if key not in cache:
            cache[key] = one(target)  # an IP literal: checked against the deny list, no DNS
        results.append(cache[key])
    return results


async def _round(targets, timeout, resolve) -> list[ProbeResult]:
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + ROUND_FACTOR * timeout
    resolved = await _resolve_all(loop, targets, resolve)
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    jobs = []
    for target, addresses in zip(targets, resolved, strict=True):
        if isinstance(addresses, str):
            jobs.append(None)
        else:
            jobs.append(asyncio.ensure_future(_probe(loop, target, addresses, timeout, deadline, gate)))
    results = []
    for target, addresses, job in zip(targets, resolved, jobs, strict=True):
        if job is None:
            results.append(ProbeResult(target.url, False, None, None, addresses))
            continue
        try:
            results.append(await job)
        except Exception as exc:  # noqa: BLE001 - a bug or an exotic failure in one probe must not lose the round
            results.append(ProbeResult(target.url, False, None, None, f"probe error: {_short(exc)}"))
    return results


def poll_many(targets: list[Target], *, timeout: float = DEFAULT_TIMEOUT, resolve) -> list[ProbeResult]:
    """Probe every target concurrently; results in the order of `targets`. Ends by ROUND_FACTOR × timeout."""
    if not targets:
        return []
    return asyncio.run(_round(list(targets), float(timeout), resolve))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _short(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.lower()[:200]
