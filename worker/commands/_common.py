"""Helpers shared by the service commands: settings, Redis resolution, the store."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from worker.channels.config_file import ChannelsFile

    from worker.settings import Settings

    from worker.redis_bootstrap import RedisHandle


class CommandError(RuntimeError):
    """A message for the operator; the command exits with status 2."""


def settings() -> "Settings":
    from worker.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise CommandError(str(exc)) from None


def redis_handle(s: "Settings", *, check: bool = True) -> "RedisHandle":
    """REDIS_URL, else localhost, else a private redis-server (worker.redis_bootstrap). The URL is
    exported as REDIS_URL so the Celery app and child processes use the same server. With
    ``check``, a REDIS_URL that does not answer a PING is a CommandError (password redacted);
    long-running services pass False and keep retrying instead."""
    from worker.logs import scrub
    from worker.redis_bootstrap import RedisUnavailable, problem, resolve
    from worker.settings import redact_url

    try:
        handle = resolve(s.redis_url, s.var_dir)
    except RedisUnavailable as exc:
        raise CommandError(str(exc)) from None
    if check and handle.source == "REDIS_URL" and (why := problem(handle.url)):
        raise CommandError(f"Redis at {redact_url(handle.url)} (REDIS_URL) does not answer: {scrub(why)[:300]}")
    os.environ["REDIS_URL"] = handle.url
    return handle


def redis_client(url: str):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


def require_database(s: "Settings") -> None:
    """CommandError when the SQLite file does not exist: a command that only reads or acts on what
    is stored must not create an empty database (a typo in DATABASE_URL would show all-zero counts
    that read as "nothing pending")."""
    from sqlalchemy.engine import make_url

    url = make_url(s.sqlalchemy_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if not os.path.exists(url.database):
            where = "DATABASE_URL" if s.database_url else "the default under CRS_VAR_DIR"
            raise CommandError(f"no database at {url.database} ({where}): run `crs-alert db upgrade`, or check the path")


def store(s: "Settings", *, migrate_sqlite: bool = True, must_exist: bool = False) -> "Engine":
    """An engine on the configured database. The embedded SQLite file is migrated on the spot
    (and created, unless ``must_exist``: see require_database); PostgreSQL must have been migrated
    (`crs-alert db upgrade`, the compose `migrate` service)."""
    from alembic.script import ScriptDirectory
    from sqlalchemy.exc import SQLAlchemyError

    from worker.store.db import alembic_config, current_revision, engine_for, redacted_url, upgrade

    if must_exist:
        require_database(s)
    engine = engine_for(s)
    try:
        if engine.dialect.name == "sqlite" and migrate_sqlite:
            upgrade(engine)
            return engine
        head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
        if current_revision(engine) != head:
            raise CommandError(f"database {redacted_url(engine)} is not at schema {head}: run `crs-alert db upgrade`")
    except SQLAlchemyError as exc:
        raise CommandError(f"database {redacted_url(engine)} is unavailable ({type(exc).__name__})") from None
    return engine


def fail(exc: CommandError) -> int:
    print(f"crs-alert: {exc}", file=sys.stderr)
    return 2


def configure_logging(s: "Settings") -> None:
    import logging

    from worker.logs import configure_logging as configure

    configure(json=s.log_json, level=s.log_level.upper())
    # one line per scheduler tick or migration plugin is noise, not information
    for name in ("apscheduler", "alembic"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def alerting_runtime(s: Settings, sessions):  # type: ignore[no-untyped-def]
    """The alerting runtime (rules in force, channels) on ``sessions``; CommandError when the rules
    file cannot be used: a process that cannot route a page must not start."""
    from worker.rules.loader import RulesError
    from worker.runtime import get_runtime

    try:
        return get_runtime(sessions=sessions, settings=s)
    except RulesError as exc:
        raise CommandError(f"the rules file is not valid, nothing was processed:\n{exc}") from None
    except OSError as exc:
        raise CommandError(f"cannot read the rules file {s.rules_path} (CRS_RULES_PATH): {exc.strerror or exc}") from None


def check_rules(s: Settings) -> None:
    """CommandError (with every file:line) unless the rules file, the channels file and the
    templates can be used together; a process that cannot route a page must not start.

    * The channels file (CRS_CHANNELS_PATH) must exist and be valid (worker.channels.config_file).
    * Every contact of the rules must use a configured channel with an address its kind accepts.
    * A missing secret (variable not set, file unreadable) is operational, not a config error: the
      process starts, and each is logged as ``channel_unusable`` now, not only at the first page.
    """
    from worker.channels.config_file import address_checks
    from worker.rules.loader import RulesError, load_rules_text

    channels = check_channels_file(s)
    try:
        with open(s.rules_path, encoding="utf-8") as fh:
            load_rules_text(fh.read(), s.rules_path, address_checks(channels))
    except RulesError as exc:
        raise CommandError(f"the rules file is not valid with the channels file {s.channels_path} (CRS_CHANNELS_PATH); "
                           f"fix it first (crs-alert rules check):\n{exc}") from None
    except OSError as exc:
        raise CommandError(f"cannot read the rules file {s.rules_path} (CRS_RULES_PATH): {exc.strerror or exc}") from None
    problems = template_problems(s.templates_dir)
    if problems:
        raise CommandError("the message templates are not valid (CRS_TEMPLATES_DIR):\n" + "\n".join(problems))
    log_unusable_channels(s)


def check_channels_file(s: Settings) -> ChannelsFile:
    """The channels file of CRS_CHANNELS_PATH, or CommandError listing every problem of it."""
    from worker.channels.config_file import ChannelsFileError, load_channels_file

    try:
        return load_channels_file(s.channels_path)
    except ChannelsFileError as exc:
        raise CommandError(f"{exc}\nfix CRS_CHANNELS_PATH={s.channels_path} (crs-alert rules check --channels "
                           f"{s.channels_path}); refusing to start") from None


def log_unusable_channels(s: Settings) -> None:
    """Build every channel once (then close it) and log ``channel_unusable`` for each that cannot be."""
    from worker.logs import get_logger
    from worker.runtime import build_channels_from_file

    channels, problems, _ = build_channels_from_file(s.channels_path)
    for channel in channels.values():
        channel.close()
    for problem in problems:
        get_logger(__name__).error("channel_unusable", reason=problem)


def template_problems(directory: str | None) -> list[str]:
    """Every error of the templates in ``directory`` (rendered against fixtures); [] when unset."""
    if directory is None:
        return []
    import os

    from worker.channels.registry import load_channel_kinds
    from worker.messages import Templates, validate_templates

    if not os.path.isdir(directory):
        return [f"{directory}: not a directory"]
    return validate_templates(Templates.from_directory(directory), known_kinds=set(load_channel_kinds()))
