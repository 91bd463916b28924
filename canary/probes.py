"""HTTP health probes: poll many URLs at once, each with a short timeout. No ORM.

One round is bounded by the timeout, not by the number of URLs: every URL gets its own thread
(up to `max_workers`), and whatever has not answered when the round's deadline passes is recorded as
timed out. A hang, connection error, non-2xx answer or redirect is unhealthy, with the reason.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass

import requests

DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_WORKERS = 1000


@dataclass(frozen=True)
class ProbeResult:
    url: str
    healthy: bool
    status_code: int | None
    latency_ms: int | None
    reason: str


def probe(url: str, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    """GET one health URL. Redirects are not followed: a health endpoint that redirects is misconfigured."""
    started = time.monotonic()
    try:
        # stream=True: only the status line and headers are needed; the body is never read.
        response = requests.get(
            url, timeout=(timeout, timeout), allow_redirects=False, stream=True, headers={"Connection": "close"}
        )
    except requests.Timeout:
        return ProbeResult(url, False, None, _ms(started), f"timed out after {timeout:g} s")
    except requests.ConnectionError as exc:
        return ProbeResult(url, False, None, _ms(started), f"connection error: {_short(exc)}")
    except requests.RequestException as exc:
        return ProbeResult(url, False, None, _ms(started), f"request error: {_short(exc)}")
    latency = _ms(started)
    code = response.status_code
    response.close()
    if 200 <= code < 300:
        return ProbeResult(url, True, code, latency, "")
    if 300 <= code < 400:
        where = response.headers.get("Location", "")
        return ProbeResult(url, False, code, latency, f"redirect (HTTP {code}) to {where}"[:300])
    return ProbeResult(url, False, code, latency, f"HTTP {code}")


def poll_many(
    urls: list[str], *, timeout: float = DEFAULT_TIMEOUT, max_workers: int = DEFAULT_MAX_WORKERS
) -> list[ProbeResult]:
    """Probe every URL concurrently; results in the order of `urls`. Returns within about `timeout` + 0.5 s
    when len(urls) <= max_workers."""
    if not urls:
        return []
    started = time.monotonic()
    # A round never waits on a straggler much past the per-request timeout.
    deadline = timeout + 0.5
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(urls))), thread_name_prefix="canary-probe")
    try:
        futures = [pool.submit(probe, url, timeout) for url in urls]
        wait_futures(futures, timeout=deadline)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    results = []
    for url, future in zip(urls, futures, strict=True):
        if future.done() and not future.cancelled():
            results.append(future.result())
        else:
            results.append(ProbeResult(url, False, None, _ms(started), f"timed out after {timeout:g} s"))
    return results


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _short(exc: Exception) -> str:
    text = str(exc)
    # requests nests the useful part ("Connection refused") deep inside its message.
    for marker in ("Connection refused", "Name or service not known", "No route to host", "Connection reset"):
        if marker in text:
            return marker.lower()
    return text[:200]
