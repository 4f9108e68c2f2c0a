"""Process settings, read from the environment (pydantic-settings).

Every variable is documented in config/crs-alert.env.example. Two names are the conventional ones
(``REDIS_URL``, ``DATABASE_URL``); every other variable starts with ``CRS_``. A bad value is refused
at start with a SettingsError whose message names the variable and the rule it breaks; a process
never starts half-configured.

Redis key names derive from ``CRS_NAMESPACE`` (stream, scheduler lock, Celery key prefix and
queue), so two deployments or two test sessions can share one Redis server without touching each
other's keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_NAME = r"^[A-Za-z0-9_.:-]+$"


class SettingsError(ValueError):
    """Invalid configuration: one line per problem, each naming the environment variable."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRS_",
        extra="ignore",  # the environment holds many unrelated variables
        populate_by_name=True,
        validate_default=True,
    )

    redis_url: Annotated[str | None, Field(validation_alias=AliasChoices("REDIS_URL", "redis_url"))] = None
    database_url: Annotated[str | None, Field(validation_alias=AliasChoices("DATABASE_URL", "database_url"))] = None
    var_dir: Path = Path("var")

    namespace: Annotated[str, Field(pattern=_NAME, max_length=64)] = "crs"
    stream: Annotated[str | None, Field(pattern=_NAME, max_length=200)] = None
    group: Annotated[str, Field(pattern=_NAME, max_length=64)] = "workers"

    # 1,000: on PostgreSQL the fixed statements of a batch (locks, latest states, id reservation,
    # commit) cost as much as hundreds of check-ins; 100 ran at half the rate (bench/README.md).
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 1000
    drain_interval_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    drain_budget_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    claim_min_idle_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    max_deliveries: Annotated[int, Field(ge=1, le=1000)] = 5

    scheduler_lock_timeout_s: Annotated[float, Field(ge=1, le=600)] = 10.0
    visibility_timeout_s: Annotated[float, Field(ge=1)] = 300.0
    task_time_limit_s: Annotated[float, Field(ge=1)] = 120.0
    task_soft_time_limit_s: Annotated[float, Field(ge=1)] = 100.0
    worker_concurrency: Annotated[int, Field(ge=1, le=64)] = 2

    db_idle_in_transaction_timeout_s: Annotated[float, Field(ge=1, le=3600)] = 30.0
    db_lock_timeout_s: Annotated[float, Field(ge=0.1, le=3600)] = 20.0
    db_statement_timeout_s: Annotated[float, Field(ge=1, le=3600)] = 60.0

    log_level: Annotated[str, Field(pattern=r"^(?i:debug|info|warning|error|critical)$")] = "INFO"
    log_json: bool = True

    # -- alerting (issue 4) and delivery (issue 5) -------------------------------------------
    rules_path: str = "config/rules.yaml"
    channels_path: str = "config/channels.yaml"
    templates_dir: str | None = None  # per-channel message templates (<kind>.<part>.j2); built-in when unset
    escalate_interval_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    dispatch_interval_s: Annotated[float, Field(gt=0, le=300)] = 1.0
    missed_interval_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    delivery_max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    delivery_max_age_s: Annotated[float, Field(ge=10, le=86_400)] = 1200.0
    ack_secret: SecretStr | None = None  # signs acknowledgement links (at least 32 characters)
    ack_link_max_age_s: Annotated[float, Field(ge=60, le=7 * 86_400)] = 43_200.0
    public_url: Annotated[str | None, Field(pattern=r"^https?://[^\s]+$")] = None  # where the api is reached
    api_tokens: SecretStr | None = None  # "client=token,client2=token2"
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    twilio_auth_token: SecretStr | None = None  # verifies inbound SMS replies

    @field_validator("ack_secret", "public_url", "api_tokens", "twilio_auth_token", "templates_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        return None if v == "" else v  # compose passes ${VAR:-} as an empty string

    @field_validator("ack_secret")
    @classmethod
    def _long_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 32:
            raise ValueError("must be at least 32 random characters (it signs acknowledgement links)")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> "Settings":
        problems = []
        if not self.task_soft_time_limit_s < self.task_time_limit_s:
            problems.append("CRS_TASK_SOFT_TIME_LIMIT_S: must be lower than CRS_TASK_TIME_LIMIT_S")
        if not self.task_time_limit_s < self.visibility_timeout_s:
            problems.append(
                "CRS_TASK_TIME_LIMIT_S: must be lower than CRS_VISIBILITY_TIMEOUT_S "
                "(a task outliving the visibility timeout is delivered twice)"
            )
        if not self.drain_budget_s < self.task_soft_time_limit_s:
            problems.append("CRS_DRAIN_BUDGET_S: must be lower than CRS_TASK_SOFT_TIME_LIMIT_S")
        if not self.claim_min_idle_s > self.drain_budget_s:
            problems.append(
                "CRS_CLAIM_MIN_IDLE_S: must be greater than CRS_DRAIN_BUDGET_S "
                "(a live worker's batch must not be reclaimed by another)"
            )
        if not self.scheduler_lock_timeout_s > self.drain_interval_s:
            problems.append("CRS_SCHEDULER_LOCK_TIMEOUT_S: must be greater than CRS_DRAIN_INTERVAL_S")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # -- derived names ------------------------------------------------------------------------
    @property
    def stream_name(self) -> str:
        return self.stream or f"{self.namespace}:checkins"

    @property
    def lock_name(self) -> str:
        return f"{self.namespace}:scheduler:lock"

    @property
    def leader_key(self) -> str:
        """Who leads the schedulers (host:pid), for status and tests; expires with the lock."""
        return f"{self.namespace}:scheduler:leader"

    @property
    def celery_key_prefix(self) -> str:
        return f"{self.namespace}:celery:"

    @property
    def celery_queue(self) -> str:
        return f"{self.namespace}.tasks"

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL, else the embedded SQLite file under CRS_VAR_DIR."""
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{(self.var_dir / 'crs-alert.db').as_posix()}"


def normalise_database_url(url: str) -> str:
    """postgres:// and postgresql:// mean psycopg 3 (the only PostgreSQL driver installed)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


_SECRET_BEARING = {"REDIS_URL", "DATABASE_URL", "CRS_ACK_SECRET", "CRS_API_TOKENS", "CRS_TWILIO_AUTH_TOKEN"}  # may embed a password: never echoed


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[0])
    return f"CRS_{field.upper()}"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (keyword overrides win); SettingsError names each variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            if err["loc"]:
                name = _env_name(str(err["loc"][0]))
                got = "" if name in _SECRET_BEARING else f" (got {err.get('input')!r})"
                problems.append(f"{name}: {str(err['msg']).removeprefix('Value error, ')}{got}")
            else:  # model-level cross checks already name their variables
                msg = str(err["msg"]).removeprefix("Value error, ")
                problems.extend(msg.splitlines())
        raise SettingsError(problems) from None
