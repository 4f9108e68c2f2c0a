"""Signed, expiring, single-use acknowledgement links.

Rules:
- A link carries (alert id, receiver, nonce, the alert's escalation epoch) signed with HMAC (itsdangerous, SHA-256) under a
  secret that only the server knows (CRS_ACK_SECRET); a forged or altered token is refused.
- It expires: the signature includes its issue time and is refused after ``max_age``.
- It is single use: the caller records the nonce in ``ack_tokens`` (unique) in the same
  transaction as the acknowledgement; a second use finds the nonce taken and is refused.
- It is for the alert as it was when sent: the epoch is the alert's ``escalation_epoch``, which
  every restart of its escalation (an upgrade, a re-page after ``ack_timeout``) raises, so the
  caller refuses a link from an earlier epoch (the clinician has not seen what changed; the new
  pages carry new links). A link issued before epochs were signed has none and is taken as it is.
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
    epoch: int | None = None  # the alert's escalation epoch when the link was sent; None: an older link

    def outdated(self, current_epoch: int) -> bool:
        """Whether the alert's escalation restarted after this link was sent (upgraded, re-paged)."""
        return self.epoch is not None and self.epoch != current_epoch


def _serializer(secret: str, now: dt.datetime | None = None) -> URLSafeTimedSerializer:
    if not secret or len(secret) < 32:
        raise ValueError("the acknowledgement secret must be at least 32 characters (CRS_ACK_SECRET)")

    class Signer(TimestampSigner):
        def get_timestamp(self) -> int:  # the caller's clock, not the wall clock (testable, replayable)
            return int(now.timestamp()) if now is not None else super().get_timestamp()

    return URLSafeTimedSerializer(secret, salt=SALT, signer=Signer, signer_kwargs={"digest_method": hashlib.sha256})


def issue(secret: str, alert_id: int, receiver: str, now: dt.datetime, epoch: int | None = None) -> str:
    """A token for ``receiver`` to acknowledge ``alert_id`` as of its escalation ``epoch`` (about
    100 URL-safe characters). Without an epoch the link is not tied to one (as links were before)."""
    claims = {"a": alert_id, "r": receiver, "n": secrets.token_urlsafe(9)}
    if epoch is not None:
        claims["e"] = epoch
    return _serializer(secret, now).dumps(claims)


def verify(secret: str, token: str, now: dt.datetime, max_age: dt.timedelta) -> Claims:
    """The claims of a valid, unexpired token; raises LinkError otherwise."""
    try:
        data, stamp = _serializer(secret).loads(token, return_timestamp=True)
        epoch = data.get("e")
        if epoch is not None and (not isinstance(epoch, int) or isinstance(epoch, bool)):
            raise ValueError("epoch")
        claims = Claims(int(data["a"]), str(data["r"]), str(data["n"]), stamp, epoch)
    except (BadSignature, KeyError, TypeError, ValueError):
        raise LinkError("this acknowledgement link is not valid") from None
    if now - claims.issued_at > max_age:
        raise LinkError("this acknowledgement link has expired")
    if claims.issued_at - now > dt.timedelta(minutes=5):
        raise LinkError("this acknowledgement link is not valid")  # issued in the future: clock skew or forgery
    return claims
