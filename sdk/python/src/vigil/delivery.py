"""Delivery per docs/sdk-protocol.md: stream, polling, cache.

One background thread keeps the client's flags current: it opens
GET /sdk/v1/stream and applies its snapshot, put and delete events; when
the stream fails it polls GET /sdk/v1/snapshot with If-None-Match at once
and every poll_interval, and reconnects after a jittered exponential
backoff. Every new snapshot is written to the cache file, if configured.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from vigil import gocompat
from vigil.documents import DocumentError, read_snapshot_document
from vigil.flag import (
    CompiledFlag,
    FieldError,
    Snapshot,
    ValidationError,
    as_object,
    flag_to_dict,
    read_flag,
)

if TYPE_CHECKING:
    from vigil.client import Client, Config

USER_AGENT = "vigil-sdk-python/0.1.0"


class _StreamEnded(Exception):
    """The stream closed or failed; why is in the message."""


class _StreamEndedOnPurpose(_StreamEnded):
    """The controller ended the stream with an end event (its maximum age, a
    shutdown): no fault, so it is logged at debug level only."""


def _end_reason(data: str) -> str:
    """The reason of an end event ("max-age", "shutdown"), or "planned"."""
    try:
        value = gocompat.json_loads(data)
    except ValueError:
        return "planned"
    if not isinstance(value, dict):
        return "planned"
    reason: object = cast("dict[str, object]", value).get("reason")
    return reason if isinstance(reason, str) and reason else "planned"


# How much of the stream one read takes at most.
_READ_SIZE = 64 * 1024


def _arrived(conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> bool:
    """Whether more of the stream's body has arrived, so that reading it does
    not wait for the controller. It looks at what is buffered, reading the
    socket without blocking; in a chunked body, a chunk's framing alone
    (its CRLF, the next size line) is not body, and reading past it would
    wait, so it counts as nothing arrived."""
    sock, fp = conn.sock, resp.fp
    if sock is None:
        return False
    timeout = sock.gettimeout()
    try:
        sock.settimeout(0)  # a raw read without data yields nothing, not a wait
        buffered = fp.peek(1)
    except (OSError, ValueError):  # ssl.SSLWantReadError is an OSError
        return False
    finally:
        sock.settimeout(timeout)
    if not resp.chunked or resp.chunk_left:
        return bool(buffered)
    if resp.chunk_left == 0:  # the chunk's CRLF comes first
        if not buffered.startswith(b"\r\n"):
            return False
        buffered = buffered[2:]
    size, newline, rest = buffered.partition(b"\n")
    try:
        return bool(newline and rest) and int(size.split(b";")[0].strip(), 16) > 0
    except ValueError:
        return False


class Delivery:
    """Keeps a Client's flags current from the controller."""

    def __init__(self, client: Client, config: Config, log: logging.Logger) -> None:
        self._client = client
        self._config = config
        self._log = log
        u = urlsplit(config.server_url)
        self._https = u.scheme == "https"
        self._host = u.hostname or ""
        self._port = u.port
        self._base = u.path.rstrip("/")
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        # The version held for each key, deletes included (tombstones); a
        # key absent from the last snapshot counts as deleted at its revision.
        self._versions: dict[str, int] = {}
        self._floor = 0
        self._etag = ""

    # The cache file.

    def load_cache(self) -> None:
        """Installs the cache file's snapshot, if there is a valid one, so
        that a cold start with the controller down serves the last flags."""
        path = self._config.cache_file
        if not path or not os.path.exists(path):
            return
        try:
            with open(path, "rb") as fh:
                doc = read_snapshot_document(gocompat.json_loads(fh.read()))
            snap, errors = Snapshot.salvage(doc.revision, doc.flags, None)
        except (OSError, ValueError) as e:
            self._log.warning("vigil: ignoring the cache %s: %s", path, e)
            return
        self._report(errors + doc.errors, "cache")
        self._client.install(snap, source=False)

    def _write_cache(self, snap: Snapshot) -> None:
        path = self._config.cache_file
        if not path:
            return
        body = gocompat.json_dumps({"revision": snap.revision, "flags": [flag_to_dict(f) for f in snap.flags()]})
        directory = os.path.dirname(os.path.abspath(path))
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".vigil-cache-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(body)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as e:
            self._log.warning("vigil: writing the cache %s: %s", path, e)

    # Applying what the controller sends.

    def _report(self, errors: list[FieldError], where: str) -> None:
        for e in errors:
            self._log.error("vigil: %s: keeping the previous definition: %s", where, e)

    def _install(self, snap: Snapshot) -> None:
        self._client.install(snap, source=True)
        self._write_cache(snap)

    def apply_snapshot(self, value: Any, where: str) -> None:
        """Installs a snapshot document: authoritative, whatever its revision."""
        doc = read_snapshot_document(value)
        snap, errors = Snapshot.salvage(doc.revision, doc.flags, self._client.snapshot)
        self._report(errors + doc.errors, where)
        self._versions = {f.key: f.version for f in snap.flags()}
        self._floor = doc.revision
        self._install(snap)

    def _held(self, key: str) -> int:
        return self._versions.get(key, self._floor)

    def apply_put(self, value: Any) -> None:
        """Creates or replaces one flag, if it is newer than the one held."""
        self.apply_changes([("put", value)])

    def apply_delete(self, value: Any) -> None:
        """Deletes one flag, if the delete is newer than the version held."""
        self.apply_changes([("delete", value)])

    def apply_changes(self, events: Sequence[tuple[str, Any]]) -> None:
        """Applies put and delete events that arrived together as one
        snapshot: one copy of the flags, one install, one cache write, so
        that a burst of changes costs O(flags + changes), not O(flags ×
        changes). Each event is judged as if it came alone, after the ones
        before it: a stale one is dropped, a bad put keeps what came before
        (and is logged), a delete then a put of the same key leaves the put."""
        snap = self._client.snapshot
        if snap is None:
            return
        versions: dict[str, int] = {}  # this batch's, over self._versions
        changes: dict[str, CompiledFlag | None] = {}  # None: deleted
        revision = snap.revision
        for kind, value in events:
            if kind == "put":
                errors: list[FieldError] = []
                f = read_flag(value, 0, False, errors)
                if f is None:
                    self._report(errors, "put")
                    continue
                key, version = f.key, f.version
                if version <= versions.get(key, self._held(key)):
                    continue
                try:
                    changes[key] = CompiledFlag(f)
                except ValidationError as e:
                    self._report(e.errors, "put")
                    continue
            else:
                obj = as_object(value)
                key = obj.get("key") if obj is not None else None
                version = obj.get("version") if obj is not None else None
                if not isinstance(key, str) or not isinstance(version, int) or isinstance(version, bool):
                    self._log.error("vigil: dropping a delete event without key and version: %s", value)
                    continue
                if version <= versions.get(key, self._held(key)):
                    continue
                changes[key] = None
            versions[key] = version
            revision = max(revision, version)
        if not versions:
            return
        puts = {k: c for k, c in changes.items() if c is not None}
        deletes = [k for k, c in changes.items() if c is None]
        self._versions.update(versions)
        self._install(snap.update(revision, puts, deletes))

    # The connection.

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=timeout or None)
        with self._lock:
            if self._closed.is_set():
                raise _StreamEnded("closed")
            self._conn = conn
        return conn

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._config.token}", "User-Agent": USER_AGENT}

    def _refused(self, resp: http.client.HTTPResponse, what: str) -> str:
        body = resp.read(4096).decode("utf-8", "replace").strip()
        return f"{what}: {resp.status} {resp.reason}: {body}"

    def stream(self) -> bool:
        """Runs one stream connection until it ends; returns whether it
        delivered a snapshot."""
        got = False
        planned = ""  # the reason of an end event, once one came
        conn = self._connect(self._config.stream_idle_timeout)
        try:
            conn.request(
                "GET", self._base + "/sdk/v1/stream", headers={**self._headers(), "Accept": "text/event-stream"}
            )
            resp = conn.getresponse()
            if resp.status != 200:
                raise _StreamEnded(self._refused(resp, "stream"))
            event, data = "", list[str]()
            pending: list[tuple[str, Any]] = []  # puts and deletes not yet applied
            rest = b""  # the start of a line not complete yet
            try:
                while not self._closed.is_set():
                    # Apply what has arrived before waiting for more: a batch
                    # is never held back for the network.
                    if pending and not _arrived(conn, resp):
                        self._apply_pending(pending)
                    try:
                        chunk = resp.read1(_READ_SIZE)
                    except http.client.IncompleteRead:
                        chunk = b""  # cut between two chunks: the end, as readline saw it
                    if not chunk:
                        if planned:
                            raise _StreamEndedOnPurpose(f"stream: the controller ended it ({planned})")
                        raise _StreamEnded("stream: the controller closed it")
                    lines = (rest + chunk).split(b"\n")
                    rest = lines.pop()
                    for raw in lines:
                        line = raw.decode("utf-8", "replace").rstrip("\r")
                        if line == "":
                            text = "\n".join(data)
                            if event in ("put", "delete") and data:
                                pending.append((event, text))
                            elif event == "end":
                                self._apply_pending(pending)
                                planned = _end_reason(text)
                            elif data:
                                # A snapshot or an unknown event splits the batch.
                                self._apply_pending(pending)
                                got = self._dispatch(event or "message", text) or got
                            event, data = "", list[str]()
                            continue
                        if line.startswith(":"):
                            continue  # a ping
                        name, _, val = line.partition(":")
                        val = val.removeprefix(" ")
                        if name == "event":
                            event = val
                        elif name == "data":
                            data.append(val)
            finally:
                # Events that came whole before the stream ended still count.
                if not self._closed.is_set():
                    self._apply_pending(pending)
        except (OSError, http.client.HTTPException) as e:
            if planned and not self._closed.is_set():
                raise _StreamEndedOnPurpose(f"stream: the controller ended it ({planned})") from e
            if not self._closed.is_set():
                kind = "silent for too long" if isinstance(e, socket.timeout) else str(e) or type(e).__name__
                raise _StreamEnded(f"stream: {kind}") from e
        finally:
            with self._lock:
                self._conn = None
            conn.close()
        return got

    def _apply_pending(self, pending: list[tuple[str, Any]]) -> None:
        """Applies the puts and deletes of pending as one batch and empties it."""
        if not pending:
            return
        events: list[tuple[str, Any]] = []
        for event, data in pending:
            try:
                events.append((event, gocompat.json_loads(data)))
            except ValueError as e:
                self._log.error("vigil: dropping a %s event: %s", event, e)
        pending.clear()
        self.apply_changes(events)

    def _dispatch(self, event: str, data: str) -> bool:
        try:
            if event == "snapshot":
                self.apply_snapshot(gocompat.json_loads(data), "stream")
                return True
            # Unknown events are for newer SDKs.
        except (ValueError, DocumentError) as e:
            self._log.error("vigil: dropping a %s event: %s", event, e)
        return False

    def poll(self) -> None:
        """Fetches the snapshot once, unless it did not change (ETag)."""
        conn = self._connect(self._config.poll_timeout)
        try:
            headers = self._headers()
            if self._etag:
                headers["If-None-Match"] = self._etag
            conn.request("GET", self._base + "/sdk/v1/snapshot", headers=headers)
            resp = conn.getresponse()
            if resp.status == 304:
                resp.read()
                return
            if resp.status != 200:
                self._log.warning("vigil: %s", self._refused(resp, "poll"))
                return
            body = resp.read()
            self.apply_snapshot(gocompat.json_loads(body), "poll")
            self._etag = resp.getheader("ETag") or ""
        except (OSError, http.client.HTTPException, ValueError) as e:
            if not self._closed.is_set():
                self._log.warning("vigil: poll: %s", e)
        finally:
            with self._lock:
                self._conn = None
            conn.close()

    def run(self) -> None:
        """The delivery loop, until close."""
        backoff = self._config.backoff_min
        while not self._closed.is_set():
            try:
                if self.stream():
                    backoff = self._config.backoff_min
            except _StreamEndedOnPurpose as e:
                if self._closed.is_set():
                    return
                backoff = self._config.backoff_min
                self._log.debug("vigil: %s; reconnecting", e)
            except _StreamEnded as e:
                if self._closed.is_set():
                    return
                self._log.warning("vigil: %s; polling, and reconnecting in about %.1fs", e, backoff)
            # Poll at once and every poll_interval until the backoff is up.
            deadline = time.monotonic() + backoff * random.uniform(0.5, 1.0)
            backoff = min(max(backoff * 2, self._config.backoff_min), self._config.backoff_max)
            while not self._closed.is_set():
                try:
                    self.poll()
                except _StreamEnded:
                    return
                left = deadline - time.monotonic()
                if left <= 0 or self._closed.wait(min(left, self._config.poll_interval or left)):
                    break
                if time.monotonic() >= deadline:
                    break

    def close(self) -> None:
        """Stops the loop and cuts the connection in flight."""
        with self._lock:
            self._closed.set()
            conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
