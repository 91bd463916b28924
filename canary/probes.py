"""HTTP health probes: poll many URLs at once, each with a short timeout. No ORM.

One round is bounded by the timeout, not by the number of URLs: every URL gets its own thread
(up to `max_workers`), and the round ends ROUND_FACTOR timeouts after it started; whatever has not
answered by then is recorded as timed out. A hang, connection error, non-2xx answer or redirect is
unhealthy, with the reason.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_WORKERS = 1000
# A round lasts at most this many per-request timeouts.
ROUND_FACTOR = 1.5


@dataclass(frozen=True)
class ProbeResult:
    url: str
    healthy: bool
    status_code: int | None
    latency_ms: int | None
    reason: str


# One session for every poller thread: no retries, no redirects followed, no proxies or .netrc from the
# environment (trust_env=False): a probe goes straight to the instance, once.
_session = requests.Session()
_session.trust_env = False
_session.mount("http://", HTTPAdapter(pool_connections=16, pool_maxsize=1, max_retries=0))
_session.mount("https://", HTTPAdapter(pool_connections=16, pool_maxsize=1, max_retries=0))
_HEADERS = {"Connection": "close", "User-Agent": "fleet-canary-probe/1"}


def probe(url: str, timeout: float = DEFAULT_TIMEOUT, deadline: float | None = None) -> ProbeResult:
    """GET one health URL. Redirects are not followed: a health endpoint that redirects is misconfigured.

    The body is not read (stream=True): the status code is the verdict, and a slow body cannot stretch
    the probe. `deadline` (the end of the round) shortens the timeout of a probe that started late.
    """
    started = time.monotonic()
    if deadline is not None:  # started late in a big round: only what is left of the round
        timeout = max(0.05, min(timeout, deadline - started))
    try:
        response = _session.get(url, timeout=timeout, allow_redirects=False, stream=True, headers=_HEADERS)
    # ConnectTimeout is both a ConnectionError and a Timeout: it must be caught first.
    except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout):
        return ProbeResult(url, False, None, _ms(started), f"timed out after {timeout:.2g} s")
    except requests.exceptions.ConnectionError as exc:
        return ProbeResult(url, False, None, _ms(started), f"connection error: {_short(exc)}")
    except (requests.exceptions.RequestException, OSError, ValueError) as exc:
        return ProbeResult(url, False, None, _ms(started), f"request error: {_short(exc)}")
    latency = _ms(started)
    code = response.status_code
    location = response.headers.get("Location", "")
    response.close()
    if 200 <= code < 300:
        return ProbeResult(url, True, code, latency, "")
    if 300 <= code < 400:
        return ProbeResult(url, False, code, latency, f"redirect (HTTP {code}) to {location}"[:300])
    return ProbeResult(url, False, code, latency, f"HTTP {code}")


def poll_many(
    urls: list[str], *, timeout: float = DEFAULT_TIMEOUT, max_workers: int = DEFAULT_MAX_WORKERS
) -> list[ProbeResult]:
    """Probe every URL concurrently; results in the order of `urls`.

    The round ends by `ROUND_FACTOR * timeout` after it started, whatever the number of URLs: a probe
    that only gets a thread late has what is left of the round, and one that never started is
    reported as not polled. So a round costs about one timeout, not one timeout per hanging instance.
    """
    if not urls:
        return []
    started = time.monotonic()
    deadline = started + ROUND_FACTOR * timeout
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(urls))), thread_name_prefix="canary-probe")
    try:
        futures = [pool.submit(probe, url, timeout, deadline) for url in urls]
        wait_futures(futures, timeout=max(0.0, deadline - time.monotonic()) + 0.2)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    results = []
    for url, future in zip(urls, futures, strict=True):
        if future.done() and not future.cancelled():
            exc = future.exception()
            if exc is not None:  # a bug or an exotic failure in one probe must not lose the round
                results.append(ProbeResult(url, False, None, None, f"probe error: {_short(exc)}"))
            else:
                results.append(future.result())
        elif future.cancelled():
            results.append(
                ProbeResult(url, False, None, None, "not polled: the round's deadline passed before it started")
            )
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
