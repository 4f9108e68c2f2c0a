"""HTTP transport settings: TLS with a private CA, an explicit proxy, no environment proxies."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme
from pytest_httpserver import HTTPServer

from tests.channels.kinds import slack, webhook
from worker.channels.base import DeliveryError, Outcome


@pytest.fixture
def tls_server(test_ca: trustme.CA) -> Iterator[HTTPServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca.issue_cert("127.0.0.1").configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context, threaded=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_https_with_private_ca(tls_server, ca_file, monkeypatch):
    base = tls_server.url_for("").rstrip("/")
    assert base.startswith("https://")
    channel, path, message = webhook(base, monkeypatch, ca_file=ca_file)
    tls_server.expect_oneshot_request(path).respond_with_data("", status=204)
    channel.send(message)
    assert len(tls_server.log) == 1


def test_untrusted_certificate_is_permanent(tls_server, monkeypatch):
    channel, _, message = webhook(tls_server.url_for("").rstrip("/"), monkeypatch)
    with pytest.raises(DeliveryError) as info:
        channel.send(message)
    assert info.value.outcome is Outcome.PERMANENT and "certificate verification failed" in str(info.value)
    assert tls_server.log == []


def test_explicit_proxy_is_used(http_server, monkeypatch):
    """The request goes to the configured proxy (here the local server) with the absolute URL."""
    channel, path, message = slack("http://chat.hospital.invalid", monkeypatch, proxy=http_server.url_for("").rstrip("/"))
    http_server.expect_oneshot_request(path, method="POST").respond_with_data("ok")
    channel.send(message)
    assert http_server.log[0][0].host == "chat.hospital.invalid"


def test_environment_proxy_is_ignored(http_server, monkeypatch, refused_url):
    monkeypatch.setenv("HTTP_PROXY", refused_url)
    monkeypatch.setenv("http_proxy", refused_url)
    channel, path, message = slack(http_server.url_for("").rstrip("/"), monkeypatch)
    http_server.expect_oneshot_request(path).respond_with_data("ok")
    channel.send(message)
    assert len(http_server.log) == 1
