"""Structured JSON logging with a PHI guard.

One JSON object per line on stderr, for our structlog loggers and for stdlib records from Celery,
kombu, urllib3 and everything else (``structlog.stdlib.ProcessorFormatter``).

The guard (``phi_guard``) runs last before rendering, on every record:

* only keys in ``ALLOWED_KEYS`` survive; other keys are removed and their *names* are listed under
  ``redacted_keys`` (values never appear);
* string values (the ``event`` message included) are scrubbed of e-mail addresses, phone numbers
  and URL credentials;
* a ``checkin_id`` is the producer's free choice (the wire format allows any text): one that is
  not a plain token (letters, digits, ``. _ : -``, as a ``patient_id`` must be) is logged as
  ``sha256:<first 16 hex digits>`` of the id, so a name typed into it never reaches a log line;
* values of unexpected types (models, arbitrary objects) are replaced by ``<TypeName>``; inside
  nested dicts, values under keys outside the allowlist become ``[redacted]``;
* exceptions are rendered as ``error_type``, ``error_frames`` (file:line function, no source
  text, no message) and, for pydantic ``ValidationError``, ``error_locs`` (field locations and
  error types). Exception *messages* are never logged: pydantic and many libraries echo input
  values in them.

Above DEBUG, Celery's per-task "received"/"succeeded" lines are dropped (tasks are 1 s ticks);
task failures and warnings still appear. ``warnings.warn`` output goes through the same path.

Rule for callers: log a constant event name and put identifiers in allowlisted keys::

    log.info("checkin_rejected", checkin_id=cid, patient_id=pid, error_type="ValidationError")

Never f-string data into the event text; the scrubber cannot recognise free text such as a note.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import hashlib
import logging
import logging.config
import re
import sys
import traceback
import uuid
from collections.abc import Mapping
from typing import Any

import structlog

# Keys that may appear in a log line. Values are still scrubbed. Keep identifiers, counts,
# grades and technical fields here; never names, notes, contact details or raw payloads.
ALLOWED_KEYS: frozenset[str] = frozenset(
    {
        # envelope
        "event", "level", "timestamp", "logger", "redacted_keys",
        # identifiers (patient_id is a pseudonym)
        "checkin_id", "patient_id", "episode_id", "stream_id", "task_id", "task_name",
        "alert_id", "notification_id", "attempt_id", "rule", "route", "policy", "step",
        "receiver", "channel", "component", "consumer", "group", "stream", "queue", "instance",
        # counts and timings
        "batch_size", "count", "claimed", "acked", "rejected", "duplicates", "evaluated",
        "read", "reclaimed", "redelivered", "out_of_order", "transitions", "batches",
        "pending", "lag", "duration_ms", "attempt", "max_attempts", "retry_in_s", "age_s",
        "interval_s", "deadline", "next_attempt_at",
        # outcomes
        "status", "outcome", "reason", "urgency", "crs_grade", "icans_grade", "red_flags",
        "news2", "risk", "transition", "retryable", "http_status", "leader",
        # errors (types and locations, never messages)
        "error_type", "error_frames", "error_locs", "field", "loc", "cause_type",
        # process
        "pid", "hostname", "port", "version",
    }
)

REDACTED = "[redacted]"
_NESTED_KEYS = ALLOWED_KEYS | {"type"}

# up to the LAST '@' of the authority: a password may hold an unencoded '@' (redis-py reads it so)
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s:@?#]*:[^/\s?#]*@")
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9]"
)
_PHONE_PATTERNS = (
    # E.164 and international formats: +15551234567, +44 20 7946 0958, +1 (555) 123-4567
    re.compile(r"(?<![\w+])\+\d(?:[\s().-]{0,2}\d){6,14}(?!\w)"),
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567
    re.compile(r"(?<![\w.-])(?:\(\d{3}\)\s?|\d{3}[-.\s])\d{3}[-.\s]\d{4}(?![\w-])"),
    # national trunk prefix 0: 07700 900123, 020 7946 0958, 0151-496-0000, 07700900123
    re.compile(r"(?<![\w.-])0\d{2,4}[\s-]\d{3,4}(?:[\s-]?\d{3,4})?(?![\w-])"),
    re.compile(r"(?<![\w.-])0\d{9,10}(?![\w.-])"),
)

# Celery/kombu format their messages from a dict of arguments; these keys are safe to interpolate.
_SAFE_FORMAT_ARGS = frozenset({"name", "id", "hostname", "description", "runtime", "internal"})
_SCALARS = (int, float, bool, type(None))


def scrub(text: str) -> str:
    """Remove e-mail addresses, phone numbers and URL credentials from a string."""
    text = _URL_CREDENTIALS.sub("***@", text)
    text = _EMAIL.sub("[email]", text)
    for pattern in _PHONE_PATTERNS:
        text = pattern.sub("[phone]", text)
    return text


def _safe_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, enum.Enum):
        return _safe_value(value.value, depth)
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if depth < 3 and isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_safe_value(v, depth + 1) for v in items]
    if depth < 3 and isinstance(value, Mapping):  # nested keys follow the allowlist too
        return {
            scrub(str(k)): _safe_value(v, depth + 1) if str(k) in _NESTED_KEYS else REDACTED
            for k, v in value.items()
        }
    return f"<{type(value).__name__}>"


def _exception_fields(exc: BaseException) -> dict[str, Any]:
    fields: dict[str, Any] = {"error_type": type(exc).__name__}
    frames = traceback.extract_tb(exc.__traceback__)[-8:]
    if frames:
        fields["error_frames"] = [f"{f.filename}:{f.lineno} {f.name}" for f in frames]
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic ValidationError: locations and types, never input values
        try:
            items = errors(include_url=False, include_context=False, include_input=False)
        except TypeError:
            items = None
        except Exception:  # noqa: BLE001 - a broken errors() must not break logging
            items = None
        if isinstance(items, list):
            fields["error_locs"] = [
                {"loc": ".".join(str(p) for p in e.get("loc", ())), "type": str(e.get("type"))}
                for e in items[:50]
                if isinstance(e, Mapping)
            ]
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        fields["cause_type"] = type(cause).__name__
    return fields


def _exc_from(value: Any) -> BaseException | None:
    if isinstance(value, BaseException):
        return value
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value[1]
    if value is True:
        return sys.exc_info()[1]
    return None


def render_exception(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Replace ``exc_info``/``exception`` by type, frames and validation locations (no messages)."""
    for key in ("exc_info", "exception"):
        if key in event_dict:
            exc = _exc_from(event_dict.pop(key))
            if exc is not None:
                for field, value in _exception_fields(exc).items():
                    event_dict.setdefault(field, value)
    event_dict.pop("stack_info", None)
    return event_dict


