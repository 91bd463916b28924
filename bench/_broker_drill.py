"""Producer and consumer processes for the broker drill (bench/broker.py, tests/platform/test_broker.py).

    python bench/_broker_drill.py produce --transport atomicfs --dir D --prefix p1 --count 1000
    python bench/_broker_drill.py consume --transport atomicfs --dir D --out ids.txt [--die-after K]

A consumer appends each message's id to `--out` (one line, flushed) before it acks, and stops once the
queue has been empty for `--idle` seconds. `--die-after K` SIGKILLs itself on receiving the K-th
message, before acking it: a worker killed mid-task. Plain kombu, no Django.
"""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kombu  # noqa: E402

from common import broker  # noqa: E402

QUEUE = "drill"


def connection(transport: str, folder: str, recover_interval: float = 10) -> kombu.Connection:
    broker.register()
    if transport == "redis":
        return kombu.Connection(folder)  # --dir is the URL here
    if transport == "atomicfs":
        options = {"data_folder": folder, "polling_interval": 0.05, "recover_interval": recover_interval}
    else:  # kombu's own, configured as this project configured it before
        queue = Path(folder) / "queue"
        for sub in ("queue", "processed", "control"):
            (Path(folder) / sub).mkdir(parents=True, exist_ok=True)
        options = {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "control_folder": str(Path(folder) / "control"),
            "processed_folder": str(Path(folder) / "processed"),
            "store_processed": False,
            "polling_interval": 0.05,
        }
    return kombu.Connection(f"{transport}://", transport_options=options)


def produce(args) -> None:
    queue = kombu.Queue(QUEUE, routing_key=QUEUE)
    with connection(args.transport, args.dir) as conn:
        producer = conn.Producer(serializer="json")
        for i in range(args.count):
            # A body of some size makes a torn read likelier, as a task with arguments would.
            producer.publish({"id": f"{args.prefix}-{i}", "pad": "x" * args.pad}, routing_key=QUEUE, declare=[queue])


def consume(args) -> None:
    queue = kombu.Queue(QUEUE, routing_key=QUEUE)
    received = 0
    conn = connection(args.transport, args.dir, args.recover_interval)
    with open(args.out, "a", buffering=1) as out, conn:

        def on_message(body, message):
            nonlocal received
            received += 1
            if args.die_after and received == args.die_after:
                out.write(f"{body['id']}\n")  # delivered, never acked: it must come again
                out.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            out.write(f"{body['id']}\n")
            message.ack()

        with conn.Consumer(queue, callbacks=[on_message], accept=["json"], prefetch_count=1):
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < args.idle:
                try:
                    conn.drain_events(timeout=0.2)
                    idle_since = time.monotonic()
                except TimeoutError:
                    pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["produce", "consume"])
    parser.add_argument("--transport", choices=["atomicfs", "filesystem", "redis"], default="atomicfs")
    parser.add_argument("--dir", required=True, help="the broker's folder (redis: its URL)")
    parser.add_argument("--prefix", default="p")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--pad", type=int, default=2000)
    parser.add_argument("--out")
    parser.add_argument("--idle", type=float, default=3.0)
    parser.add_argument("--die-after", type=int, default=0)
    parser.add_argument("--recover-interval", type=float, default=10)
    args = parser.parse_args()
    produce(args) if args.role == "produce" else consume(args)


if __name__ == "__main__":
    main()
