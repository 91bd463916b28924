"""Load generation for bench/heartbeat.py: client processes with keep-alive connections sending prebuilt
requests, and the rates and latencies they measured."""

import hashlib
import multiprocessing
import random
import signal
import socket
import threading
import time


class LeanConnection:
    """A minimal HTTP/1.1 keep-alive client: requests are prebuilt bytes, responses are read by
    Content-Length. http.client parses every response's headers with the email package, which on
    2 shared cores took CPU from the server being measured; this measures the server, like wrk would."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def send(self, raw: bytes) -> int:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buffer:
            self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self._recv_chunk()
        self.buffer = rest[length:]
        return status

    def _recv_chunk(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return chunk

    def _recv(self):
        self.buffer += self._recv_chunk()

    def close(self):
        self.sock.close()


def raw_request(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def client_connection(port, kind, agents, seconds, change_rate, seed, start_at, out):
    rng = random.Random(seed)
    conn = LeanConnection(port)
    trivial = raw_request("GET", "/livez")
    beats = [
        [
            raw_request(
                "POST",
                "/api/agent/heartbeat",
                body,
                {"Content-Type": "application/json", "Authorization": agent["auth"]},
            )
            for body in agent["bodies"]
        ]
        for agent in agents
    ]
    # A conditional heartbeat (what the real agent sends while its state is unchanged): no body, the
    # digest of the last full one in If-Match.
    conditional = [
        [
            raw_request(
                "POST",
                "/api/agent/heartbeat",
                b"",
                {"Authorization": agent["auth"], "If-Match": f'"{hashlib.sha256(body).hexdigest()}"'},
            )
            for body in agent["bodies"]
        ]
        for agent in agents
    ]
    current = [0] * len(agents)
    ok = errors = changed = i = 0
    latencies = []
    while time.time() < start_at:
        time.sleep(0.005)
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        try:
            if kind == "trivial":
                status = conn.send(trivial)
            else:
                n = i % len(agents)
                full = kind != "conditional"
                if rng.random() < change_rate:
                    current[n] ^= 1
                    changed += 1
                    full = True
                status = conn.send((beats if full else conditional)[n][current[n]])
                if status == 412:  # the panel holds another state (an earlier slice left it): as the agent does
                    status = conn.send(beats[n][current[n]])
        except (OSError, ValueError):
            errors += 1
            conn.close()
            conn = LeanConnection(port)
            continue
        i += 1
        if status == 200:
            ok += 1
        else:
            errors += 1
        if i % 10 == 0:
            latencies.append(time.perf_counter() - t0)
    out.append({"ok": ok, "errors": errors, "changed": changed, "latencies": latencies})


def client(port, kind, agents, seconds, change_rate, seed, start_at, connections, results):
    """One client process with `connections` keep-alive connections (threads: they mostly wait)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out: list[dict] = []
    threads = [
        threading.Thread(
            target=client_connection,
            args=(port, kind, agents[c::connections] or agents, seconds, change_rate, seed * 100 + c, start_at, out),
        )
        for c in range(connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(
        {
            "ok": sum(o["ok"] for o in out),
            "errors": sum(o["errors"] for o in out),
            "changed": sum(o["changed"] for o in out),
            "latencies": [lat for o in out for lat in o["latencies"]],
        }
    )


def measure(port, kind, agents_per_client, seconds, change_rate, connections):
    results = multiprocessing.Queue()
    start_at = time.time() + 0.5
    procs = [
        multiprocessing.Process(
            target=client, args=(port, kind, agents, seconds, change_rate, n, start_at, connections, results)
        )
        for n, agents in enumerate(agents_per_client)
    ]
    for p in procs:
        p.start()
    parts = [results.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    return {
        "seconds": seconds,
        "total": sum(p["ok"] for p in parts),
        "errors": sum(p["errors"] for p in parts),
        "changed": sum(p["changed"] for p in parts),
        "latencies": [lat for p in parts for lat in p["latencies"]],
    }


def combine(slices: list[dict]) -> dict:
    seconds = sum(m["seconds"] for m in slices)
    total = sum(m["total"] for m in slices)
    latencies = sorted(lat for m in slices for lat in m["latencies"])
    return {
        "rate": total / seconds,
        "total": total,
        "errors": sum(m["errors"] for m in slices),
        "changed": sum(m["changed"] for m in slices),
        "p50": latencies[len(latencies) // 2] * 1000 if latencies else 0.0,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
    }
