"""Generic HTTP SMS gateway: configurable JSON field names, bearer token, idempotency header."""

from __future__ import annotations

import pytest

from tests.channels.conftest import CANARY, make_message
from tests.channels.kinds import http_sms
from worker.channels.base import DeliveryError, Outcome


def test_json_body_with_configured_fields(http_server, monkeypatch):
    channel, _, message = http_sms(
        http_server.url_for("").rstrip("/"), monkeypatch, to_field="msisdn", text_field="message",
        reference_field="client_ref", extra_fields={"sender": "CRSALERT", "priority": 1},
        idempotency_header="Idempotency-Key", message_id_field="data.id", method="PUT",
    )  # fmt: skip
    http_server.expect_oneshot_request("/sms", method="PUT").respond_with_json({"data": {"id": 981}}, status=202)
    receipt = channel.send(message)
    [(request, _)] = http_server.log
    assert request.get_json() == {
        "msisdn": "+15551230000", "message": message.text, "client_ref": "ntf-123", "sender": "CRSALERT", "priority": 1,
    }  # fmt: skip
    assert request.headers["Authorization"] == f"Bearer gw-{CANARY}"
    assert request.headers["Idempotency-Key"] == "ntf-123"
    assert receipt.provider_id == "981"


def test_defaults_and_no_token(http_server, monkeypatch):
    from worker.channels.sms_gateway import HttpSmsChannel, HttpSmsConfig

    cfg = HttpSmsConfig.model_validate({"url": http_server.url_for("/sms")})
    http_server.expect_oneshot_request("/sms", method="POST").respond_with_data("accepted", status=200)
    receipt = HttpSmsChannel("gw", cfg).send(make_message())
    request = http_server.log[0][0]
    assert request.get_json() == {"to": "+15551230000", "text": make_message().text}
    assert "Authorization" not in request.headers
    assert receipt.provider_id is None


def test_invalid_recipient_is_permanent(http_server, monkeypatch):
    channel, _, _ = http_sms(http_server.url_for("").rstrip("/"), monkeypatch)
    with pytest.raises(DeliveryError) as info:
        channel.send(make_message(to="nurse@hospital.example"))
    assert info.value.outcome is Outcome.PERMANENT and http_server.log == []


# -- delivery reports (status callbacks) -------------------------------------------------------------


def _callback(monkeypatch, **over):
    from worker.channels.sms_gateway import HttpSmsConfig, status_callback

    monkeypatch.setenv("T_GW_STATUS", "st-" + CANARY)
    cfg = HttpSmsConfig.model_validate({"url": "https://gw.example/sms", "status_secret_env": "T_GW_STATUS", **over})
    return status_callback("gw", cfg)


def test_no_status_secret_means_no_delivery_reports():
    from worker.channels.sms_gateway import HttpSmsConfig, status_callback

    assert status_callback("gw", HttpSmsConfig.model_validate({"url": "https://gw.example/sms"})) is None


def test_a_status_secret_that_is_not_set_is_a_configuration_error_naming_the_variable(monkeypatch):
    from worker.channels.base import ConfigurationError
    from worker.channels.sms_gateway import HttpSmsConfig, status_callback

    monkeypatch.delenv("T_GW_MISSING", raising=False)
    cfg = HttpSmsConfig.model_validate({"url": "https://gw.example/sms", "status_secret_env": "T_GW_MISSING"})
    with pytest.raises(ConfigurationError, match="status_secret_env: environment variable T_GW_MISSING is not set"):
        status_callback("gw", cfg)


@pytest.mark.parametrize("bad", [[], [""], ["  "]])
def test_undelivered_statuses_must_name_at_least_one_status(bad):
    from pydantic import ValidationError

    from worker.channels.sms_gateway import HttpSmsConfig

    with pytest.raises(ValidationError, match="at least one status"):
        HttpSmsConfig.model_validate({"url": "https://gw.example/sms", "undelivered_statuses": bad})


