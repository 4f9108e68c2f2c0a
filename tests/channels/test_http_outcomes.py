"""Every HTTP channel against a real local server: the same status -> outcome table for all kinds.

* 2xx -> Receipt; 429 and 5xx -> RETRYABLE with Retry-After parsed; 4xx -> PERMANENT;
* read timeout after the server received the request -> AMBIGUOUS;
* connection reset after the request was sent -> AMBIGUOUS;
* connection refused (server down) -> RETRYABLE;
* redirects are not followed (PERMANENT) and nothing is sent twice;
* no error message contains the canary secret or the message text.
"""

from __future__ import annotations

import threading
import time

import pytest
from werkzeug import Response

from tests.channels.conftest import CANARY
from tests.channels.kinds import HTTP_KINDS, SUCCESS_STATUS
from worker.channels.base import DeliveryError, Outcome

KINDS = sorted(HTTP_KINDS)


def _assert_clean(exc: DeliveryError, message) -> None:  # noqa: ANN001
    for text in (str(exc), repr(exc)):
        assert CANARY not in text
        assert message.text not in text


@pytest.mark.parametrize("kind", KINDS)
def test_success_returns_a_receipt(kind, http_server, monkeypatch):
    channel, path, message = HTTP_KINDS[kind](http_server.url_for("").rstrip("/"), monkeypatch)
    http_server.expect_oneshot_request(path, method="POST").respond_with_data(
        '{"sid": "SM1", "status": "queued", "dedup_key": "alert-42"}', status=SUCCESS_STATUS[kind],
        content_type="application/json",
    )  # fmt: skip
    channel.send(message)
    http_server.check_assertions()
    assert len(http_server.log) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("status", "retry_after", "expected"), [(429, "7", 7.0), (503, "120", 120.0), (500, None, None)])
def test_throttled_or_server_error_is_retryable(kind, status, retry_after, expected, http_server, monkeypatch):
    channel, path, message = HTTP_KINDS[kind](http_server.url_for("").rstrip("/"), monkeypatch)
    headers = {"Retry-After": retry_after} if retry_after else {}
    http_server.expect_request(path).respond_with_data("busy", status=status, headers=headers)
    with pytest.raises(DeliveryError) as info:
        channel.send(message)
    assert info.value.outcome is Outcome.RETRYABLE
    assert (info.value.status, info.value.retry_after) == (status, expected)
    assert len(http_server.log) == 1  # no hidden retry of a request that reached the server
    _assert_clean(info.value, message)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_client_error_is_permanent(kind, status, http_server, monkeypatch):
    channel, path, message = HTTP_KINDS[kind](http_server.url_for("").rstrip("/"), monkeypatch)
    http_server.expect_request(path).respond_with_json({"message": "rejected"}, status=status)
    with pytest.raises(DeliveryError) as info:
        channel.send(message)
    assert info.value.outcome is Outcome.PERMANENT and info.value.status == status
    assert "rejected" in str(info.value)
    _assert_clean(info.value, message)


@pytest.mark.parametrize("kind", KINDS)
def test_redirect_is_not_followed(kind, http_server, monkeypatch):
    channel, path, message = HTTP_KINDS[kind](http_server.url_for("").rstrip("/"), monkeypatch)
    http_server.expect_request(path).respond_with_data("", status=307, headers={"Location": "/elsewhere"})
    http_server.expect_request("/elsewhere").respond_with_data("ok")
    with pytest.raises(DeliveryError) as info:
        channel.send(message)
    assert info.value.outcome is Outcome.PERMANENT and info.value.status == 307
    assert [r.path for r, _ in http_server.log] == [path]


@pytest.mark.parametrize("kind", KINDS)
def test_read_timeout_after_request_received_is_ambiguous(kind, http_server, monkeypatch):
    """The server got the whole request but answers after the read timeout (0.6 s)."""
    channel, path, message = HTTP_KINDS[kind](http_server.url_for("").rstrip("/"), monkeypatch)
    received, done = threading.Event(), threading.Event()

    def slow(request):  # noqa: ANN001, ANN202
        request.get_data()
        received.set()
        time.sleep(1.0)
        done.set()
        return Response("late", status=200)

    http_server.expect_request(path).respond_with_handler(slow)
    with pytest.raises(DeliveryError) as info:
        channel.send(message)
    assert received.wait(5)  # the server did get the whole request
    assert info.value.outcome is Outcome.AMBIGUOUS
    _assert_clean(info.value, message)
    assert done.wait(5)  # let the handler finish before the shared server is cleared


@pytest.mark.parametrize("kind", KINDS)
def test_connection_reset_after_sending_is_ambiguous(kind, drop_server, monkeypatch):
    channel, path, message = HTTP_KINDS[kind](drop_server.url, monkeypatch)
    with pytest.raises(DeliveryError) as info:
        channel.send(message)
    assert info.value.outcome is Outcome.AMBIGUOUS
    assert len(drop_server.received) == 1 and path.encode() in drop_server.received[0]
    _assert_clean(info.value, message)


@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused_is_retryable(kind, refused_url, monkeypatch):
    channel, _, message = HTTP_KINDS[kind](refused_url, monkeypatch)
    with pytest.raises(DeliveryError) as info:
        channel.send(message)
    assert info.value.outcome is Outcome.RETRYABLE
    assert "cannot connect" in str(info.value)
    _assert_clean(info.value, message)
