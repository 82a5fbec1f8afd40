"""The client: flags in memory, typed evaluation, delivery in the background."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from vigil.documents import load_flags_file
from vigil.flag import Detail, EvalContext, Snapshot

T = TypeVar("T")

_INT64 = 2**63


class ConfigError(ValueError):
    """A configuration the client cannot run with, naming the field."""


@dataclass(frozen=True)
class Config:
    """How a Client gets its flags. Set server_url and token (the controller
    and an SDK token), or flags_file (offline; never contacts a controller).
    Durations are in seconds."""

    server_url: str = ""
    token: str = ""
    #: Offline mode: a flags file (YAML or JSON, the format of `vigil apply`).
    flags_file: str = ""
    #: Reread flags_file this often and swap it in when it changed and is
    #: valid; 0 never rereads.
    file_reload_interval: float = 0.0
    #: An on-disk copy of the last snapshot, for cold starts without the controller.
    cache_file: str = ""
    #: How long the constructor waits for the first snapshot (0: do not wait).
    init_timeout: float = 5.0
    #: Snapshot polling while the stream is down.
    poll_interval: float = 10.0
    poll_timeout: float = 10.0
    #: Silence after which the stream is reopened (the controller pings every 15 s).
    stream_idle_timeout: float = 45.0
    #: Reconnection backoff, jittered and exponential.
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    #: Where problems are logged; logging.getLogger("vigil") if None.
    logger: logging.Logger | None = None

    def check(self) -> None:
        """Raises ConfigError for a configuration the client cannot run with."""
        if self.flags_file and self.server_url:
            raise ConfigError("config: flags_file and server_url are exclusive")
        if not self.flags_file and not self.server_url:
            raise ConfigError("config: set server_url (with token) or flags_file")
        if self.server_url and not self.server_url.startswith(("http://", "https://")):
            raise ConfigError(f"config: server_url {self.server_url!r}: want an http:// or https:// URL")
        for name in (
            "file_reload_interval",
            "init_timeout",
            "poll_interval",
            "poll_timeout",
            "stream_idle_timeout",
            "backoff_min",
            "backoff_max",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"config: {name} must not be negative")
        if self.backoff_max < self.backoff_min:
            raise ConfigError("config: backoff_max must not be below backoff_min")


def _context(ctx: EvalContext | str | None, attributes: Mapping[str, Any] | None) -> EvalContext:
    if isinstance(ctx, EvalContext):
        return ctx if attributes is None else replace(ctx, attributes={**ctx.attributes, **attributes})
    return EvalContext(ctx or "", attributes or {})


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(v, float) and not v.is_integer():
        return False
    return -_INT64 <= v < _INT64


def _any(v: Any) -> bool:
    return True


class Client:
    """Keeps the flags in memory and evaluates them without I/O.

    Evaluation is safe from any thread and from asyncio code: it reads an
    immutable Snapshot and never blocks. Delivery runs on a background
    thread (or not at all in file mode). Use the client as a context
    manager, or call close() at shutdown.
    """

    def __init__(self, config: Config) -> None:
        config.check()
        self._config = config
        self._log = config.logger or logging.getLogger("vigil")
        self._snap: Snapshot | None = None
        self._ready = threading.Event()
        self._changed = threading.Condition()
        self._generation = 0
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._delivery: Any = None
        if config.flags_file:
            self._file_mtime = self._stat(config.flags_file)
            self.install(Snapshot.of(0, load_flags_file(config.flags_file)), source=True)
            if config.file_reload_interval > 0:
                self._start(self._reload_file, "vigil-file-reload")
            return
        from vigil.delivery import Delivery

        self._delivery = Delivery(self, config, self._log)
        self._delivery.load_cache()
        self._start(self._delivery.run, "vigil-delivery")
        if config.init_timeout > 0:
            self._ready.wait(config.init_timeout)

    @classmethod
    async def create_async(cls, config: Config) -> Client:
        """The client for asyncio code: constructed without blocking the
        event loop, then awaited until ready for up to config.init_timeout
        (after which it serves as the constructor's client does)."""
        client = cls(replace(config, init_timeout=0))
        if config.init_timeout > 0:
            await client.wait_ready_async(config.init_timeout)
        return client

    @classmethod
    def from_file(cls, path: str, reload_interval: float = 0.0) -> Client:
        """A client serving a flags file, which it never leaves."""
        return cls(Config(flags_file=path, file_reload_interval=reload_interval))

    def _start(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    # Flags in memory.

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot in use; None before any data."""
        return self._snap

    @property
    def ready(self) -> bool:
        """Whether data came from the controller or the flags file since the
        client started (a cache file does not count)."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Blocks until the client is ready or timeout passes; returns ready."""
        return self._ready.wait(timeout)

    async def wait_ready_async(self, timeout: float | None = None) -> bool:
        """wait_ready for asyncio code, without blocking the event loop."""
        return await asyncio.to_thread(self._ready.wait, timeout)

    def wait_updated(self, generation: int, timeout: float | None = None) -> int:
        """Blocks until flags newer than generation are installed (from any
        source) or timeout passes, and returns the current generation. Start
        with client.generation."""
        with self._changed:
            self._changed.wait_for(lambda: self._generation > generation or self._closed.is_set(), timeout)
            return self._generation

    @property
    def generation(self) -> int:
        """Counts the snapshots installed so far."""
        return self._generation

    def install(self, snap: Snapshot, source: bool) -> None:
        """Swaps snap in. source says it came from the controller or the
        flags file, which makes the client ready; a cache does not."""
        for w in snap.warnings():
            self._log.warning("vigil: %s", w)
        with self._changed:
            self._snap = snap
            self._generation += 1
            self._changed.notify_all()
        if source:
            self._ready.set()

    def close(self) -> None:
        """Stops delivery and waits for its threads. Evaluation keeps serving
        the last flags."""
        self._closed.set()
        if self._delivery is not None:
            self._delivery.close()
        with self._changed:
            self._changed.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()
        self._threads.clear()

    @property
    def closed(self) -> bool:
        """Whether close was called."""
        return self._closed.is_set()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _stat(path: str) -> tuple[int, int]:
        import os

        try:
            st = os.stat(path)
        except OSError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    def _reload_file(self) -> None:
        path = self._config.flags_file
        while not self._closed.wait(self._config.file_reload_interval):
            stamp = self._stat(path)
            if stamp == self._file_mtime:
                continue
            self._file_mtime = stamp
            try:
                snap = Snapshot.of(0, load_flags_file(path))
            except ValueError as e:
                self._log.error("vigil: keeping the previous flags: %s", e)
                continue
            self.install(snap, source=True)

    # Evaluation.

    def evaluate(
        self, key: str, ctx: EvalContext | str | None = None, attributes: Mapping[str, Any] | None = None
    ) -> Detail:
        """The detail of key for a unit (and attributes), with the flag's
        own value: no type is checked and no default served."""
        snap = self._snap
        if snap is None:
            return Detail(key, None, "", "error", "provider_not_ready")
        return snap.evaluate(key, _context(ctx, attributes))

    def _typed(
        self,
        key: str,
        ctx: EvalContext | str | None,
        attributes: Mapping[str, Any] | None,
        default: Any,
        check: Callable[[Any], bool],
    ) -> Detail:
        try:
            d = self.evaluate(key, ctx, attributes)
        except Exception:  # evaluation never raises into the caller
            self._log.exception("vigil: evaluating %s", key)
            return Detail(key, default, "", "error", "general")
        if not d.variant:
            return replace(d, value=default)
        if not check(d.value):
            return replace(d, value=default, variant="", reason="error", error_type="type_mismatch")
        return d

    def bool_detail(
        self, key: str, ctx: EvalContext | str | None, default: bool, attributes: Mapping[str, Any] | None = None
    ) -> Detail:
        """Evaluates a flag whose variants are booleans, with the detail."""
        return self._typed(key, ctx, attributes, default, _is_bool)

    def bool_value(
        self, key: str, ctx: EvalContext | str | None, default: bool, attributes: Mapping[str, Any] | None = None
    ) -> bool:
        """Evaluates a flag whose variants are booleans."""
        v: bool = self.bool_detail(key, ctx, default, attributes).value
        return v

    def string_detail(
        self, key: str, ctx: EvalContext | str | None, default: str, attributes: Mapping[str, Any] | None = None
    ) -> Detail:
        """Evaluates a flag whose variants are strings, with the detail."""
        return self._typed(key, ctx, attributes, default, _is_str)

    def string_value(
        self, key: str, ctx: EvalContext | str | None, default: str, attributes: Mapping[str, Any] | None = None
    ) -> str:
        """Evaluates a flag whose variants are strings."""
        v: str = self.string_detail(key, ctx, default, attributes).value
        return v

    def float_detail(
        self, key: str, ctx: EvalContext | str | None, default: float, attributes: Mapping[str, Any] | None = None
    ) -> Detail:
        """Evaluates a flag whose variants are numbers, with the detail; the
        value is a float."""
        d = self._typed(key, ctx, attributes, default, _is_number)
        return d if isinstance(d.value, float) or not d.variant else replace(d, value=float(d.value))

    def float_value(
        self, key: str, ctx: EvalContext | str | None, default: float, attributes: Mapping[str, Any] | None = None
    ) -> float:
        """Evaluates a flag whose variants are numbers."""
        v: float = self.float_detail(key, ctx, default, attributes).value
        return v

    def int_detail(
        self, key: str, ctx: EvalContext | str | None, default: int, attributes: Mapping[str, Any] | None = None
    ) -> Detail:
        """Evaluates a flag whose variants are whole numbers in the int64
        range (2.5 and 2**63 are type mismatches), with the detail."""
        d = self._typed(key, ctx, attributes, default, _is_int)
        return d if isinstance(d.value, int) or not d.variant else replace(d, value=int(d.value))

    def int_value(
        self, key: str, ctx: EvalContext | str | None, default: int, attributes: Mapping[str, Any] | None = None
    ) -> int:
        """Evaluates a flag whose variants are whole numbers."""
        v: int = self.int_detail(key, ctx, default, attributes).value
        return v

    def json_detail(
        self, key: str, ctx: EvalContext | str | None, default: Any, attributes: Mapping[str, Any] | None = None
    ) -> Detail:
        """Evaluates a flag whose variants are any JSON value (null included), with the detail."""
        return self._typed(key, ctx, attributes, default, _any)

    def json_value(
        self, key: str, ctx: EvalContext | str | None, default: Any, attributes: Mapping[str, Any] | None = None
    ) -> Any:
        """Evaluates a flag whose variants are any JSON value."""
        return self.json_detail(key, ctx, default, attributes).value
