"""A JetStream cluster on this machine: N nats-server processes from the same wheel, on loopback.

Each node has its own `server_name`, client port, cluster (route) port and monitoring port;
all share the cluster name and route to each other. `caseloop up --nats-cluster 3` and the
cluster tests start one; NATS_URL becomes the comma-separated list of the nodes' URLs and the
event stream is created with three replicas.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ops.servers import NatsServer, free_port


class NatsCluster:
    def __init__(self, root: Path, size: int = 3, *, ports: list[int] | None = None) -> None:
        if size < 3:
            raise ValueError("a JetStream cluster needs at least three nodes for R3 (quorum 2)")
        self.root = Path(root)
        client_ports = ports or [free_port() for _ in range(size)]
        cluster_ports = [free_port() for _ in range(size)]
        self.monitor_ports = [free_port() for _ in range(size)]
        self.nodes: list[NatsServer] = []
        for i in range(size):
            self.nodes.append(
                NatsServer(
                    self.root / f"nats-{i + 1}",
                    client_ports[i],
                    name=f"caseloop-nats-{i + 1}",
                    cluster_port=cluster_ports[i],
                    routes=[p for j, p in enumerate(cluster_ports) if j != i],
                    extra_conf=f"http: 127.0.0.1:{self.monitor_ports[i]}",
                )
            )

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """NATS_URL for clients: every node, comma-separated."""
        return ",".join(self.urls)

    def node(self, server_name: str) -> NatsServer:
        return next(n for n in self.nodes if n.name == server_name)

    def index(self, server_name: str) -> int:
        return next(i for i, n in enumerate(self.nodes) if n.name == server_name)

    def start(self, timeout: float = 60.0) -> NatsCluster:
        for node in self.nodes:
            node.start()
        for i in range(len(self.nodes)):
            self.wait_healthy(i, timeout)
        return self

    def restart(self, i: int, timeout: float = 60.0) -> None:
        self.nodes[i].start()
        self.wait_healthy(i, timeout)

    def kill(self, i: int) -> None:
        self.nodes[i].kill()

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()

    def monitor(self, i: int, path: str) -> Any:
        """GET a monitoring endpoint of node i (`/jsz?streams=true`, `/healthz`, …) as JSON."""
        url = f"http://127.0.0.1:{self.monitor_ports[i]}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # /healthz answers 503 with a JSON body
            return json.loads(exc.read() or b"{}")

    def wait_healthy(self, i: int, timeout: float = 60.0) -> None:
        """Until node i says JetStream is up and its streams and consumers are current."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                last = self.monitor(i, "/healthz")
                if last.get("status") == "ok":
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{self.nodes[i].name} not healthy after {timeout}s: {last}")

    def stream_state(self, i: int, stream: str) -> dict[str, Any] | None:
        """Node i's own copy of `stream` (messages, last_seq), from its monitoring port."""
        jsz = self.monitor(i, "/jsz?accounts=true&streams=true")
        for account in jsz.get("account_details") or []:
            for detail in account.get("stream_detail") or []:
                if detail.get("name") == stream:
                    return detail.get("state")  # type: ignore[no-any-return]
        return None