def test_signature_is_the_hex_hmac_sha256_of_the_exact_body(monkeypatch):
    import hashlib
    import hmac

    from worker.channels.sms_gateway import signature, valid_signature

    cb = _callback(monkeypatch)
    body = b'{"message_id": "m1", "status": "failed"}'
    good = hmac.new(("st-" + CANARY).encode(), body, hashlib.sha256).hexdigest()
    assert signature("st-" + CANARY, body) == good
    assert valid_signature(cb.secret, body, good)
    assert valid_signature(cb.secret, body, f" {good.upper()} ")  # hex case and surrounding blanks do not matter
    assert not valid_signature(cb.secret, body + b" ", good)  # the body is signed byte for byte
    assert not valid_signature(cb.secret, body, signature("another secret", body))
    assert not valid_signature(cb.secret, body, None)
    assert not valid_signature(cb.secret, body, "")


def test_a_report_is_read_at_the_configured_paths(monkeypatch):
    cb = _callback(monkeypatch, status_id_field="data.id", status_field="data.state", status_error_field="data.err",
                   undelivered_statuses=["EXPIRED", "REJECTD"])  # fmt: skip
    assert cb.read({"data": {"id": 981, "state": "EXPIRED", "err": 7}}) == ("981", "EXPIRED", "7")
    assert cb.read({"data": {"id": "a", "state": "DELIVRD"}}) == ("a", "DELIVRD", None)
    assert cb.undelivered == frozenset({"EXPIRED", "REJECTD"})
    default = _callback(monkeypatch)
    assert (default.id_field, default.status_field, default.error_field) == ("message_id", "status", None)
    assert default.undelivered == frozenset({"failed", "undelivered", "rejected", "expired"})


@pytest.mark.parametrize(("report", "field"), [
    ({"status": "failed"}, "message_id"),
    ({"message_id": "m1"}, "status"),
    ({"message_id": "", "status": "failed"}, "message_id"),
    ({"message_id": True, "status": "failed"}, "message_id"),
    ({"message_id": "m1", "status": None}, "status"),
    ({"message_id": "m1", "status": {"code": 1}}, "status"),
    ({"message_id": 1.5, "status": "failed"}, "message_id"),
])  # fmt: skip
def test_a_malformed_report_names_the_field_and_the_rule(monkeypatch, report, field):
    with pytest.raises(ValueError, match=f"^{field}: required .*non-empty string or integer"):
        _callback(monkeypatch).read(report)


@pytest.mark.parametrize("report", [[], "failed", 3, None])
def test_a_report_must_be_a_json_object(monkeypatch, report):
    with pytest.raises(ValueError, match="must be a JSON object"):
        _callback(monkeypatch).read(report)


def test_the_api_reads_each_gateways_delivery_report_settings_from_the_channels_file(tmp_path, monkeypatch):
    """Only http_sms channels with a status secret get reports; a broken one is listed with its
    problem (its reports get 503) without taking the others down, and no secret value is shown."""
    from worker.channels.sms_gateway import StatusCallback
    from worker.commands.api import gateway_status_callbacks

    monkeypatch.setenv("T_GW_STATUS", "st-" + CANARY)
    monkeypatch.delenv("T_GW_UNSET", raising=False)
    path = tmp_path / "channels.yaml"
    path.write_text("""\
channels:
  good: {kind: http_sms, url: "https://gw.example/sms", status_secret_env: T_GW_STATUS, status_field: state}
  unset: {kind: http_sms, url: "https://gw.example/sms", status_secret_env: T_GW_UNSET}
  invalid: {kind: http_sms, url: "https://gw.example/sms", status_secret_env: T_GW_STATUS, undelivered_statuses: []}
  plain: {kind: http_sms, url: "https://gw.example/sms"}
  hook: {kind: webhook, url: "https://ehr.example/hook", secret_env: T_GW_UNSET}
""")
    found = gateway_status_callbacks(str(path))
    assert sorted(found) == ["good", "invalid", "unset"]
    assert isinstance(found["good"], StatusCallback) and found["good"].status_field == "state"
    assert found["good"].secret.get_secret_value() == "st-" + CANARY
    assert found["unset"] == "status_secret_env: environment variable T_GW_UNSET is not set or empty"
    assert "undelivered_statuses" in found["invalid"] and "at least one status" in found["invalid"]
    assert CANARY not in repr(found)
    assert gateway_status_callbacks(str(tmp_path / "absent.yaml")) == {}
    assert gateway_status_callbacks(None) == {}
