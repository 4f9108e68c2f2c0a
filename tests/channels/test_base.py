"""The shared pieces: HTTP status classification (one table), Retry-After, secret resolution."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import SecretStr

from worker.channels.base import (
    ConfigurationError,
    DeliveryError,
    Outcome,
    classify_http,
    parse_retry_after,
    resolve_secret,
)
from worker.channels.twilio import TwilioConfig, refine

SID = "AC" + "0" * 32


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, None), (201, None), (202, None), (204, None), (299, None),
        (301, Outcome.PERMANENT), (307, Outcome.PERMANENT),
        (400, Outcome.PERMANENT), (401, Outcome.PERMANENT), (403, Outcome.PERMANENT), (404, Outcome.PERMANENT),
        (408, Outcome.RETRYABLE), (410, Outcome.PERMANENT), (413, Outcome.PERMANENT), (422, Outcome.PERMANENT),
        (429, Outcome.RETRYABLE), (499, Outcome.PERMANENT),
        (500, Outcome.RETRYABLE), (502, Outcome.RETRYABLE), (503, Outcome.RETRYABLE), (504, Outcome.RETRYABLE),
        (599, Outcome.RETRYABLE),
    ],
)  # fmt: skip
def test_classify_http_table(status, outcome):
    if outcome is None:
        assert classify_http(status, "", None) is None
        return
    with pytest.raises(DeliveryError) as info:
        classify_http(status, "", "30")
    assert info.value.outcome is outcome and info.value.status == status
    assert info.value.retry_after == (30.0 if outcome is Outcome.RETRYABLE else None)


def test_refinement_overrides_the_status_rule():
    with pytest.raises(DeliveryError) as info:
        classify_http(400, '{"code": 20429, "message": "Too many requests"}', None, provider="twilio", refine=refine)
    assert info.value.outcome is Outcome.RETRYABLE
    assert str(info.value) == 'twilio responded 400: code=20429 message="Too many requests"'


def test_error_body_is_scrubbed_and_short():
    body = "Recipient nurse@hospital.example or +44 7700 900123 refused " + "x" * 1000
    with pytest.raises(DeliveryError) as info:
        classify_http(422, body, None)
    text = str(info.value)
    assert "nurse@hospital.example" not in text and "7700 900123" not in text
    assert len(text) < 260


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("0", 0.0), ("120", 120.0), ("soon", None), ("Wed, 25 Nov 2026 10:00:30 GMT", 30.0),
     ("Wed, 25 Nov 2026 09:00:00 GMT", 0.0)],
)  # fmt: skip
def test_parse_retry_after(header, expected):
    now = dt.datetime(2026, 11, 25, 10, 0, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after(header, now=now) == expected


def test_delivery_error_repr_and_retryable():
    exc = DeliveryError("x responded 503", Outcome.RETRYABLE, status=503, retry_after=2.0)
    assert exc.retryable and repr(exc) == "DeliveryError('x responded 503', retryable, status=503, retry_after=2.0)"
    assert not DeliveryError("y", Outcome.AMBIGUOUS).retryable


def _cfg(**kw):  # noqa: ANN202
    return TwilioConfig.model_validate({"account_sid": SID, "from_number": "+15005550006", **kw})


def test_resolve_secret_from_env_and_file(tmp_path):
    assert resolve_secret(_cfg(auth_token_env="TOK"), "auth_token", environ={"TOK": " abc \n"}) == SecretStr("abc")
    path = tmp_path / "token"
    path.write_text("from-file\n")
    assert resolve_secret(_cfg(auth_token_file=str(path)), "auth_token").get_secret_value() == "from-file"


def test_missing_env_var_names_the_variable():
    with pytest.raises(ConfigurationError, match="auth_token_env: environment variable TWILIO_TOKEN_XYZ is not set"):
        resolve_secret(_cfg(auth_token_env="TWILIO_TOKEN_XYZ"), "auth_token", environ={})


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(ConfigurationError, match=r"auth_token_file: cannot read .*nope \(FileNotFoundError\)"):
        resolve_secret(_cfg(auth_token_file=str(tmp_path / "nope")), "auth_token")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigurationError, match="is empty"):
        resolve_secret(_cfg(auth_token_file=str(tmp_path / "empty")), "auth_token")


def test_inline_secret_is_refused_without_echo():
    from pydantic import ValidationError

    from worker.channels.registry import format_validation_error

    with pytest.raises(ValidationError) as info:
        _cfg(auth_token="CANARY-inline-secret")
    lines = format_validation_error(info.value)
    assert any(line.startswith("auth_token: unknown field") for line in lines)
    assert "CANARY-inline-secret" not in " ".join(lines)
