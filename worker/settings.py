"""Process settings, read from the environment (pydantic-settings).

Every variable is documented in config/crs-alert.env.example. Two names are the conventional ones
(``REDIS_URL``, ``DATABASE_URL``); every other variable starts with ``CRS_``. A bad value is refused
at start with a SettingsError whose message names the variable and the rule it breaks; a process
never starts half-configured.

Rules for the URLs (config/crs-alert.env.example):
- ``REDIS_URL``: a ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL that redis-py can read.
- ``DATABASE_URL``: PostgreSQL through psycopg 3 (``postgresql+psycopg://``; ``postgresql://`` and
  ``postgres://`` mean the same) or SQLite (``sqlite:///PATH``): the only drivers installed and
  configured by worker.store.db. A password holding ``@``, ``/``, ``:`` or ``%`` must be
  percent-encoded (``@`` is ``%40``), or the host is read wrongly.
- Neither is ever echoed in a message (it may hold a password); ``redact_url`` hides the password.
- A number of seconds is finite (``nan`` and ``inf`` are refused).

Redis key names derive from ``CRS_NAMESPACE`` (stream, scheduler lock, Celery key prefix and
queue), so two deployments or two test sessions can share one Redis server without touching each
other's keys.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
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
        allow_inf_nan=False,  # "nan" would pass no bound check with a useful message; "inf" is no duration
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

    @field_validator("redis_url", "database_url")
    @classmethod
    def _url(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v:
            (check_redis_url if info.field_name == "redis_url" else check_database_url)(v)
        return v

    @field_validator("api_host")
    @classmethod
    def _api_host(cls, v: str) -> str:
        return check_host(v)

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


REDIS_SCHEMES = ("redis", "rediss", "unix")
DATABASE_SCHEMES = ("postgresql+psycopg", "postgresql", "postgres", "sqlite", "sqlite+pysqlite")
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?", re.ASCII)


def _check_port(url: str) -> None:
    """ValueError unless the URL's port, when it has one, is a number from 1 to 65535."""
    try:
        port = urlsplit(url).port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise ValueError("the port must be a number from 1 to 65535")


def check_redis_url(url: str) -> None:
    """ValueError (never quoting the URL) unless redis-py can read ``url``."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in REDIS_SCHEMES:
        raise ValueError("must be a redis://HOST:PORT/DB, rediss:// (TLS) or unix:///PATH URL, e.g. redis://127.0.0.1:6379/0")
    _check_port(url)
    from redis.connection import parse_url  # what redis.Redis.from_url runs

    try:
        parse_url(url)
    except ValueError as exc:  # redis-py's messages name the option, never the URL
        raise ValueError(f"not a URL redis-py can read: {exc}") from None


def check_database_url(url: str) -> None:
    """ValueError (never quoting the URL) unless ``url`` is for a driver this project installs."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in DATABASE_SCHEMES:
        raise ValueError("must be postgresql://USER:PASSWORD@HOST:PORT/DB (psycopg 3, the only PostgreSQL driver "
                         "installed; also postgres:// or postgresql+psycopg://) or sqlite:///PATH")
    if scheme.startswith("sqlite"):
        return
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if netloc.count("@") > 1:
        raise ValueError("the user name or password holds '@': write it percent-encoded as %40")
    _check_port(url)


def check_host(host: str) -> str:
    """``host`` when it is an IP address or a host name to listen on; else ValueError."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(host) or re.fullmatch(r"[\d.]+", host):
        raise ValueError("must be an IP address (e.g. 127.0.0.1, 0.0.0.0 or ::) or a host name")
    return host


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``. The netloc's LAST '@' ends the user
    information (as urllib and redis-py read it), so a password holding '@' is hidden whole."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, tail = re.match(r"([^/?#]*)(.*)", rest, re.DOTALL).groups()  # type: ignore[union-attr]
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}{tail}"


_SECRET_BEARING = {"REDIS_URL", "DATABASE_URL", "CRS_ACK_SECRET", "CRS_API_TOKENS", "CRS_TWILIO_AUTH_TOKEN"}  # may embed a password: never echoed


def _env_name(field: str) -> str:
    if field in _ALIASES:  # read from the environment, the error's location is the variable itself
        return field
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[0])
    return f"CRS_{field.upper()}"


_ALIASES = {"REDIS_URL", "DATABASE_URL"}


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
                msg = str(err["msg"]).removeprefix("Value error, ")
                if err["type"] == "finite_number":
                    msg = "must be a finite number (nan and inf are refused)"
                problems.append(f"{name}: {msg}{got}")
            else:  # model-level cross checks already name their variables
                msg = str(err["msg"]).removeprefix("Value error, ")
                problems.extend(msg.splitlines())
        raise SettingsError(problems) from None
