"""Server settings, read once at process entry and passed down.

Sources, highest first: keyword arguments, ``CHRONOS_*`` environment
variables, a ``chronos.yaml`` file (path in ``CHRONOS_CONFIG``, default
``./chronos.yaml``), then the defaults below. Library code never reads
``os.environ``; only :func:`load_settings` does.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from chronos.models import Duration, NotifyTarget

if TYPE_CHECKING:
    from chronos.egress import EgressPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHRONOS_", extra="ignore", yaml_file="chronos.yaml")

    data_dir: Path = Field(default=Path("chronos-data"), description="Where the embedded SQLite database lives.")
    # repr=False: a URL may carry a password, and settings travel to Ray actors.
    database_url: Optional[str] = Field(default=None, repr=False, description="SQLAlchemy URL; default SQLite under data_dir.")
    host: str = Field(default="127.0.0.1", description="Address the API listens on (0.0.0.0: every interface).")
    port: int = Field(default=8080, ge=1, le=65535, description="Port of the REST API, /metrics and /docs.")
    ray_address: Optional[str] = Field(default=None, description="Join this Ray cluster; default start a local one.")
    namespace: str = Field(default="chronos", description="Ray namespace of the supervisor and host actors.")
    placement: Literal["auto", "dedicated", "pooled"] = Field(
        default="auto",
        description="auto: the oldest jobs, up to job_slots_per_node on each node, get a Ray actor each, the rest are "
        "pooled; dedicated: one Ray actor per job; pooled: jobs share pool_size host actors.",
    )
    # One host per core of the node that runs `chronos serve`, and at least 4: on a small
    # node, host processes beyond the cores win the firing a larger CPU share against a
    # busy API (docs/decisions.md, "Pool size").
    pool_size: int = Field(
        default_factory=lambda: max(4, os.cpu_count() or 1),
        ge=1,
        le=1024,
        description="Host actors in pooled placement; default one per CPU core of the node, at least 4.",
    )
    # Each dedicated actor is a Ray worker process (≈ 60 MiB, and CPU while idle): a few per
    # node by default (docs/decisions.md, "Placement").
    job_slots_per_node: int = Field(default=8, ge=1, description="Dedicated job actors one node admits.")
    history_keep: int = Field(default=1000, ge=1, description="Executions kept per job.")
    history_max_age: Duration = Field(default=timedelta(days=30), description="Executions finished longer ago are pruned.")
    api_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list, repr=False, description="Bearer tokens the API accepts, comma-separated; empty: no authentication."
    )
    open_metrics: bool = Field(default=True, description="/health, /ready and /metrics need no token.")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="Larger request bodies are refused with 413.")
    metrics_job_labels: bool = Field(
        default=False,
        description="Add a job label (the job's name) to the execution metrics: one series per job and status, "
        "so cardinality grows with the jobs defined.",
    )
    # Outbound safety (chronos.egress, docs/security.md). Link-local and metadata targets
    # are always refused unless allow-listed; these widen or narrow that.
    egress_deny_private: bool = Field(default=False, description="Also refuse 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7.")
    egress_deny_loopback: bool = Field(default=False, description="Also refuse 127/8, ::1 and localhost.")
    egress_deny_public: bool = Field(default=False, description="Refuse every address not allowed otherwise.")
    egress_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="CIDRs and host names (*.example.com) always allowed, comma-separated."
    )
    secret_key: Optional[SecretStr] = Field(
        default=None, repr=False, description="Fernet key: webhook secrets are encrypted at rest when set."
    )

    signing_secret: Optional[SecretStr] = Field(
        default=None,
        repr=False,
        description="Default Standard Webhooks secret (whsec_...) for jobs without their own; "
        "several, newest first and space-separated, during a rotation (all sign).",
    )

    # repr=False: a notification URL is a credential (a Slack webhook's path is its key).
    notify: list[NotifyTarget] = Field(
        default_factory=list,
        repr=False,
        description='Notification targets told of every job, as JSON: [{"url": "https://hooks.slack.com/...", '
        '"format": "slack", "events": ["failed", "recovered"]}] (docs/notifications.md).',
    )
    public_url: Optional[str] = Field(
        default=None, description="Where people reach the API, for the links in notifications; default http://HOST:PORT."
    )

    @field_validator("signing_secret")
    @classmethod
    def _check_signing_secret(cls, v: Optional[SecretStr]) -> Optional[SecretStr]:
        from chronos.signing import secret_problem

        for secret in _split_secrets(v):
            problem = secret_problem(secret)
            if problem:
                raise ValueError(f"CHRONOS_SIGNING_SECRET: each secret {problem}")
        return v

    @property
    def link_base(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def signing_secrets(self) -> tuple[str, ...]:
        """The default signing secrets, newest first."""
        return _split_secrets(self.signing_secret)

    @field_validator("api_tokens", "egress_allow", mode="before")
    @classmethod
    def _split_tokens(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [t.strip() for t in v.split(",") if t.strip()]
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get("CHRONOS_CONFIG", "chronos.yaml")
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))

    @property
    def egress_policy(self) -> "EgressPolicy":
        from chronos.egress import EgressPolicy

        return EgressPolicy.from_settings(self)

    @property
    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'chronos.db').resolve()}"


def _split_secrets(value: Optional[SecretStr]) -> tuple[str, ...]:
    return tuple(value.get_secret_value().replace(",", " ").split()) if value else ()


def load_settings(**overrides: Any) -> Settings:
    """The one place settings are read (process entry points call this)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
