"""E-mail over SMTP (smtplib): the rich, secure message (text + HTML alternative).

Outcomes:

* cannot connect, DNS, timeout before DATA, SMTP 4xx at any step: RETRYABLE;
* SMTP 5xx (sender or recipient refused, message rejected), authentication failure (535), AUTH or
  STARTTLS not offered while required, certificate verification failure: PERMANENT;
* the connection drops or times out during or after DATA (the server may have queued the message):
  AMBIGUOUS. The Message-ID is derived from the notification reference, so a repeat is visible.

A new SMTP connection is opened per message (no shared state: ``send`` is thread-safe).
"""

from __future__ import annotations

import email.policy
import re
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator

from worker.channels.base import Channel, ChannelConfig, DeliveryError, OutboundMessage, Outcome, Receipt, resolve_secret

_ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")


class EmailConfig(ChannelConfig):
    secret_fields = ("password",)

    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    from_address: str
    ca_file: FilePath | None = None
    timeout_s: float = Field(15.0, gt=0, le=120)
    secure: bool = True

    @field_validator("from_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError("must be an e-mail address like alerts@hospital.example")
        return value

    @model_validator(mode="after")
    def _auth_pairs(self) -> "EmailConfig":
        has_password = bool(self.password_env or self.password_file)
        if bool(self.username) != has_password:
            raise ValueError("username and password_env/password_file go together")
        if self.security == "none" and has_password:
            raise ValueError("security: none would send the password in clear; use starttls or tls")
        return self


class EmailChannel(Channel):
    kind = "email"
    Config = EmailConfig

    @classmethod
    def address_problem(cls, to: str) -> str | None:
        if not to:
            return "an e-mail contact needs `to`: an address like nurse@hospital.example"
        return None if _ADDRESS.match(to) else "recipient is not an e-mail address (like nurse@hospital.example)"

    def __init__(self, name: str, config: EmailConfig) -> None:
        super().__init__(name, config)
        self.config: EmailConfig = config
        self.secure = config.secure
        self._password: SecretStr | None = resolve_secret(config, "password")
        self._context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
        self._domain = config.from_address.rsplit("@", 1)[1]

    def build(self, message: OutboundMessage) -> EmailMessage:
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self.config.from_address
        msg["To"] = message.to
        msg["Subject"] = " ".join(message.subject.split())  # one header line, whatever the caller passed
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        # Stable across retries: a mail client shows an ambiguous retry as the same message.
        msg["Message-ID"] = f"<{_token(message.reference)}@{self._domain}>"
        msg["X-CRS-Alert-Reference"] = message.reference
        msg["X-CRS-Alert-Event"] = message.event
        msg.set_content(message.text)
        if message.html:
            msg.add_alternative(message.html, subtype="html")
        return msg

    def send(self, message: OutboundMessage) -> Receipt:
        self.check_address(message.to)
        try:
            msg = self.build(message)
        except (ValueError, TypeError) as exc:
            raise DeliveryError(f"email: message cannot be built ({type(exc).__name__})", Outcome.PERMANENT) from None
        cfg = self.config
        import smtplib  # here, so that importing the config model loads no SMTP library

        try:
            if cfg.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=self._context)
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
        except ssl.SSLCertVerificationError:
            raise DeliveryError("email: TLS certificate verification failed", Outcome.PERMANENT) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"email: cannot connect ({type(exc).__name__})", Outcome.RETRYABLE) from None
        try:
            return self._session(smtp, message, msg)
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    def _session(self, smtp, message: OutboundMessage, msg: EmailMessage) -> Receipt:  # type: ignore[no-untyped-def]
        import smtplib

        cfg = self.config
        phase = "before DATA"
        try:
            _expect(smtp.ehlo(), "EHLO")
            if cfg.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(
                        "email: server does not offer STARTTLS (security: starttls is required)", Outcome.PERMANENT
                    )
                _expect(smtp.starttls(context=self._context), "STARTTLS")
                _expect(smtp.ehlo(), "EHLO")
            if self._password is not None:
                if not smtp.has_extn("auth"):
                    raise DeliveryError("email: server does not offer AUTH", Outcome.PERMANENT)
                try:
                    smtp.login(cfg.username or "", self._password.get_secret_value())
                except smtplib.SMTPAuthenticationError as exc:
                    raise _by_code(exc.smtp_code, "authentication failed") from None
            _expect(smtp.mail(cfg.from_address), "MAIL FROM")
            _expect(smtp.rcpt(message.to), "RCPT TO", ok=(250, 251))
            phase = "during DATA"
            code, _ = smtp.data(msg.as_bytes())
            if code != 250:
                raise _by_code(code, "message rejected after DATA")
            return Receipt(provider_id=msg["Message-ID"], detail=f"{cfg.host}:{cfg.port} accepted")
        except DeliveryError:
            raise
        except ssl.SSLCertVerificationError:
            raise DeliveryError("email: TLS certificate verification failed", Outcome.PERMANENT) from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryError("email: server does not support a required extension", Outcome.PERMANENT) from None
        except smtplib.SMTPResponseException as exc:
            raise _by_code(exc.smtp_code, f"server refused {phase}") from None
        except (OSError, smtplib.SMTPServerDisconnected, socket.timeout) as exc:
            if phase == "during DATA":
                raise DeliveryError(
                    f"email: connection lost or timed out during DATA ({type(exc).__name__}); the message may have "
                    "been accepted",
                    Outcome.AMBIGUOUS,
                ) from None
            raise DeliveryError(
                f"email: connection lost {phase} ({type(exc).__name__})", Outcome.RETRYABLE
            ) from None
        except smtplib.SMTPException as exc:
            raise DeliveryError(f"email: {type(exc).__name__} {phase}", Outcome.RETRYABLE) from None


def _by_code(code: int, what: str) -> DeliveryError:
    """SMTP reply class decides: 4xx transient (RETRYABLE), 5xx permanent."""
    outcome = Outcome.RETRYABLE if 400 <= code < 500 else Outcome.PERMANENT
    return DeliveryError(f"email: {what} (SMTP {code})", outcome, status=code)


def _expect(reply: tuple[int, bytes], step: str, ok: tuple[int, ...] = (250, 220)) -> None:
    code = reply[0]
    if code not in ok:
        raise _by_code(code, f"{step} refused")


def _token(reference: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", reference) or "notification"
