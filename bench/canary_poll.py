"""One canary poll round over 1,000 instances, 10 % of which hang: bounded by the timeout, not by N.

The health endpoints are real HTTP servers on loopback in a child process (one asyncio loop listening
on 1,000 ports: 900 answer 200 at once, 100 accept the connection and never answer). The poller is
canary.probes.poll_many, exactly what a poll round uses. Figures:

- round time with 100 hanging endpoints and a 1 s per-request timeout; target <= 2 s;
- its ratio to the floor measured in the same run: the per-request timeout itself (a round with a
  hanging endpoint cannot end sooner), and, for reference, the same 1,000 endpoints all healthy.

Run: .venv/bin/python bench/canary_poll.py [--instances 1000] [--hang-share 0.1] [--timeout 1]
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


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(count: int, hanging: int):
    """Listen on `count` ports; the first `hanging` accept and never answer. Prints the ports, then waits."""
    servers, ports, stuck = [], [], []

    async def answer(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK_RESPONSE)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError):
            pass
        finally:
            writer.close()

    async def hang(reader, writer):
        stuck.append(writer)  # keep the connection open, say nothing

    for n in range(count):
        server = await asyncio.start_server(hang if n < hanging else answer, "127.0.0.1", 0, backlog=256)
        servers.append(server)
        ports.append(server.sockets[0].getsockname()[1])
    print(json.dumps({"ports": ports, "hanging": hanging}), flush=True)
    # Serve until the parent closes our stdin, then drop everything without ceremony.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    os._exit(0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--hang-share", type=float, default=0.10)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    hanging = int(args.instances * args.hang_share)
    if args.serve:
        asyncio.run(serve(args.instances, hanging))
        return 0

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from canary.probes import poll_many

    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--instances", str(args.instances), "--hang-share", str(args.hang_share)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(child.stdout.readline())
        ports = info["ports"]
        urls = [f"http://127.0.0.1:{p}/health" for p in ports]
        healthy_urls = urls[hanging:]
        hang_urls = set(urls[:hanging])
        random.Random(7).shuffle(urls)  # hanging endpoints anywhere in the round, as in life
        poll_many(healthy_urls[:50], timeout=args.timeout)  # warm up imports and the thread machinery

        started = time.monotonic()
        baseline = poll_many(healthy_urls, timeout=args.timeout)
        all_ok_round = time.monotonic() - started

        started = time.monotonic()
        results = poll_many(urls, timeout=args.timeout)
        round_time = time.monotonic() - started
    finally:
        child.stdin.close()
        child.wait(timeout=10)

    healthy = sum(r.healthy for r in results)
    timed_out = sum("timed out" in r.reason for r in results)
    wrong = [r for r in results if r.url not in hang_urls and not r.healthy]
    ratio = round_time / args.timeout
    target = 2.0
    print(f"instances polled:          {len(results)} ({hanging} hang, {len(results) - hanging} answer 200)")
    print(f"healthy / timed out:       {healthy} / {timed_out}   (misjudged healthy endpoints: {len(wrong)})")
    print(f"round, all {len(baseline)} healthy: {all_ok_round:.3f} s (reference)")
    print(f"round with hangs:          {round_time:.3f} s")
    print(f"per-request timeout:       {args.timeout:.3f} s (the floor: a hang cannot be judged sooner)")
    print(f"ratio round / timeout:     {ratio:.2f}x")
    print(
        f"target:                    <= {target:.1f} s with a 1 s timeout ({'met' if round_time <= target else 'NOT met'})"
    )
    load = os.getloadavg()[0]
    print(f"machine:                   {os.cpu_count()} cores, load average {load:.1f} (starvation shows as misjudged)")
    from _report import report

    report(
        "canary poll round: 1000 instances, 10 % hang",
        round(round_time, 3),
        "s",
        f"<= {target:g} s",
        round_time <= target and not wrong,
        ratio=round(ratio, 2),
        ratio_target="<= 2x timeout",
    )
    return 0 if round_time <= target and not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
