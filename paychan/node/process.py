"""Running ``paychan node`` as a child process (tests and the benchmark): start, wait, SIGKILL, stop by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from paychan.node.keystore import write_keystore

ROOT = Path(__file__).resolve().parents[2]


class PortTaken(RuntimeError):
    """Raised when the node's port was taken by another process before the node could listen on it."""


class NodeProcess:
    """``paychan node`` in its own process, on a fixed port so its peer finds it again after a restart."""

    def __init__(
        self,
        folder: Path,
        name: str,
        key: bytes,
        rpc_url: str,
        contract: str,
        port: int,
        password: str = "paychan-test-password",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.name, self.key, self.port, self.password = name, key, port, password
        self.db = folder / f"{name}.db"
        self.keystore = folder / f"{name}.keystore.json"
        self.log = folder / f"{name}.log"
        if not self.keystore.exists():
            write_keystore(self.keystore, key, password, iterations=1024)
        self.rpc_url, self.contract, self.extra_args = rpc_url, contract, extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.peer_url = f"http://127.0.0.1:{port}"
        self.started_once = False

    @property
    def control_file(self) -> Path:
        return Path(f"{self.db}.control.json")

    def command(self) -> list[str]:
        """The command line the process runs."""
        return [
            sys.executable, "-c", "import sys; from paychan.cli import main; sys.exit(main())", "node",
            "--keystore", str(self.keystore), "--db", str(self.db), "--host", "127.0.0.1", "--port", str(self.port),
            "--rpc-url", self.rpc_url, "--contract", self.contract, *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> None:
        """Starts the process; returns once it wrote ``control_file`` naming its PID (it is listening).

        A first start whose port another process took meanwhile (a free port is free only when it is picked)
        moves to another free port, at most twice; a restart keeps its port, where its peers know it."""
        for attempt in range(3):
            try:
                self._start(timeout)
                return
            except PortTaken:
                if self.started_once or attempt == 2:
                    raise
                from paychan.devnet import free_port

                self.port = free_port()
                self.peer_url = f"http://127.0.0.1:{self.port}"

    def _start(self, timeout: float) -> None:
        self.control_file.unlink(missing_ok=True)  # a SIGKILLed node leaves its control file behind
        command = self.command()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PAYCHAN_PASSWORD": self.password},
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text()[-2000:]
                if f"port {self.port} on 127.0.0.1 is already in use" in tail.splitlines()[-1]:
                    raise PortTaken(f"node {self.name} exited: {tail}")
                raise RuntimeError(f"node {self.name} exited: {tail}")
            try:
                if json.loads(self.control_file.read_text())["pid"] == self.process.pid:
                    self.started_once = True
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"node {self.name} did not start in {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, exactly like a crash."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def control_info(self) -> dict[str, Any]:
        return dict(json.loads(self.control_file.read_text()))

    def control(self, method: str, path: str, payload: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        from paychan.node.control import control_request

        return control_request(str(self.db), method, path, payload, timeout)

    def status(self) -> Any:
        """The status of the node's channel that is not closed (else its newest channel)."""
        channels = self.control("GET", "/status")["channels"]
        live = [c for c in channels if c["status"] != "closed"]
        return (live or channels)[-1]
