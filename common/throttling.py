"""API throttles that cost one cache operation per request, whatever the rate.

DRF's SimpleRateThrottle keeps every request time of the last period in one cache entry and rewrites
it on each request: O(rate) work and two cache round trips per request, which on the agent endpoints
(heartbeats, one every interval from every instance) was the largest cost after the database. A fixed
window keeps one counter per (client, window) and bumps it with `cache.incr` (atomic in Redis and
memcached; under the per-process lock in locmem).

Trade-off: a client may burst up to twice the rate across a window boundary. For limits that protect
the server from a misbehaving agent or a token-guessing address, that is the accepted cost.
"""

from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

from .auth import client_address


class FixedWindowRateThrottle(SimpleRateThrottle):
    def get_ident(self, request):
        """Anonymous clients by address as the sign-in lockout reads it: X-Forwarded-For counts only from
        TRUSTED_PROXIES (DRF's own get_ident takes it from anyone, so a forged header dodged the limit)."""
        return client_address(request) or "unknown"

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_ends = (window + 1) * self.duration
        key = f"{self.key}:{window}"
        try:
            count = self.cache.incr(key)
        except ValueError:  # this request opens the window (add: another may have opened it meanwhile)
            count = 1 if self.cache.add(key, 1, self.duration + 1) else self.cache.incr(key)
        return count <= self.num_requests

    def wait(self):
        return max(self.window_ends - self.now, 0)


class ScopedFixedWindowThrottle(ScopedRateThrottle, FixedWindowRateThrottle):
    """`throttle_scope` on the view picks the rate from DEFAULT_THROTTLE_RATES, as ScopedRateThrottle."""
