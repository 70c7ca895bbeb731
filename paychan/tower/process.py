"""Running ``paychan tower`` as a child process (tests and the benchmark), as ``NodeProcess`` runs a node."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from paychan.node.process import NodeProcess


class TowerProcess(NodeProcess):
    """``paychan tower`` in its own process on a free port (``port`` 0) or a fixed one; ``url`` once started."""

    @property
    def control_file(self) -> Path:
        return Path(f"{self.db}.tower.json")

    def command(self) -> list[str]:
        return [
            sys.executable, "-c", "import sys; from paychan.cli import main; sys.exit(main())", "tower",
            "--keystore", str(self.keystore), "--db", str(self.db), "--host", "127.0.0.1", "--port", str(self.port),
            "--rpc-url", self.rpc_url, "--contract", self.contract, *self.extra_args,
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return str(self.control_info()["url"])

    def push(self, pushes: list[dict[str, Any]], timeout: float = 30.0) -> list[dict[str, Any]]:
        """``POST /pushes``; the tower's result for each push."""
        body = json.dumps({"pushes": pushes}).encode()
        request = urllib.request.Request(self.url + "/pushes", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return list(json.loads(response.read())["results"])

    def status(self) -> Any:
        with urllib.request.urlopen(self.url + "/status", timeout=30) as response:
            return json.loads(response.read())
