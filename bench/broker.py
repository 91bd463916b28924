"""The embedded broker against kombu's filesystem transport (and Redis, when it runs): the evidence for
docs/operations.md.

Three producer and three consumer processes (bench/_broker_drill.py) share one queue; messages carry
100 kB so that a write takes long enough to be caught half-done. Reported per transport: messages
delivered, lost, delivered twice, consumer crashes, and throughput. The figure is atomicfs' throughput;
its floor is kombu's filesystem transport in the same run (which usually crashes part-way: its rate is
that of the messages it managed before).

    python bench/broker.py [--count 400] [--pad 100000] [--redis redis://127.0.0.1:6379/1]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _report import report  # noqa: E402

DRILL = HERE / "_broker_drill.py"


def run(transport: str, target: str, workdir: Path, count: int, pad: int, producers=3, consumers=3) -> dict:
    def drill(*args):
        cmd = [sys.executable, str(DRILL), *args, "--transport", transport, "--dir", target]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    started = time.monotonic()
    readers = [drill("consume", "--out", str(workdir / f"out-{i}.txt"), "--idle", "3") for i in range(consumers)]
    writers = [
        drill("produce", "--prefix", f"p{i}", "--count", str(count), "--pad", str(pad)) for i in range(producers)
    ]
    for proc in writers + readers:
        proc.communicate()
    elapsed = time.monotonic() - started - 3  # the consumers' idle wait
    received = Counter()
    for path in workdir.glob("out-*.txt"):
        received.update(path.read_text().split())
    sent = producers * count
    expected = {f"p{p}-{i}" for p in range(producers) for i in range(count)}
    return {
        "transport": transport,
        "sent": sent,
        "delivered": len(set(received) & expected),
        "lost": len(expected - set(received)),
        "twice": sum(1 for n in received.values() if n > 1),
        "crashes": sum(1 for proc in readers if proc.returncode != 0),
        "rate": len(received) / max(elapsed, 0.001),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=400, help="messages per producer")
    parser.add_argument("--pad", type=int, default=100_000, help="bytes of padding per message")
    parser.add_argument("--redis", default="", help="also measure Redis at this URL (a db of its own)")
    args = parser.parse_args()
    rows = []
    for transport in ("filesystem", "atomicfs", "redis"):
        if transport == "redis" and not args.redis:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            target = args.redis if transport == "redis" else str(Path(tmp) / "broker")
            rows.append(run(transport, target, Path(tmp), args.count, args.pad))
    print(f"{'transport':<12} {'sent':>6} {'delivered':>10} {'lost':>6} {'twice':>6} {'crashes':>8} {'msg/s':>8}")
    for r in rows:
        print(
            f"{r['transport']:<12} {r['sent']:>6} {r['delivered']:>10} {r['lost']:>6} {r['twice']:>6} "
            f"{r['crashes']:>8} {r['rate']:>8.0f}"
        )
    ours = next(r for r in rows if r["transport"] == "atomicfs")
    floor = next(r for r in rows if r["transport"] == "filesystem")
    sound = ours["lost"] == 0 and ours["twice"] == 0 and ours["crashes"] == 0
    report(
        "broker: atomicfs msg/s, 0 lost/dup/crash",
        ours["rate"],
        "msg/s",
        "0 lost",
        sound,
        ratio=ours["rate"] / max(floor["rate"], 0.001),
        ratio_target="(kombu filesystem)",
    )
    return 0 if sound else 1


if __name__ == "__main__":
    sys.exit(main())
