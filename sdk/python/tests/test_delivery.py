"""Delivery against a real vigil serve on loopback: stream, updates,
reconnection, polling with ETags, the cache file, readiness and shutdown."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import vigil
from vigil import Client, Config, ConfigError
from vigil.delivery import Delivery
from vigil.flag import flag_to_dict

from vigilserve import ADMIN_TOKEN, VigilServe, wait_for


def checkout(percent: float = 50, enabled: bool = True) -> dict[str, Any]:
    return {
        "key": "new-checkout",
        "variants": {"off": False, "on": True},
        "control": "off",
        "treatment": "on",
        "enabled": enabled,
        "targets": [{"variant": "on", "units": ["qa-1"]}],
        "rollout": {"percent": percent},
    }


def fast(url: str, **kw: Any) -> Config:
    base: dict[str, Any] = {
        "server_url": url,
        "token": ADMIN_TOKEN,
        "init_timeout": 10,
        "backoff_min": 0.05,
        "backoff_max": 0.2,
        "poll_interval": 0.1,
    }
    base.update(kw)
    return Config(**base)


def wait_until(client: Client, cond: Any, what: str, timeout: float = 15) -> None:
    """Waits for installed flags that make cond true."""
    gen = client.generation
    wait_for(lambda: cond() or (client.wait_updated(gen, 0.05) and False), timeout, what)


def test_stream_delivers_snapshot_puts_and_deletes(vigil_serve: VigilServe) -> None:
    vigil_serve.put_flag(checkout(percent=0))
    with Client(fast(vigil_serve.url)) as client:
        assert client.ready
        assert client.bool_value("new-checkout", "qa-1", False) is True
        d = client.bool_detail("new-checkout", "user-1", True)
        assert (d.value, d.variant, d.reason, d.version > 0) == (False, "off", "split", True)

        vigil_serve.put_flag(checkout(percent=100))
        wait_until(client, lambda: client.bool_value("new-checkout", "user-1", False), "the put to arrive")

        vigil_serve.delete_flag("new-checkout")
        wait_until(
            client, lambda: client.bool_detail("new-checkout", "u", True).error_type == "flag_not_found", "the delete"
        )
        assert client.bool_value("new-checkout", "u", True) is True


def test_sdk_token_reads_and_bad_token_is_not_ready(vigil_serve: VigilServe) -> None:
    vigil_serve.put_flag(checkout())
    token = vigil_serve.token("python", "sdk")
    with Client(fast(vigil_serve.url, token=token)) as client:
        assert client.ready and client.snapshot is not None and len(client.snapshot) == 1
    with Client(fast(vigil_serve.url, token="wrong-token", init_timeout=0.3)) as client:
        assert not client.ready
        d = client.bool_detail("new-checkout", "u", True)
        assert (d.value, d.reason, d.error_type) == (True, "error", "provider_not_ready")


def test_reconnects_after_an_outage_and_serves_the_last_flags_meanwhile(
    vigil_serve: VigilServe, vigil_binary: str, tmp_path: Path
) -> None:
    vigil_serve.put_flag(checkout(percent=0))
    with Client(fast(vigil_serve.url)) as client:
        assert not client.bool_value("new-checkout", "user-1", True)
        addr = vigil_serve.addr
        vigil_serve.stop()
        # The controller is down: evaluation goes on from memory.
        assert client.bool_detail("new-checkout", "user-1", True).reason == "split"
        restarted = VigilServe(vigil_binary, str(tmp_path / "data"), addr=addr)
        try:
            restarted.put_flag(checkout(percent=100))
            wait_until(client, lambda: client.bool_value("new-checkout", "user-1", False), "the flag after the restart")
        finally:
            restarted.stop()


def test_a_shutdown_is_no_fault(
    vigil_serve: VigilServe, vigil_binary: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A controller that shuts down ends its streams with an end event: the
    # SDK logs it at debug level only. A stream cut without one still warns.
    vigil_serve.put_flag(checkout(percent=0))
    with Client(fast(vigil_serve.url)) as client:
        wait_until(client, lambda: client.ready, "the first snapshot")
        addr = vigil_serve.addr
        with caplog.at_level(logging.DEBUG, logger="vigil"):
            vigil_serve.shut_down()
            wait_for(lambda: "ended it (shutdown)" in caplog.text, 10, "the end event to be seen")

        def stream_warnings() -> list[str]:
            return [
                r.getMessage()
                for r in caplog.records
                if r.levelno >= logging.WARNING and ("closed it" in r.getMessage() or "ended it" in r.getMessage())
            ]

        assert not stream_warnings(), caplog.text
        restarted = VigilServe(vigil_binary, str(tmp_path / "data"), addr=addr)
        try:
            restarted.put_flag(checkout(percent=100))
            wait_until(client, lambda: client.bool_value("new-checkout", "user-1", False), "the restarted controller")
            # A poll may have shown the flag before the stream reconnected:
            # only a stream held open can be cut.
            wait_for(lambda: restarted.stream_clients() == 1, 10, "the client's stream to the restarted controller")
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="vigil"):
                restarted.stop()
                wait_for(lambda: bool(stream_warnings()), 10, "a warning for the cut stream")
        finally:
            restarted.stop()


def test_poll_uses_the_etag(vigil_serve: VigilServe) -> None:
    vigil_serve.put_flag(checkout())
    client = Client(Config(server_url=vigil_serve.url, token=ADMIN_TOKEN, init_timeout=0))
    client.close()  # no background delivery: this test drives one by hand
    d = Delivery(client, fast(vigil_serve.url), logging.getLogger("test"))
    d.poll()
    first = client.generation
    assert client.snapshot is not None and len(client.snapshot) == 1
    d.poll()
    assert client.generation == first, "a 304 installs nothing"
    vigil_serve.put_flag(checkout(percent=7))
    d.poll()
    assert client.generation == first + 1
    flag = client.snapshot.flag("new-checkout") if client.snapshot else None
    assert flag is not None and flag.rollout is not None and flag.rollout.percent == 7


def test_cache_file_serves_a_cold_start_without_the_controller(vigil_serve: VigilServe, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "flags.json"
    cache.parent.mkdir()
    vigil_serve.put_flag(checkout(percent=100))
    with Client(fast(vigil_serve.url, cache_file=str(cache))) as client:
        assert client.ready
    assert json.loads(cache.read_text())["flags"][0]["key"] == "new-checkout"
    vigil_serve.stop()
    with Client(fast(vigil_serve.url, cache_file=str(cache), init_timeout=0.2)) as client:
        assert not client.ready, "a cache is not the controller"
        d = client.bool_detail("new-checkout", "user-1", False)
        assert (d.value, d.reason) == (True, "split")


def test_corrupt_cache_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "flags.json"
    cache.write_text("{not json")
    with Client(Config(server_url="http://127.0.0.1:9", token="t", cache_file=str(cache), init_timeout=0)) as client:
        assert client.snapshot is None
    assert "ignoring the cache" in caplog.text


def test_close_stops_the_stream_promptly(vigil_serve: VigilServe) -> None:
    client = Client(fast(vigil_serve.url))
    assert client.ready
    assert any(t.name == "vigil-delivery" for t in threading.enumerate())
    client.close()  # joins the thread, which is blocked reading the stream
    assert not any(t.name == "vigil-delivery" for t in threading.enumerate())
    assert client.bool_value("new-checkout", "u", True) is True, "the last flags still serve"


def test_ready_wait_from_asyncio(vigil_serve: VigilServe) -> None:
    vigil_serve.put_flag(checkout())

    async def main() -> list[bool]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        client = await vigil.Client.create_async(fast(vigil_serve.url))
        ticker.cancel()
        try:
            # The loop kept running while the client connected.
            return [client.ready, client.bool_value("new-checkout", "qa-1", False), ticks > 0]
        finally:
            client.close()

    assert asyncio.run(main()) == [True, True, True]


def test_evaluation_from_many_threads_while_flags_change(vigil_serve: VigilServe) -> None:
    vigil_serve.put_flag(checkout(percent=0))
    answers: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    with Client(fast(vigil_serve.url)) as client:

        def evaluate() -> None:
            try:
                while not stop.is_set():
                    d = client.bool_detail("new-checkout", "user-1", False)
                    answers.append(d.reason)
            except BaseException as e:  # reported below
                failures.append(e)

        threads = [threading.Thread(target=evaluate) for _ in range(4)]
        for t in threads:
            t.start()
        for p in (10, 20, 30, 40, 100):
            vigil_serve.put_flag(checkout(percent=p))
        wait_until(client, lambda: client.bool_value("new-checkout", "user-1", False), "the last put")
        stop.set()
        for t in threads:
            t.join()
    assert not failures
    assert answers and set(answers) == {"split"}


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match="exclusive"):
        Client(Config(server_url="http://x", flags_file="f.yaml"))
    with pytest.raises(ConfigError, match="server_url"):
        Client(Config(server_url="vigil:8080"))
    with pytest.raises(ConfigError, match="backoff_max"):
        Client(Config(server_url="http://x", backoff_min=2, backoff_max=1))


def test_silent_stream_is_reopened(tmp_path: Path) -> None:
    # A controller that accepts the stream and then says nothing, which the
    # real one cannot be made to do: the client must give up on it after
    # stream_idle_timeout and fall back to polling.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[str] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            req = conn.recv(4096).decode()
            seen.append(req.split(" ")[1])
            if "/stream" in req:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
                continue  # and never another byte
            body = b'{"revision": 3, "flags": []}'
            conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "3"\r\nContent-Length: %d\r\n\r\n%s' % (len(body), body))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        with Client(fast(f"http://127.0.0.1:{port}", stream_idle_timeout=0.2, init_timeout=10)) as client:
            assert client.ready
            assert client.snapshot is not None and client.snapshot.revision == 3
            assert seen[0] == "/sdk/v1/stream" and "/sdk/v1/snapshot" in seen
    finally:
        listener.close()


def rollout_flag(key: str, version: int, percent: float) -> dict[str, Any]:
    return {
        "key": key,
        "version": version,
        "variants": {"off": False, "on": True},
        "control": "off",
        "treatment": "on",
        "enabled": True,
        "rollout": {"percent": percent},
    }


def sse(event: str, value: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(value)}\n\n".encode()


def chunk(data: bytes) -> bytes:
    """data as one chunk of a chunked HTTP/1.1 body, as the controller sends
    its stream."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class FakeStream:
    """A controller whose stream sends a snapshot and then exactly the bytes
    the test writes, in the writes the test chooses, which the real one
    cannot be made to do: a batch of events in one write, or one split
    across writes. Polls get the same snapshot."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self._snapshot = snapshot
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._streams: list[socket.socket] = []
        self._opened = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            req = conn.recv(4096).decode()
            if "/sdk/v1/stream" in req:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                conn.sendall(chunk(sse("snapshot", self._snapshot)))
                with self._opened:
                    self._streams.append(conn)
                    self._opened.notify_all()
                continue
            body = json.dumps(self._snapshot).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            conn.close()

    def write(self, data: bytes) -> None:
        """Sends data on the first stream, in one write and one chunk."""
        with self._opened:
            self._opened.wait_for(lambda: bool(self._streams), 10)
            self._streams[0].sendall(chunk(data))

    def close(self) -> None:
        self._listener.close()
        for conn in self._streams:
            conn.close()


def one_by_one(snapshot: dict[str, Any], events: list[tuple[str, Any]]) -> Client:
    """A client that applied events one at a time, each on its own."""
    client = Client(Config(server_url="http://127.0.0.1:9", token="t", init_timeout=0))
    client.close()  # no background delivery: this drives one by hand
    d = Delivery(client, fast("http://127.0.0.1:9"), logging.getLogger("test"))
    d.apply_snapshot(snapshot, "test")
    for kind, value in events:
        (d.apply_put if kind == "put" else d.apply_delete)(value)
    return client


def flags_of(client: Client) -> tuple[int, list[Any]]:
    snap = client.snapshot
    assert snap is not None
    return snap.revision, [flag_to_dict(f) for f in snap.flags()]


def test_events_of_one_write_are_one_install(tmp_path: Path) -> None:
    snapshot = {"revision": 40, "flags": [rollout_flag(f"f{i:02d}", i + 1, 10) for i in range(40)]}
    events: list[tuple[str, Any]] = [("put", rollout_flag(f"f{i:02d}", 41 + i, 90)) for i in range(30)]
    events += [("delete", {"key": f"f{i:02d}", "version": 41 + i}) for i in range(30, 35)]
    events.append(("put", rollout_flag("new", 76, 50)))
    cache = tmp_path / "flags.json"
    server = FakeStream(snapshot)
    try:
        with Client(fast(server.url, cache_file=str(cache))) as client:
            assert client.ready
            first = client.generation
            server.write(b"".join(sse(kind, value) for kind, value in events))
            wait_until(client, lambda: client.snapshot is not None and client.snapshot.revision == 76, "the batch")
            assert client.generation == first + 1, "one install for the batch"
            want = one_by_one(snapshot, events)
            assert want.generation == 1 + len(events), "one install per event, one by one"
            assert flags_of(client) == flags_of(want)
            assert len(client.snapshot or []) == 36
            cached = json.loads(cache.read_text())
            assert cached["revision"] == 76 and len(cached["flags"]) == 36
    finally:
        server.close()


def test_a_batch_judges_each_event_as_if_alone(caplog: pytest.LogCaptureFixture) -> None:
    snapshot = {"revision": 10, "flags": [rollout_flag(k, 10, 10) for k in ("a", "b", "c", "d")]}
    events: list[tuple[str, Any]] = [
        ("put", rollout_flag("a", 11, 20)),
        ("put", rollout_flag("a", 11, 30)),  # stale after the put before it
        ("put", rollout_flag("b", 12, 150)),  # invalid: b keeps its definition
        ("delete", {"key": "c", "version": 13}),
        ("put", rollout_flag("c", 14, 40)),  # re-created after its delete
        ("delete", {"key": "d", "version": 9}),  # stale: older than d
        ("delete", {"key": "a", "version": 15}),
        ("put", rollout_flag("a", 14, 50)),  # stale: older than a's delete
        ("put", rollout_flag("e", 16, 60)),
    ]
    server = FakeStream(snapshot)
    try:
        with Client(fast(server.url)) as client:
            assert client.ready
            first = client.generation
            server.write(b"".join(sse(kind, value) for kind, value in events))
            wait_until(client, lambda: client.snapshot is not None and client.snapshot.revision == 16, "the batch")
            assert client.generation == first + 1
            snap = client.snapshot
            assert snap is not None
            assert snap.flag("a") is None
            b, c = snap.flag("b"), snap.flag("c")
            assert b is not None and b.rollout is not None and b.rollout.percent == 10
            assert c is not None and c.rollout is not None and c.rollout.percent == 40
            assert snap.flag("d") is not None and snap.flag("e") is not None
            assert "keeping the previous definition" in caplog.text and "rollout" in caplog.text
            assert flags_of(client) == flags_of(one_by_one(snapshot, events))
    finally:
        server.close()


def test_a_snapshot_or_an_unknown_event_splits_a_batch() -> None:
    snapshot = {"revision": 5, "flags": [rollout_flag("a", 5, 10)]}
    later = {"revision": 20, "flags": [rollout_flag("a", 19, 70), rollout_flag("z", 20, 70)]}
    server = FakeStream(snapshot)
    try:
        with Client(fast(server.url)) as client:
            assert client.ready
            first = client.generation
            server.write(
                sse("put", rollout_flag("a", 6, 20))
                + sse("put", rollout_flag("a2", 7, 20))
                + sse("some-future-event", {"x": 1})
                + sse("put", rollout_flag("b", 8, 30))
                + sse("put", rollout_flag("b2", 9, 30))
                + sse("snapshot", later)
                + sse("put", rollout_flag("c", 21, 40))
                + sse("delete", {"key": "z", "version": 22})
            )
            wait_until(client, lambda: client.snapshot is not None and client.snapshot.revision == 22, "every event")
            assert client.generation == first + 4, "a a2 | b b2 | snapshot | c -z"
            assert [f.key for f in (client.snapshot.flags() if client.snapshot else [])] == ["a", "c"]
    finally:
        server.close()


def test_a_batch_split_across_writes_converges() -> None:
    snapshot = {"revision": 100, "flags": [rollout_flag(f"f{i:03d}", i + 1, 10) for i in range(100)]}
    events: list[tuple[str, Any]] = [("put", rollout_flag(f"f{i:03d}", 101 + i, 90)) for i in range(100)]
    events += [("delete", {"key": f"f{i:03d}", "version": 201 + i // 10}) for i in range(0, 100, 10)]
    data = b"".join(sse(kind, value) for kind, value in events)
    server = FakeStream(snapshot)
    try:
        with Client(fast(server.url)) as client:
            assert client.ready
            first = client.generation
            # Cut in the middle of lines, of events and of a UTF-8 sequence's
            # neighbours: every piece is its own write.
            cuts = [0, 7, 500, 501, 2999, 6000, len(data) - 3, len(data)]
            for lo, hi in itertools.pairwise(cuts):
                server.write(data[lo:hi])
            wait_until(client, lambda: client.snapshot is not None and client.snapshot.revision == 210, "the batch")
            assert first < client.generation <= first + len(cuts) - 1
            assert flags_of(client) == flags_of(one_by_one(snapshot, events))
    finally:
        server.close()


def test_a_batch_larger_than_one_read_is_not_held_for_more() -> None:
    # The batch's chunk is far larger than one read, and nothing follows it:
    # its end (the chunk's CRLF) must not be taken for more body to wait for.
    snapshot = {"revision": 1000, "flags": [rollout_flag(f"f{i:04d}", i + 1, 10) for i in range(1000)]}
    events: list[tuple[str, Any]] = [("put", rollout_flag(f"f{i:04d}", 1001 + i, 90)) for i in range(1000)]
    data = b"".join(sse(kind, value) for kind, value in events)
    assert len(data) > 2 * 64 * 1024
    server = FakeStream(snapshot)
    try:
        with Client(fast(server.url, stream_idle_timeout=120)) as client:
            assert client.ready
            server.write(data)
            wait_until(client, lambda: client.snapshot is not None and client.snapshot.revision == 2000, "the batch")
            assert flags_of(client) == flags_of(one_by_one(snapshot, events))
    finally:
        server.close()
