"""What a worker process holds: settings, the database, the rules in force, the delivery channels.

Rules:
- Built lazily, once per process id: Celery's prefork children each build their own after the
  fork (database connections and HTTP sessions must not cross a fork).
- The rules must be valid when the process starts; a later bad file keeps the last good rules and
  opens an admin alert (``system`` condition, routed like any alert, so it reaches a human).
- Channels are built from the channels file (worker.channels.config_file); a missing channel the
  rules name, or a bad address, refuses start-up (commands._common.check_rules) and is reported by
  `crs-alert rules check`; a channel that still cannot be used at delivery dead-letters to the
  failsafe (never silently dropped).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.rules.loader import LoadedRules
from worker.rules_holder import RulesHolder
from worker.settings import Settings


def build_channels_from_file(path: str | None) -> tuple[dict[str, Any], list[str], dict[str, int]]:
    """(usable channels, problems, rate limits) from the channels file (worker.channels.config_file).
    Each channel is built on its own: one that is invalid or has a missing secret does not take the
    others down; its problem is listed (no secret values)."""
    from worker.channels.config_file import read_channels_file
    from worker.channels.registry import ChannelConfigError, build_channels

    if not path:
        return {}, ["no channels file (CRS_CHANNELS_PATH): nothing can be delivered"], {}
    loaded = read_channels_file(path)
    channels: dict[str, Any] = {}
    errors = list(loaded.errors)
    for name in loaded.valid:
        try:
            channels.update(build_channels({name: loaded.specs[name]}))
        except ChannelConfigError as exc:
            errors.extend(exc.errors)
    return channels, errors, loaded.rate_limits


@dataclass
class Runtime:
    settings: Settings
    sessions: sessionmaker[Session]
    rules: RulesHolder
    _channels: dict[str, Any] | None = None
    channel_errors: list[str] = field(default_factory=list)
    _templates: Any = None
    _rate_limits: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def channels(self) -> dict[str, Any]:
        """The usable channels. Each is built on its own: one with a missing secret does not take
        the others down; pages for it dead-letter to the failsafe on another channel, and the
        problem is logged (and kept in ``channel_errors``) every time the channels are built."""
        with self._lock:
            if self._channels is None:
                from worker.logs import get_logger

                self._channels, self.channel_errors, self._rate_limits = build_channels_from_file(self.settings.channels_path)
                for problem in self.channel_errors:
                    get_logger(__name__).error("channel_unusable", reason=problem)
            return self._channels

    def templates(self) -> Any:
        """The custom message templates (CRS_TEMPLATES_DIR), or None for the built-in messages."""
        if self.settings.templates_dir is None:
            return None
        if self._templates is None:
            from worker.messages import Templates

            self._templates = Templates.from_directory(self.settings.templates_dir)
        return self._templates

    @property
    def rate_limits(self) -> dict[str, int]:
        self.channels()
        return self._rate_limits


_runtime: tuple[int, Runtime] | None = None


def get_runtime(sessions: sessionmaker[Session] | None = None, settings: Settings | None = None) -> Runtime:
    """The process's runtime (rebuilt in a forked child); the worker passes its own sessions."""
    global _runtime
    if _runtime is None or _runtime[0] != os.getpid():
        from worker.settings import load_settings

        settings = settings or load_settings()
        if sessions is None:
            from worker.commands._common import store
            from worker.store.db import session_factory

            sessions = session_factory(store(settings))
        holder = RulesHolder(settings.rules_path, on_failure=lambda errors, good: admin_alert(sessions, good, errors),
                             channels=_address_checks(settings.channels_path))
        _runtime = (os.getpid(), Runtime(settings, sessions, holder))
    return _runtime[1]


def _address_checks(path: str | None) -> dict[str, Any] | None:
    """The channels file's address rules (channels are built once per process, so these are the
    process's); None when the file cannot be read at all (start-up refuses that before we get here)."""
    from worker.channels.config_file import FILE, address_checks, read_channels_file

    if not path:
        return None
    loaded = read_channels_file(path)
    return None if FILE in loaded.problems else address_checks(loaded)


def admin_alert(sessions: sessionmaker[Session], rules: LoadedRules, errors: list[str], now: dt.datetime | None = None) -> int | None:
    """Open a ``system`` alert (a bad rules reload) through the rules in force; one per bad content."""
    from worker import alerting
    from worker.rules import routing

    now = now or dt.datetime.now(dt.UTC)
    content = {
        "checkin_id": None, "patient_id": "(system)", "recorded_at": now.isoformat(), "condition": "system",
        "crs_grade": None, "crs_grade_is_minimum": None, "icans_grade": None, "icans_floor": None, "news2": None,
        "red_flags": [], "urgency": "urgent", "therapy_tier": None, "therapy_class": None, "in_risk_window": None,
        "day_since_therapy": None, "age_years": None, "age_band": None, "unit": None, "labels": {},
        "reasons": ["The rules file could not be reloaded; the last good rules stay in force.", *errors[:20]],
        "advice": "An administrator must fix the rules file (crs-alert rules check).",
    }  # fmt: skip
    subj = alerting.subject_of(content)
    decision = routing.decide(rules.rules.routes, subj)
    episode = "rules:" + hashlib.sha256("\n".join(errors).encode()).hexdigest()[:24]  # same in every process
    try:
        with sessions.begin() as s:
            out = alerting.open_alert(s, content, subj, decision, rules, now, episode=episode, condition="system", actor="system")
            return out.alert_id
    except IntegrityError:  # another process raised the same admin alert first
        return None
