"""worker.logs: one JSON object per line for every logger, and no PHI in any of them.

Each test captures the real rendered output (the stream handler on the root logger) and looks
for synthetic canary values; nothing is mocked.
"""

from __future__ import annotations

import io
import json
import logging
import warnings

import pydantic
import pytest
import structlog
from celery import Celery
from celery.app.log import Logging as CeleryLogging
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.logs import ALLOWED_KEYS, configure_logging, get_logger, install_celery_logging, scrub

EMAIL = "jane.doe+onc@example-hospital.org"
PHONE_E164 = "+15551234567"
PHONE_US = "(555) 123-4567"
PHONE_UK = "07700 900123"
NOTE = "CANARY-NOTE chest tightness since Tuesday, wife Maria worried"
UNKNOWN_VALUE = "CANARY-UNKNOWN-VALUE"
CANARIES = (EMAIL, PHONE_E164, PHONE_US, PHONE_UK, NOTE, UNKNOWN_VALUE, "Maria", "5551234567")


@pytest.fixture
def captured():
    """Configure logging into a buffer; restore the root logger and structlog afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buf = io.StringIO()
    configure_logging(json=True, level="DEBUG", stream=buf)
    yield buf
    restore(root, saved)
    structlog.contextvars.clear_contextvars()


def restore(root: logging.Logger, saved: tuple[list[logging.Handler], int]) -> None:
    """Put the root logger back; pytest re-adds its own capture handlers for every phase."""
    root.handlers = [h for h in saved[0] if not type(h).__module__.startswith("_pytest")]
    root.setLevel(saved[1])
    logging.captureWarnings(False)
    structlog.reset_defaults()


def lines(buf: io.StringIO) -> list[dict]:
    out = buf.getvalue().splitlines()
    assert out, "nothing was logged"
    return [json.loads(line) for line in out]  # every line must be one JSON object


def assert_no_canary(buf: io.StringIO) -> None:
    text = buf.getvalue()
    for canary in CANARIES:
        assert canary not in text, f"{canary!r} leaked into {text}"


def test_structlog_event_keeps_allowlisted_keys_and_drops_the_rest(captured):
    get_logger("worker.pipeline").info(
        "checkin_evaluated",
        checkin_id="c-1",
        patient_id="P-000123",
        crs_grade=2,
        red_flags=["hypotension", "hypoxia"],
        note=NOTE,
        email=EMAIL,
        first_name="Maria",
        mystery=UNKNOWN_VALUE,
    )
    (line,) = lines(captured)
    assert line["event"] == "checkin_evaluated"
    assert line["checkin_id"] == "c-1"
    assert line["patient_id"] == "P-000123"
    assert line["crs_grade"] == 2
    assert line["red_flags"] == ["hypotension", "hypoxia"]
    assert line["level"] == "info" and line["logger"] == "worker.pipeline"
    assert line["timestamp"].endswith("Z")
    assert line["redacted_keys"] == ["email", "first_name", "mystery", "note"]
    assert_no_canary(captured)


def test_contact_details_inside_allowed_values_and_event_text_are_scrubbed(captured):
    log = get_logger("worker.delivery")
    log.warning(f"send to {EMAIL} failed, tried {PHONE_E164} and {PHONE_US}", channel="sms")
    log.info(
        "receiver",
        receiver=f"on-call {PHONE_UK}",
        status=[EMAIL, {"channel": PHONE_E164, "note": NOTE}],
    )
    first, second = lines(captured)
    assert first["event"] == "send to [email] failed, tried [phone] and [phone]"
    assert first["channel"] == "sms"
    assert second["receiver"] == "on-call [phone]"
    assert second["status"] == ["[email]", {"channel": "[phone]", "note": "[redacted]"}]
    assert_no_canary(captured)


@pytest.mark.parametrize(("cid", "logged"), [
    ("c-1", "c-1"), ("dev:2026-11-20T06:00:00Z.7", "dev:2026-11-20T06:00:00Z.7"), ("a" * 128, "a" * 128),
    ("07700900123", "[phone]"),  # a plain token is still scrubbed
])
def test_plain_checkin_ids_are_logged_as_they_are(captured, cid, logged):
    get_logger("worker.pipeline").info("checkin_duplicate", checkin_id=cid)
    assert lines(captured)[0]["checkin_id"] == logged


@pytest.mark.parametrize("cid", ["Maria Lopez 1990-01-02", "a" * 129, "café-1", "id/with/slash", "", "x\u0000"])
def test_checkin_ids_that_are_not_plain_tokens_are_logged_as_a_hash(captured, cid):
    get_logger("worker.pipeline").info("checkin_duplicate", checkin_id=cid)
    logged = lines(captured)[0]["checkin_id"]
    assert logged.startswith("sha256:") and len(logged) == len("sha256:") + 16
    assert cid not in logged or cid == ""


def test_objects_in_allowed_keys_are_reduced_to_their_type_name(captured):
    class Patient:
        def __repr__(self) -> str:
            return f"Patient(note={NOTE!r})"

    get_logger("worker.x").info("oops", patient_id=Patient())
    (line,) = lines(captured)
    assert line["patient_id"] == "<Patient>"
    assert_no_canary(captured)


def test_stdlib_record_with_args_and_extra_is_json_and_guarded(captured):
    logging.getLogger("worker.legacy").warning(
        "patient contact %s / %s", EMAIL, PHONE_E164, extra={"checkin_id": "c-9", "note": NOTE}
    )
    (line,) = lines(captured)
    assert line["event"] == "patient contact [email] / [phone]"
    assert line["checkin_id"] == "c-9"
    assert line["logger"] == "worker.legacy"
    assert line["level"] == "warning"
    assert_no_canary(captured)


def test_third_party_loggers_come_out_as_json_without_url_credentials(captured):
    logging.getLogger("kombu.connection").info("Connected to %s", "redis://:hunter2pw@redis:6379/0")
    logging.getLogger("urllib3.connectionpool").warning("Retrying %r", object())
    kombu, urllib3 = lines(captured)
    assert kombu["logger"] == "kombu.connection"
    assert kombu["event"] == "Connected to redis://***@redis:6379/0"
    assert urllib3["event"] == "Retrying '<object>'"
    assert "hunter2pw" not in captured.getvalue()


def test_python_warnings_are_json_records(captured):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        configure_logging(json=True, level="INFO", stream=captured)  # inside this warnings context
        warnings.warn(f"deprecated setting used by {EMAIL}", DeprecationWarning, stacklevel=1)
    (line,) = lines(captured)
    assert line["logger"] == "py.warnings" and line["level"] == "warning"
    assert "DeprecationWarning: deprecated setting used by [email]" in line["event"]
    assert_no_canary(captured)


class CheckInLike(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    temperature_c: float
    phone: str = pydantic.Field(pattern=r"^\d+$")


def test_validation_errors_are_logged_as_type_and_locations_never_input(captured):
    log = get_logger("worker.intake")
    try:
        CheckInLike.model_validate({"temperature_c": NOTE, "phone": PHONE_US, "note": NOTE})
    except pydantic.ValidationError:
        log.exception("checkin_rejected", checkin_id="c-2")
    (line,) = lines(captured)
    assert line["error_type"] == "ValidationError"
    assert line["error_locs"] == [
        {"loc": "temperature_c", "type": "float_parsing"},
        {"loc": "phone", "type": "string_pattern_mismatch"},
        {"loc": "note", "type": "extra_forbidden"},
    ]
    assert any("test_logs.py" in frame for frame in line["error_frames"])
    assert "exception" not in line and "exc_info" not in line
    assert_no_canary(captured)


def test_stdlib_exception_message_is_not_logged(captured):
    try:
        raise RuntimeError(f"could not page {PHONE_E164}: {NOTE}")
    except RuntimeError:
        logging.getLogger("worker.channels.sms").exception("send failed for %s", "alert-7")
    (line,) = lines(captured)
    assert line["event"] == "send failed for alert-7"
    assert line["error_type"] == "RuntimeError"
    assert_no_canary(captured)


def test_celery_task_failure_log_is_json_with_task_id_and_no_exception_text(captured):
    install_celery_logging()
    app = Celery("test-logs", broker="memory://", set_as_current=False)
    log = get_logger("worker.tasks")

    @app.task(name="test_logs.boom")
    def boom(note: str) -> None:
        log.info("task_started", note=note)
        raise ValueError(f"bad check-in {note} from {EMAIL}")

    result = boom.apply(args=(NOTE,))
    assert result.state == "FAILURE"
    by_logger = {line["logger"]: line for line in lines(captured)}
    inside, failure = by_logger["worker.tasks"], by_logger["celery.app.trace"]
    assert inside["task_id"] == result.id and inside["task_name"] == "test_logs.boom"
    assert inside["redacted_keys"] == ["note"]
    assert failure["level"] == "error"
    assert failure["task_id"] == result.id
    assert failure["event"] == f"Task test_logs.boom[{result.id}] raised unexpected: [redacted]"
    assert failure["error_type"] == "ValueError"
    assert_no_canary(captured)


def test_per_task_celery_chatter_is_dropped_above_debug_but_failures_are_kept(captured):
    configure_logging(json=True, level="INFO", stream=captured)
    app = Celery("test-logs-quiet", broker="memory://", set_as_current=False)

    @app.task(name="test_logs.tick")
    def tick(fail: bool) -> int:
        if fail:
            raise RuntimeError("tick failed")
        return 1

    ok, failed = tick.apply(args=(False,)), tick.apply(args=(True,))
    assert (ok.state, failed.state) == ("SUCCESS", "FAILURE")
    (line,) = [line for line in lines(captured) if line["logger"].startswith("celery.")]
    assert line["level"] == "error" and line["task_id"] == failed.id


def test_celery_setup_logging_signal_keeps_our_json_handler(capsys):
    """Celery's own logging setup must defer to ours (setup_logging receiver connected)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    install_celery_logging()
    app = Celery("test-logs-setup", broker="memory://", set_as_current=False)
    try:
        CeleryLogging._setup = False
        app.log.setup_logging_subsystem(loglevel="INFO")
        assert len(root.handlers) == 1
        assert isinstance(root.handlers[0].formatter, structlog.stdlib.ProcessorFormatter)
        logging.getLogger("celery.worker.consumer").info("Connected to %s", "redis://:pw1234@r:6379/0")
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        line = json.loads(err[0])
        assert line["logger"] == "celery.worker.consumer"
        assert line["event"] == "Connected to redis://***@r:6379/0"
    finally:
        CeleryLogging._setup = False
        restore(root, saved)


