"""What a running `achievements dev` publishes, in `<data dir>/stack.json`, for the others.

A second worker, `db migrate`, `schedule`, `stop` and the demo find the embedded stack here.
No secret: the embedded PostgreSQL trusts local connections over its own unix socket, so the
DSN carries no password (and the file is still written readable by its owner only).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RunningStack(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    pid: int
    temporal_address: str
    namespace: str
    task_queue: str
    ui_url: str
    gateway_url: str
    registry_url: str
    exchange_url: str
    issuer_url: str
    database_url: str
    payload_encryption: bool
    # Name -> pid of each child now running (they change when one is restarted).
    children: dict[str, int]

    def worker_env(self) -> dict[str, str]:
        """The environment a second worker needs to join this stack (no metrics port: the
        stack's own worker holds it)."""
        return {
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": self.namespace,
            "ACHIEVEMENTS_DATABASE_URL": self.database_url,
            "ACHIEVEMENTS_GATEWAY_URL": self.gateway_url,
            "ACHIEVEMENTS_REGISTRY_URL": self.registry_url,
            "ACHIEVEMENTS_EXCHANGE_URL": self.exchange_url,
            "ACHIEVEMENTS_METRICS_PORT": "0",
            "ACHIEVEMENTS_ENVIRONMENT": "dev",
            "ACHIEVEMENTS_OIDC_ISSUER": self.issuer_url,
        }
