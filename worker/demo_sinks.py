"""Local receivers for the demo (and the latency benchmark): real servers on 127.0.0.1.

- SMTP (aiosmtpd) that keeps every message it accepts;
- an HTTP receiver for signed webhooks that verifies each Standard Webhooks signature
  (standardwebhooks) and refuses a bad one with 401;
- Twilio-compatible (Messages.json) and PagerDuty Events v2 (/v2/enqueue) endpoints.
Each records (time received, what, to, reference) so the caller can show what was delivered.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Received:
    at: float
    kind: str  # email | webhook | sms | pagerduty
    to: str
    reference: str
    summary: str
    patient: str = ""  # the pseudonymous patient reference of a webhook event


@dataclass
class Sinks:
    webhook_secret: str = field(default_factory=lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
    received: list[Received] = field(default_factory=list)
    smtp_port: int = 0
    http_port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: list[Any] = field(default_factory=list)

    def record(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    def start(self) -> Sinks:
        self._start_smtp()
        self._start_http()
        return self

    def stop(self) -> None:
        for stop in reversed(self._stop):
            stop()

    def __enter__(self) -> Sinks:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- SMTP ---------------------------------------------------------------------------------
    def _start_smtp(self) -> None:
        try:
            from aiosmtpd.controller import Controller
        except ImportError as exc:  # pragma: no cover - a production image without the test extra
            raise RuntimeError("the demo needs aiosmtpd: ./dev setup installs it") from exc
        sinks = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
                from email import message_from_bytes

                msg = message_from_bytes(envelope.content)
                ref = (msg.get("Message-ID") or "").strip("<>").split("@")[0]
                sinks.record(Received(time.monotonic(), "email", ",".join(envelope.rcpt_tos), ref, msg.get("Subject", "")))
                return "250 OK"

        class OsPortController(Controller):  # port 0: learn the OS-chosen port before aiosmtpd's self-test
            def _trigger_server(self) -> None:
                self.port = self.server.sockets[0].getsockname()[1]
                super()._trigger_server()

        controller = OsPortController(Handler(), hostname="127.0.0.1", port=0)
        controller.start()
        self.smtp_port = controller.port
        self._stop.append(controller.stop)

    # -- HTTP ---------------------------------------------------------------------------------
    def _start_http(self) -> None:
        from standardwebhooks import Webhook

        sinks = self
        verifier = Webhook(self.webhook_secret)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.monotonic()
                if self.path.startswith("/webhook"):
                    try:
                        verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
                    except Exception:  # noqa: BLE001 - any verification failure is a 401
                        return self._reply(401, {"error": "bad signature"})
                    event = json.loads(body)
                    sinks.record(Received(now, "webhook", self.path, self.headers.get("webhook-id", ""),
                                          f"{event.get('type')} verified signature", str(event.get("patient_ref", ""))))  # fmt: skip
                    return self._reply(200, {"ok": True})
                if self.path.endswith("/Messages.json"):
                    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                    sid = "SM" + secrets.token_hex(16)
                    sinks.record(Received(now, "sms", form.get("To", ""), sid, form.get("Body", "")))
                    return self._reply(201, {"sid": sid, "status": "queued"})
                if self.path == "/v2/enqueue":
                    event = json.loads(body)
                    sinks.record(Received(now, "pagerduty", event.get("dedup_key", ""), event.get("dedup_key", ""),
                                          f"{event.get('event_action')}: {event.get('payload', {}).get('summary', '')}"))  # fmt: skip
                    return self._reply(202, {"status": "success", "dedup_key": event.get("dedup_key")})
                return self._reply(404, {"error": "unknown path"})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.http_port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, name="demo-sinks-http", daemon=True)
        thread.start()

        def stop() -> None:
            server.shutdown()
            server.server_close()

        self._stop.append(stop)

    # -- channels pointing at the sinks ---------------------------------------------------------
    def channels_config(self) -> dict[str, Any]:
        """A channels file (same names as config/rules.yaml) whose channels deliver to these sinks.
        Secrets are given by environment variable name, as in production (see environ())."""
        base = f"http://127.0.0.1:{self.http_port}"
        return {"channels": {
            "sms": {"kind": "twilio_sms", "account_sid": "AC" + "0" * 32, "auth_token_env": "CRS_DEMO_TWILIO_TOKEN",
                    "from_number": "+15005550006", "base_url": base, "max_segments": 2},
            "email": {"kind": "email", "host": "127.0.0.1", "port": self.smtp_port, "security": "none",
                      "from_address": "crs-alert@demo.invalid", "secure": True},
            "pagerduty": {"kind": "pagerduty", "routing_key_env": "CRS_DEMO_PD_KEY", "base_url": base},
            "ehr-webhook": {"kind": "webhook", "url": f"{base}/webhook/ehr", "secret_env": "CRS_DEMO_WEBHOOK_SECRET"},
        }}  # fmt: skip

    def environ(self) -> dict[str, str]:
        return {"CRS_DEMO_TWILIO_TOKEN": "demo-" + secrets.token_hex(8), "CRS_DEMO_PD_KEY": secrets.token_hex(16),
                "CRS_DEMO_WEBHOOK_SECRET": self.webhook_secret}  # fmt: skip