@pytest.mark.parametrize(
    "text",
    [
        PHONE_E164,
        "+44 20 7946 0958",
        "+1 (555) 123-4567",
        "+49-30-1234567",
        PHONE_US,
        "555-123-4567",
        "555.123.4567",
        "555 123 4567",
        PHONE_UK,
        "020 7946 0958",
        "0151-496-0000",
        "07700900123",
    ],
)
def test_phone_formats_are_scrubbed(text):
    assert scrub(f"call {text} now") == "call [phone] now"


@pytest.mark.parametrize(
    "text",
    [
        "1732518283000-0",  # Redis stream id
        "2026-11-25T07:04:43.123456Z",
        "123e4567-e89b-12d3-a456-426614174000",
        "P-000123",
        "celery 5.7.0 on python 3.11.3",
        "batch of 100 in 12.345 ms",
        "redis://redis:6379/0",
        "192.168.10.100:6379",
    ],
)
def test_identifiers_and_timestamps_survive_scrubbing(text):
    assert scrub(text) == text


@given(email=st.emails(), digits=st.text(alphabet="0123456789", min_size=10, max_size=10))
@settings(max_examples=200, deadline=None)
def test_generated_contacts_never_survive(email, digits):
    us = f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    e164 = f"+1{digits}"
    out = scrub(f"x {email} y {us} z {e164} .")
    assert email not in out and us not in out and e164 not in out


def test_allowlist_has_no_obvious_phi_keys():
    phi_like = {"note", "notes", "name", "first_name", "last_name", "phone", "email", "address",
                "dob", "date_of_birth", "mrn", "payload", "body", "text", "message", "args", "kwargs"}
    assert not (phi_like & ALLOWED_KEYS)


@pytest.mark.parametrize(("text", "scrubbed"), [
    ("redis://:pw@x@localhost:1/0 down", "redis://***@localhost:1/0 down"),
    ("postgresql://u:a@b@h/x?y=1", "postgresql://***@h/x?y=1"),
    ("redis://u:p@h:1/0 and redis://v:q@@k:2/0", "redis://***@h:1/0 and redis://***@k:2/0"),
])  # fmt: skip
def test_url_credentials_holding_at_signs_are_scrubbed_whole(text, scrubbed):
    assert scrub(text) == scrubbed
