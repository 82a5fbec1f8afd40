"""Stream benchmark of the Python SDK: a client holding 10,000 flags gets
10,000 puts in one write of its stream (a rollout step that moves every
flag at once, issue 18), from a controller on loopback that writes exactly
those bytes. Run from sdk/python:

    .venv/bin/python bench/bench_stream_batch.py

Prints the seconds from the write to the last put being served and the
snapshots installed meanwhile, for docs/benchmarks.md. It uses only the
client's public API, so it runs against any version of the SDK.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from vigil import Client, Config

FLAGS = 10_000


def flag(i: int, version: int, percent: float) -> dict[str, Any]:
    return {
        "key": f"flag-{i:05d}",
        "version": version,
        "variants": {"off": False, "on": True},
        "control": "off",
        "treatment": "on",
        "enabled": True,
        "rollout": {"percent": percent},
    }


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse(event: str, value: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(value)}\n\n".encode()


def main() -> None:
    snapshot = {"revision": FLAGS, "flags": [flag(i, i + 1, 10) for i in range(FLAGS)]}
    burst = b"".join(sse("put", flag(i, FLAGS + i + 1, 20)) for i in range(FLAGS))
    listener = socket.create_server(("127.0.0.1", 0))
    streams: list[socket.socket] = []
    opened = threading.Event()

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.sendall(chunk(sse("snapshot", snapshot)))
            streams.append(conn)
            opened.set()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with Client(Config(server_url=url, token="t", init_timeout=30)) as client:
        assert client.ready and opened.wait(10)
        first = client.generation
        start = time.perf_counter()
        streams[0].sendall(chunk(burst))
        last = f"flag-{FLAGS - 1:05d}"
        while True:
            snap = client.snapshot
            f = snap.flag(last) if snap is not None else None
            if f is not None and f.version == 2 * FLAGS:
                break
            client.wait_updated(client.generation, 0.01)
        elapsed = time.perf_counter() - start
        print(f"{FLAGS} puts on {FLAGS} flags in one write: {elapsed:.3f} s, {client.generation - first} installs")
    listener.close()
    for conn in streams:
        conn.close()


if __name__ == "__main__":
    main()
