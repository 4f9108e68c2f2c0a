"""Inbound SMS replies: verify the provider's signature, read "ACK <code>".

Rules:
- Twilio signs each webhook: X-Twilio-Signature = base64(HMAC-SHA1(auth token, the full URL it
  called + every POST parameter name and value, sorted by name)). A request without a valid
  signature is refused before anything is read from it.
- A reply acknowledges when it reads "ACK <code>" (any case, extra spaces, an optional leading
  "#"), or is just the alert code; anything else gets a help message and changes nothing.
- Only a number that the alert's frozen receivers list may acknowledge by SMS (checked by the
  caller against the alert's contacts); the code alone is not enough. Numbers are compared by
  ``normalise_number``, which is empty for anything that is not a phone number (an e-mail address,
  a URL, a missing ``From``): an empty key matches nothing.
- Signatures are compared as bytes in constant time; a header with non-ASCII characters is simply
  not valid (never an exception).
Pure module: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping

_REPLY = re.compile(r"^\s*(?:ACK(?:NOWLEDGE)?\s+)?#?([A-Z0-9]{4,8})\s*[.!]?\s*$", re.IGNORECASE)
HELP = "Not acknowledged. Reply ACK followed by the alert code, e.g. ACK K7Q2X."


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def valid_twilio_signature(auth_token: str, url: str, params: Mapping[str, str], signature: str | None) -> bool:
    if not signature or not auth_token:
        return False
    return hmac.compare_digest(twilio_signature(auth_token, url, params).encode(), signature.strip().encode("utf-8", "replace"))


def parse_ack(body: str | None) -> str | None:
    """The alert code a reply acknowledges, or None."""
    m = _REPLY.match(body or "")
    return m.group(1).upper() if m else None


_PHONE = re.compile(r"\+?\d{3,15}")


def normalise_number(number: str) -> str:
    """E.164-ish comparison key: digits with a leading +, so "+44 7700 900101" equals "+447700900101";
    "" for what is not a phone number ("nurse@hospital.example" is not the number "")."""
    compact = re.sub(r"[\s().-]", "", number or "")
    return compact if _PHONE.fullmatch(compact) else ""
