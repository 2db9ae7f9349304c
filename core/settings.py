"""Configuration from the environment (prefix ACHIEVEMENTS_) or a .env file.

The Temporal connection itself is configured the standard way (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TLS or API key, or a profile file) through temporalio.envconfig.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TASK_QUEUE = "achievements"
# Systems that sign webhooks: each exchange of the Yangtze River Delta network, the registry,
# incubators and the proof-of-concept fund.
EXCHANGES = ("sstec", "jstec", "zjtec", "ahtec")
SYSTEMS = (*EXCHANGES, "registry", "incubator", "poc-fund")
SANDBOX_SECRET_PREFIX = "sandbox-webhook-secret-"
MIN_SECRET_LENGTH = 16
DEPLOYMENT_NAME = "achievements"


def _package_version() -> str:
    try:
        return version("achievement-lifecycle-engine")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "dev"


class Settings(BaseSettings):
    # Errors never echo a value: settings carry secrets (DSNs, webhook secrets, codec keys).
    model_config = SettingsConfigDict(
        env_prefix="ACHIEVEMENTS_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Path(".data")
    task_queue: str = TASK_QUEUE
    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL DSN; the embedded server is used when unset"
    )
    registry_url: str = "http://127.0.0.1:8301"
    exchange_url: str = "http://127.0.0.1:8302"
    gateway_url: str = "http://127.0.0.1:8300"
    # "dev": the embedded stack (`achievements dev`) with its sandboxes and local issuer.
    # Anything else is a deployment, where sandbox defaults are refused at start.
    environment: Literal["dev", "production"] = "production"
    # One HMAC-SHA256 secret per system and per exchange, as a JSON object in
    # ACHIEVEMENTS_WEBHOOK_SECRETS: {"sstec": "current[,previous]", ...}. Two secrets are both
    # accepted during a rotation; senders sign with the first. The defaults are the sandboxes'.
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=lambda: {s: SecretStr(f"{SANDBOX_SECRET_PREFIX}{s}") for s in SYSTEMS}
    )
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    http_timeout_seconds: float = Field(default=10.0, gt=0)
    policy_file: Path | None = None
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    drain_timeout_seconds: float = Field(default=30.0, ge=0)
    max_concurrent_activities: int = Field(default=100, ge=1)
    # Sticky cache of running lifecycles: memory (~0.3 MB each) against a replay when an
    # evicted one wakes. Most lifecycles are parked for months, and replaying a short history
    # is cheap, so the default keeps the worker near 300 MB however many are parked (306 MB
    # measured with 20,000: docs/performance.md).
    max_cached_workflows: int = Field(default=400, ge=0)
    # Shown on every worker in the UI. Set it to the image tag or commit in a deployment; the
    # SDK's own default hashes every loaded module, which costs a third of a second per start.
    build_id: str = Field(
        default_factory=lambda: f"achievements@{_package_version()}", min_length=1
    )
    # Calls per second to each external system, enforced by the server across all workers.
    registry_rate_limit: float | None = Field(default=None, gt=0)
    exchange_rate_limit: float | None = Field(default=None, gt=0)
    # Payload encryption (core/codec.py): "id:base64key,..." with 32-byte keys, the current
    # one first. Parsed where the data converter is built (core/temporal.py), so an error
    # names the setting without echoing the value. Unset or empty: payloads are not encrypted.
    codec_keys: SecretStr | None = None
    # The codec server (/codec on the gateway): bearer token, and the one Web UI origin allowed.
    codec_auth_token: SecretStr | None = None
    # Where people open a lifecycle in the Temporal Web UI: `status`, `list`, the gateway and
    # the overview link to {temporal_ui_url}/namespaces/{namespace}/workflows/{workflow_id}.
    # The default is the dev server's UI; a deployment sets its own UI's address.
    temporal_ui_url: str = Field(
        default="http://localhost:8233",
        pattern=r"^https?://\S+[^/]$",
        description="Base URL of the Temporal Web UI, without a trailing slash",
    )
    # The gateway's /metrics (lifecycles per stage, overdue, needing a person): when set,
    # scrapers send it as a bearer token; unset, /metrics is open (keep it off the internet).
    metrics_token: SecretStr | None = None
    codec_ui_origin: str = Field(
        default="http://localhost:8233",
        pattern=r"^https?://[^/\s]+$",
        description="Origin (scheme://host[:port]) of the Temporal Web UI that calls /codec",
    )

    # People's identity: the gateway is a resource server for this OpenID Connect issuer
    # (Keycloak realm URL, Azure AD v2 issuer, …). `achievements dev` points it at the local
    # test-mode issuer; outside dev it must be the institution's provider.
    oidc_issuer: str | None = Field(
        default=None, pattern=r"^https?://\S+$", description="The issuer URL (its `iss`)"
    )
    oidc_audience: str = Field(default="achievements-gateway", min_length=1)
    # Dotted claim paths: Keycloak puts realm roles at `realm_access.roles`, Azure AD at `roles`.
    oidc_roles_claim: str = Field(default="roles", min_length=1)
    oidc_institution_claim: str = Field(default="institution", min_length=1)
    oidc_leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    # A token naming an unknown key makes the gateway fetch the issuer's JWKS again (a key
    # rotation), but at most this often, so forged kids cannot flood the issuer.
    oidc_keys_refresh_seconds: float = Field(default=10.0, ge=0, le=3600)

    @field_validator("webhook_secrets")
    @classmethod
    def _one_secret_per_system(cls, secrets: dict[str, SecretStr]) -> dict[str, SecretStr]:
        unknown = sorted(set(secrets) - set(SYSTEMS))
        missing = [s for s in SYSTEMS if s not in secrets]
        if unknown or missing:
            raise ValueError(
                f"needs exactly the systems {list(SYSTEMS)}"
                + (f"; unknown: {unknown}" if unknown else "")
                + (f"; missing: {missing}" if missing else "")
            )
        for system, value in secrets.items():
            parts = value.get_secret_value().split(",")
            if len(parts) > 2 or any(len(p.strip()) < MIN_SECRET_LENGTH for p in parts):
                # Never echo the value: name the system only.
                raise ValueError(
                    f"{system}: one or two comma-separated secrets (current first), "
                    f"each at least {MIN_SECRET_LENGTH} characters"
                )
        return secrets

    def webhook_secrets_of(self, system: str) -> list[str]:
        """Every secret a webhook of `system` may be signed with, the current one first."""
        if system not in self.webhook_secrets:
            raise KeyError(f"unknown webhook system {system!r}")
        return [p.strip() for p in self.webhook_secrets[system].get_secret_value().split(",")]

    def webhook_secret(self, system: str) -> SecretStr:
        """The current secret of `system`: what its sender (a sandbox in test mode) signs with."""
        return SecretStr(self.webhook_secrets_of(system)[0])

    def sandbox_secrets(self) -> list[str]:
        """Systems still on a sandbox default secret: refused outside `dev`."""
        return [
            system
            for system in SYSTEMS
            if any(s.startswith(SANDBOX_SECRET_PREFIX) for s in self.webhook_secrets_of(system))
        ]
