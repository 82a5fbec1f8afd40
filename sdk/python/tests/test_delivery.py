"""Delivery against a real vigil serve on loopback: stream, updates,
reconnection, polling with ETags, the cache file, readiness and shutdown."""

from __future__ import annotations

import asyncio
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
