"""A real `vigil serve` on loopback for the tests, as internal/testenv/vigiltest
starts one for Go's, and the admin API calls the tests make to it."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any

ADMIN_TOKEN = "python-sdk-admin-token-0123456789"
_LISTENING = re.compile(r'vigil controller listening"? addr=(\S+)')


class VigilServe:
    """One `vigil serve` process with its data directory."""

    def __init__(self, binary: str, data_dir: str, addr: str = "127.0.0.1:0") -> None:
        self.proc = subprocess.Popen(
            [binary, "serve", "--addr", addr, "--data", data_dir],
            env={"PATH": "/usr/bin:/bin", "VIGIL_ADMIN_TOKEN": ADMIN_TOKEN},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        found = threading.Event()
        self.url = ""

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line)
                m = _LISTENING.search(line)
                if m and not found.is_set():
                    self.url = "http://" + m.group(1)
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(60) or not self.url:
            self.stop()
            raise RuntimeError("vigil serve did not start:\n" + "".join(self.log))
        wait_for(self._ready, 30, "vigil serve to be ready")

    @property
    def addr(self) -> str:
        return self.url.removeprefix("http://")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Calls the admin API and returns the decoded answer."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read().decode()}") from e
        return json.loads(text) if text else None

    def stream_clients(self) -> int:
        """How many SDK clients hold the event stream open, from the
        controller's vigil_sse_clients gauge."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("vigil_sse_clients "):
                    return int(float(line.split()[1]))
        return 0

    def put_flag(self, flag: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.api("PUT", "/api/v1/flags/" + flag["key"], flag)
        return out

    def delete_flag(self, key: str) -> None:
        self.api("DELETE", "/api/v1/flags/" + key)

    def token(self, name: str, role: str) -> str:
        out: dict[str, Any] = self.api("POST", "/api/v1/tokens", {"name": name, "role": role})
        return str(out["token"])

    def stop(self) -> None:
        """Stops the process (SIGKILL: the tests' outage is abrupt)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)

    def shut_down(self) -> None:
        """Stops the process as an operator does (SIGTERM): the controller
        ends its streams with an end event before it exits."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(30)


def wait_for(cond: Any, timeout: float, what: str) -> None:
    """Waits until cond() is true, checking often; fails after timeout."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
