"""Canary poll rounds of 1,000 and 10,000 instances, 10 % of which hang: bounded by the timeout, not by N.

The health endpoints are real HTTP servers on loopback in two child processes (asyncio loops listening
on one port per instance: 90 % answer 200 at once, 10 % accept the connection and never answer). The
poller is canary.probes.poll_many with common.net.resolve_outbound, exactly what a poll round uses.
Figures, each with a 1 s per-request timeout:

- a round of 1,000 instances, target <= 2 s;
- a round of 10,000 instances, target <= 5 s;
- the ratio of each to its floor, the per-request timeout itself (a round with a hanging endpoint
  cannot end sooner); the same endpoints all healthy are timed for reference, and every healthy
  endpoint judged unhealthy (starved past its timeout) is counted: there must be none.

Run: .venv/bin/python bench/canary_poll.py [--sizes 1000,10000] [--hang-share 0.1] [--timeout 1]
"""

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

OK_RESPONSE = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{"status": "ok"}'
TARGETS = {1000: 2.0, 10000: 5.0}


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Answer(asyncio.Protocol):
    """Answers 200 as soon as the request head has arrived, then hangs up."""

    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        if b"\r\n\r\n" in self.buffer:
            self.transport.write(OK_RESPONSE)
            self.transport.close()


class _Hang(asyncio.Protocol):
    """Accepts the connection and says nothing."""

    stuck: list = []

    def connection_made(self, transport):
        self.stuck.append(transport)


async def serve(count: int, hanging: int):
    """Listen on `count` ports; the first `hanging` accept and never answer. Prints the ports, then waits."""
    loop = asyncio.get_running_loop()
    ports = []
    for n in range(count):
        server = await loop.create_server(_Hang if n < hanging else _Answer, "127.0.0.1", 0, backlog=256)
        ports.append(server.sockets[0].getsockname()[1])
    print(json.dumps({"ports": ports, "hanging": hanging}), flush=True)
    # Serve until the parent closes our stdin, then drop everything without ceremony.
    await loop.run_in_executor(None, sys.stdin.read)
    os._exit(0)


class _Children:
    def __init__(self, procs):
        self.procs = procs
        self.stdin = self

    def close(self):
        for proc in self.procs:
            proc.stdin.close()

    def wait(self, timeout=None):
        for proc in self.procs:
            proc.wait(timeout=timeout)


def endpoints(count: int, hang_share: float, processes: int = 2):
    """Serve `count` endpoints from `processes` children (the answering side needs CPU too); returns
    (children, ports, hanging count) with the hanging ports first."""
    hanging = int(count * hang_share)
    share = -(-count // processes)
    procs, hang_ports, ok_ports = [], [], []
    for n in range(processes):
        size = min(share, count - n * share)
        hangs = min(max(0, hanging - n * share), size)
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--serve", str(size), "--hangs", str(hangs)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        info = json.loads(proc.stdout.readline())
        hang_ports += info["ports"][: info["hanging"]]
        ok_ports += info["ports"][info["hanging"] :]
    return _Children(procs), hang_ports + ok_ports, hanging


def one_size(count: int, args) -> bool:
    from canary.probes import Target, poll_many
    from common.net import resolve_outbound

    child, ports, hanging = endpoints(count, args.hang_share)
    try:
        targets = [Target("127.0.0.1", p, "/health") for p in ports]
        healthy_targets, hang_ports = targets[hanging:], set(ports[:hanging])
        random.Random(7).shuffle(targets)  # hanging endpoints anywhere in the round, as in life
        poll_many(healthy_targets[:50], timeout=args.timeout, resolve=resolve_outbound)  # warm up

        started = time.monotonic()
        baseline = poll_many(healthy_targets, timeout=args.timeout, resolve=resolve_outbound)
        all_ok_round = time.monotonic() - started
        cpu = time.process_time()
        started = time.monotonic()
        results = poll_many(targets, timeout=args.timeout, resolve=resolve_outbound)
        round_time = time.monotonic() - started
        cpu = time.process_time() - cpu
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    wrong = [r for r, t in zip(results, targets, strict=True) if t.port not in hang_ports and not r.healthy]
    timed_out = sum("timed out" in r.reason for r in results)
    target = TARGETS.get(count, 5.0)
    ratio = round_time / args.timeout
    ok = round_time <= target and not wrong and sum(not r.healthy for r in baseline) == 0
    print(f"-- {count} instances ({hanging} hang, {count - hanging} answer 200)")
    if wrong:
        from collections import Counter

        print("   misjudged because:", dict(Counter(r.reason[:60] for r in wrong).most_common(5)))
    print(
        f"   healthy / timed out:       {sum(r.healthy for r in results)} / {timed_out}   misjudged healthy: {len(wrong)}"
    )
    print(f"   round, {len(baseline)} all healthy: {all_ok_round:.3f} s (reference)")
    print(
        f"   round with hangs:          {round_time:.3f} s   (CPU {cpu:.2f} s, {1e6 * cpu / count:.0f} us per instance)"
    )
    print(f"   floor (timeout):           {args.timeout:.3f} s   ratio {ratio:.2f}x")
    print(f"   target:                    <= {target:g} s ({'met' if ok else 'NOT met'})")
    from _report import report

    report(
        f"canary poll round: {count} instances, 10 % hang",
        round(round_time, 3),
        "s",
        f"<= {target:g} s",
        ok,
        ratio=round(ratio, 2),
        ratio_target=f"<= {target / args.timeout:g}x timeout",
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--hang-share", type=float, default=0.10)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hangs", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.serve:
        asyncio.run(serve(args.serve, args.hangs))
        return 0
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")  # loopback allowed, as in development and the tests
    import django

    django.setup()
    results = [one_size(int(size), args) for size in args.sizes.split(",")]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (starvation shows as misjudged)")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
