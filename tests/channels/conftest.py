"""Real local counterparts for channel tests: a threaded HTTP server (pytest-httpserver), a port that
refuses connections, a TCP server that drops the connection after reading the request, and SMTP
(aiosmtpd with STARTTLS, AUTH and a certificate from a test CA). Every port is chosen by the OS."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pytest_httpserver import HTTPServer

from worker.channels.base import OutboundMessage

CANARY = "CANARY-s3cr3t-7f1e"  # a secret value that must never show up anywhere
SMTP_USER = "crs-alert"


def make_message(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "reference": "ntf-123",
        "alert_id": 42,
        "alert_code": "K7Q2",
        "urgency": "emergency",
        "to": "+15551230000",
        "subject": "[EMERGENCY] CRS >=2, ICANS 0 - patient P-77 - alert K7Q2",
        "text": "EMERGENCY crs-alert pt P-77: CRS >=2, ICANS 0. Provisional. Reply ACK K7Q2",
        "html": None,
        "payload": {"version": 1, "type": "alert.triggered", "id": "ntf-123", "patient_ref": "P-77",
                    "occurred_at": "2026-11-20T08:00:00+00:00", "alert": {"id": 42, "code": "K7Q2"}},
        "dedup_key": "alert-42",
        "event": "alert.triggered",
    }  # fmt: skip
    fields.update(overrides)
    return OutboundMessage(**fields)


@pytest.fixture(scope="session")
def _http_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http_server(_http_server: HTTPServer) -> Iterator[HTTPServer]:
    """A threaded local HTTP server on an OS-chosen port, with no expectations or log left over."""
    _http_server.clear()
    yield _http_server
    _http_server.clear()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A URL whose port is bound but not listening: connections are refused, and no other process
    can take the port while the test runs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@dataclass
class DropServer:
    """Reads one whole HTTP request, then resets the connection without answering."""

    url: str
    received: list[bytes] = field(default_factory=list)


@pytest.fixture
def drop_server() -> Iterator[DropServer]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    server = DropServer(f"http://127.0.0.1:{listener.getsockname()[1]}")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = next(
                        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
                        0,
                    )
                    while len(body) < length:
                        body += conn.recv(65536)
                except OSError:
                    pass
                server.received.append(data)
                # SO_LINGER 0: close sends RST, the client sees "connection reset" after sending.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(2)
        listener.close()


# --------------------------------------------------------------------------------------------- SMTP


class _Controller(Controller):
    """aiosmtpd's Controller with an OS-chosen port (port 0): learn the port before the self-test."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpBehaviour:
    rcpt_reply: str | None = None  # e.g. "550 5.1.1 no such user"
    data_reply: str | None = None
    data_delay_s: float = 0.0
    messages: list[Any] = field(default_factory=list)
    auth_attempts: list[tuple[str, str]] = field(default_factory=list)


class _Handler:
    def __init__(self, behaviour: SmtpBehaviour) -> None:
        self.b = behaviour

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        if self.b.rcpt_reply:
            return self.b.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        if self.b.data_delay_s:
            await asyncio.sleep(self.b.data_delay_s)
        self.b.messages.append(
            {"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "data": envelope.content,
             "tls": session.ssl is not None, "authenticated": session.authenticated}
        )  # fmt: skip
        return self.b.data_reply or "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    ca_file: str
    password: str
    behaviour: SmtpBehaviour


@pytest.fixture(scope="session")
def test_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(test_ca: trustme.CA, tmp_path) -> str:  # noqa: ANN001
    path = tmp_path / "ca.pem"
    test_ca.cert_pem.write_to_path(str(path))
    return str(path)


def _smtp(test_ca: trustme.CA, ca_file: str, *, starttls: bool) -> Iterator[SmtpServer]:
    behaviour = SmtpBehaviour()
    password = "right-password-" + CANARY

    def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
        assert isinstance(auth_data, LoginPassword)
        login, pw = auth_data.login.decode(), auth_data.password.decode()
        behaviour.auth_attempts.append((mechanism, login))
        return AuthResult(success=(login == SMTP_USER and pw == password), handled=False)

    kwargs: dict[str, Any] = {"authenticator": authenticator, "auth_require_tls": starttls}
    if starttls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        test_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        kwargs.update(tls_context=context, require_starttls=True)
    controller = _Controller(_Handler(behaviour), hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", controller.port, ca_file, password, behaviour)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server(test_ca: trustme.CA, ca_file: str) -> Iterator[SmtpServer]:
    yield from _smtp(test_ca, ca_file, starttls=True)


@pytest.fixture
def plain_smtp_server(test_ca: trustme.CA, ca_file: str) -> Iterator[SmtpServer]:
    """No STARTTLS offered (AUTH allowed in clear, so only the TLS requirement can refuse)."""
    yield from _smtp(test_ca, ca_file, starttls=False)