_PLAIN_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def log_checkin_id(value: Any) -> Any:
    """A check-in id as it may be logged: as it is when it is a plain token, else a hash."""
    if not isinstance(value, str) or _PLAIN_ID.fullmatch(value):
        return _safe_value(value)
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def phi_guard(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Keep allowlisted keys only (listing dropped key names) and scrub every value."""
    dropped = sorted(k for k in event_dict if k not in ALLOWED_KEYS)
    out = {k: _safe_value(v) for k, v in event_dict.items() if k in ALLOWED_KEYS}
    if "checkin_id" in out:
        out["checkin_id"] = log_checkin_id(event_dict["checkin_id"])
    if dropped:
        out["redacted_keys"] = [scrub(str(k)) for k in dropped]
    return out


def _safe_arg(value: Any) -> Any:
    if isinstance(value, BaseException):
        return f"<{type(value).__name__}>"
    if isinstance(value, (str, *_SCALARS)):
        return value
    return f"<{type(value).__name__}>"


def foreign_message(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Build ``event`` for a stdlib record without interpolating unsafe arguments.

    Celery formats failures as ``Task %(name)s[%(id)s] ...: %(exc)s`` where ``exc`` is the
    exception repr (which can echo input); only ``_SAFE_FORMAT_ARGS`` are interpolated from a
    dict, exceptions and objects become ``<TypeName>``, strings are scrubbed later.
    """
    record: logging.LogRecord | None = event_dict.get("_record")
    args = event_dict.pop("positional_args", None)
    if record is None:
        return event_dict
    msg = str(record.msg)
    try:
        if isinstance(args, Mapping):
            safe = {k: (v if k in _SAFE_FORMAT_ARGS else REDACTED) for k, v in args.items()}
            event_dict["event"] = msg % safe
            if "id" in args and isinstance(args["id"], str):
                event_dict.setdefault("task_id", args["id"])
        elif args:
            event_dict["event"] = msg % tuple(_safe_arg(a) for a in args)
        else:
            event_dict["event"] = msg
    except (TypeError, ValueError, KeyError):
        event_dict["event"] = msg
    return event_dict


_PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _formatter(json: bool) -> structlog.stdlib.ProcessorFormatter:
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        # The message template and its arguments arrive separately so that foreign_message
        # decides what gets interpolated.
        use_get_message=False,
        pass_foreign_args=True,
        foreign_pre_chain=[
            foreign_message,
            *_SHARED,
            structlog.stdlib.ExtraAdder(allow=sorted(ALLOWED_KEYS - {"event", "level", "logger"})),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            render_exception,
            phi_guard,
            renderer,
        ],
    )


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}")
    return value


def configure_logging(json: bool = True, level: str | int = "INFO", stream: Any = None) -> None:
    """Route structlog and stdlib logging through one JSON formatter with the PHI guard.

    ``stream`` defaults to ``sys.stderr`` (looked up at call time). Safe to call repeatedly: the
    root handlers are replaced, not added to.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_formatter(json))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(_level(level))
    logging.captureWarnings(True)  # warnings.warn(...) become JSON records of logger py.warnings
    # Celery and kombu attach their own handlers when left alone; let records reach the root.
    for name in ("celery", "celery.task", "celery.redirected", "kombu", "urllib3", "apscheduler",
                 "py.warnings"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
    # Third-party DEBUG output may carry request bodies; cap it at INFO unless asked for DEBUG.
    logging.getLogger("urllib3").setLevel(max(_level(level), logging.INFO))
    # Celery logs "received" and "succeeded" for every task at INFO; our tasks are ticks that run
    # every second, so below DEBUG only their warnings and failures are worth a line.
    quiet = logging.NOTSET if _level(level) <= logging.DEBUG else logging.WARNING
    for name in _PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)


def _on_setup_logging(loglevel: Any = None, **_: Any) -> None:
    configure_logging(json=True, level=loglevel or "INFO")


def _on_task_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=getattr(task, "name", None))


def _on_task_postrun(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


def install_celery_logging() -> None:
    """Stop Celery from configuring logging itself and bind task ids to every log line.

    Call once at import of the Celery app module. Connecting a receiver to ``setup_logging``
    makes Celery skip its own handler setup (``celery.app.log.Logging.setup_logging_subsystem``).
    """
    from celery import signals

    signals.setup_logging.connect(_on_setup_logging, weak=False)
    signals.task_prerun.connect(_on_task_prerun, weak=False)
    signals.task_postrun.connect(_on_task_postrun, weak=False)
