"""Signed, expiring, single-use acknowledgement links.

Rules:
- A link carries (alert id, receiver, nonce) signed with HMAC (itsdangerous, SHA-256) under a
  secret that only the server knows (CRS_ACK_SECRET); a forged or altered token is refused.
- It expires: the signature includes its issue time and is refused after ``max_age``.
- It is single use: the caller records the nonce in ``ack_tokens`` (unique) in the same
  transaction as the acknowledgement; a second use finds the nonce taken and is refused.
- The token names no patient and no clinical data: it is safe in an SMS.
Pure module: no I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

SALT = "crs-alert.ack.v1"


class LinkError(ValueError):
    """Why a link was refused: forged, expired, or malformed (the message is safe to show)."""


@dataclass(frozen=True, slots=True)
class Claims:
    alert_id: int
    receiver: str
    nonce: str
    issued_at: dt.datetime


def _serializer(secret: str, now: dt.datetime | None = None) -> URLSafeTimedSerializer:
    if not secret or len(secret) < 32:
        raise ValueError("the acknowledgement secret must be at least 32 characters (CRS_ACK_SECRET)")

    class Signer(TimestampSigner):
        def get_timestamp(self) -> int:  # the caller's clock, not the wall clock (testable, replayable)
            return int(now.timestamp()) if now is not None else super().get_timestamp()

    return URLSafeTimedSerializer(secret, salt=SALT, signer=Signer, signer_kwargs={"digest_method": hashlib.sha256})


def issue(secret: str, alert_id: int, receiver: str, now: dt.datetime) -> str:
    """A token for ``receiver`` to acknowledge ``alert_id`` (about 100 URL-safe characters)."""
    return _serializer(secret, now).dumps({"a": alert_id, "r": receiver, "n": secrets.token_urlsafe(9)})


def verify(secret: str, token: str, now: dt.datetime, max_age: dt.timedelta) -> Claims:
    """The claims of a valid, unexpired token; raises LinkError otherwise."""
    try:
        data, stamp = _serializer(secret).loads(token, return_timestamp=True)
        claims = Claims(int(data["a"]), str(data["r"]), str(data["n"]), stamp)
    except (BadSignature, KeyError, TypeError, ValueError):
        raise LinkError("this acknowledgement link is not valid") from None
    if now - claims.issued_at > max_age:
        raise LinkError("this acknowledgement link has expired")
    if claims.issued_at - now > dt.timedelta(minutes=5):
        raise LinkError("this acknowledgement link is not valid")  # issued in the future: clock skew or forgery
    return claims
