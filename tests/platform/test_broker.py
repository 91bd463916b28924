"""The embedded broker (common/broker.py): real files, real producer and consumer processes."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import kombu
import pytest

from common import broker

ROOT = Path(__file__).resolve().parents[2]
DRILL = ROOT / "bench" / "_broker_drill.py"


def _connection(folder, **options):
    broker.register()
    return kombu.Connection("atomicfs://", transport_options={"data_folder": str(folder), **options})


def _publish(conn, *ids):
    queue = kombu.Queue("drill", routing_key="drill")
    producer = conn.Producer(serializer="json")
    for message_id in ids:
        producer.publish({"id": message_id}, routing_key="drill", declare=[queue])


def _get(conn):
    queue = kombu.Queue("drill", routing_key="drill")
    return queue(conn.default_channel).get(accept=["json"])


def _drill(role, folder, **kwargs):
    args = [sys.executable, str(DRILL), role, "--dir", str(folder)]
    for key, value in kwargs.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _received(folder) -> Counter:
    counts = Counter()
    for path in Path(folder).glob("out-*.txt"):
        counts.update(path.read_text().split())
    return counts


def test_a_message_is_delivered_whole_and_removed_on_ack(tmp_path):
    with _connection(tmp_path) as conn:
        _publish(conn, "m1")
        assert [p.name for p in (tmp_path / "tmp").iterdir()] == []  # written aside, then renamed in
        message = _get(conn)
        assert message.payload == {"id": "m1"}
        assert list((tmp_path / "queue").iterdir()) == []
        claimed = list((tmp_path / "processing").glob("*/*.msg"))
        assert len(claimed) == 1
        message.ack()
        assert not claimed[0].exists()
        assert _get(conn) is None


def test_a_requeued_message_comes_back_marked_redelivered(tmp_path):
    with _connection(tmp_path) as conn:
        _publish(conn, "m1")
        _get(conn).requeue()
        assert list((tmp_path / "processing").glob("*/*.msg")) == []
        assert len(list((tmp_path / "queue").iterdir())) == 1
        again = _get(conn)
        assert again.payload == {"id": "m1"}
        assert again._raw["redelivered"] is True
        again.ack()
        assert list((tmp_path / "processing").glob("*/*.msg")) == []


def test_a_rejected_message_is_discarded_and_not_redelivered_by_a_recovery(tmp_path):
    with _connection(tmp_path) as conn:
        _publish(conn, "unknown-task")
        _get(conn).reject()
        assert list((tmp_path / "processing").glob("*/*.msg")) == []
    assert broker.recover_dead_consumers(tmp_path) == 0
    with _connection(tmp_path) as conn:
        assert _get(conn) is None


def test_an_unparsable_file_is_quarantined_and_the_next_message_delivered(tmp_path, caplog):
    with _connection(tmp_path) as conn:
        (tmp_path / "queue").mkdir(exist_ok=True)
        # Sorted first: what kombu's own transport left half-written when its writer died.
        (tmp_path / "queue" / "00000000000000000001_torn.drill.msg").write_bytes(b'{"body": "eyJ')
        _publish(conn, "m1")
        message = _get(conn)
        assert message.payload == {"id": "m1"}
        message.ack()
    assert [p.name for p in (tmp_path / "quarantine").iterdir()] == ["00000000000000000001_torn.drill.msg"]
    assert "Unreadable broker message 00000000000000000001_torn.drill.msg" in caplog.text


def test_unacked_messages_go_back_to_the_queue_when_the_consumer_closes(tmp_path):
    with _connection(tmp_path) as conn:
        _publish(conn, "m1", "m2")
        first = _get(conn)
        assert first.payload == {"id": "m1"}
    with _connection(tmp_path) as conn:
        ids = []
        while (message := _get(conn)) is not None:
            ids.append(message.payload["id"])
            message.ack()
    assert sorted(ids) == ["m1", "m2"]


@pytest.mark.integration
def test_claims_of_a_killed_consumer_are_requeued_and_a_live_consumers_are_not(tmp_path):
    with _connection(tmp_path) as conn:
        _publish(conn, *[f"p-{i}" for i in range(5)])
    killed = _drill("consume", tmp_path, out=tmp_path / "out-killed.txt", die_after=2)
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert _received(tmp_path) == {"p-0": 1, "p-1": 1}
    with _connection(tmp_path) as conn:
        mine = _get(conn)  # a consumer's first poll recovers: p-1 is back, first in line
        assert mine.payload["id"] == "p-1"
        # This process holds its own lock: a recovery leaves its claim alone.
        assert broker.recover_dead_consumers(tmp_path) == 0
        assert len(list((tmp_path / "processing").glob("*/*.msg"))) == 1
        ids = [mine.payload["id"]]
        mine.ack()
        while (message := _get(conn)) is not None:
            ids.append(message.payload["id"])
            message.ack()
    assert sorted(ids) == ["p-1", "p-2", "p-3", "p-4"]


@pytest.mark.integration
def test_several_producers_and_consumers_deliver_every_message_exactly_once(tmp_path):
    """Four producers x 750 messages of 10 kB, four consumers polling as they are written."""
    consumers = [_drill("consume", tmp_path, out=tmp_path / f"out-{i}.txt", idle=4) for i in range(4)]
    producers = [_drill("produce", tmp_path, prefix=f"p{i}", count=750, pad=10000) for i in range(4)]
    for proc in producers + consumers:
        output = proc.communicate(timeout=600)[0].decode()
        assert proc.returncode == 0, output
    received = _received(tmp_path)
    expected = {f"p{p}-{i}" for p in range(4) for i in range(750)}
    assert set(received) == expected, f"lost: {sorted(expected - set(received))[:10]}"
    assert [key for key, n in received.items() if n > 1] == []
    assert list((tmp_path / "queue").iterdir()) == []
    assert list((tmp_path / "quarantine").iterdir()) == []


@pytest.mark.integration
def test_consumers_killed_mid_message_lose_nothing(tmp_path):
    """Two consumers SIGKILL themselves before acking (the 100th, the 300th message): each of those two
    messages comes again (at least once), every other one exactly once."""
    producers = [_drill("produce", tmp_path, prefix=f"p{i}", count=1000, pad=5000) for i in range(3)]
    doomed = [
        _drill("consume", tmp_path, out=tmp_path / f"out-doomed-{n}.txt", die_after=n, idle=4) for n in (100, 300)
    ]
    for proc in producers + doomed:
        proc.communicate(timeout=600)
    assert [proc.returncode for proc in doomed] == [-signal.SIGKILL, -signal.SIGKILL]
    survivors = [
        _drill("consume", tmp_path, out=tmp_path / f"out-{i}.txt", idle=4, recover_interval=0.5) for i in range(2)
    ]
    for proc in survivors:
        output = proc.communicate(timeout=600)[0].decode()
        assert proc.returncode == 0, output
    received = _received(tmp_path)
    assert set(received) == {f"p{p}-{i}" for p in range(3) for i in range(1000)}
    assert sum(received.values()) == 3000 + 2
    assert max(received.values()) == 2


@pytest.mark.integration
def test_a_celery_worker_on_the_embedded_broker_runs_tasks_sent_by_another_process(tmp_path):
    """...after skipping a torn message file in its queue, which killed the worker on kombu's transport."""
    (tmp_path / "celery" / "queue").mkdir(parents=True)
    (tmp_path / "celery" / "queue" / "00000000000000000001_torn.celery.msg").write_bytes(b'{"body": "eyJ')
    env = dict(os.environ, CELERY_BROKER_URL="atomicfs://", VAR_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    log = tmp_path / "worker.log"
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "threads", "-c", "2", "-l", "info",
             "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        sender = "from config.celery import app; [app.send_task('celery.accumulate', (1, 2)) for _ in range(20)]"
        subprocess.run([sys.executable, "-c", sender], cwd=ROOT, env=env, check=True, timeout=120)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and log.read_text().count("celery.accumulate[") < 40:
            time.sleep(0.3)
        text = log.read_text()
        assert text.count("succeeded in") == 20, text[-3000:]
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    text = log.read_text()
    assert "No hostname was supplied" not in text
    assert "Traceback" not in text
    assert "Unreadable broker message 00000000000000000001_torn.celery.msg" in text
    assert list((tmp_path / "celery" / "queue").iterdir()) == []


def test_the_embedded_broker_is_the_default_with_nothing_configured():
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "DATABASE_URL")}
    code = (
        "from django.conf import settings; import django; django.setup(); print(json.dumps(settings.CELERY_BROKER_URL))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == "atomicfs://"
