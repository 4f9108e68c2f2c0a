"""Render an alert for one channel: subject, text, HTML and the JSON event.

Rules (clinical.md section 6, architecture.md invariant 7):

- Grades are provisional decision support: every message says so. Every rich (secure) message carries
  "Infection cannot be excluded by this assessment"; no message says infection was "ruled out" or
  "excluded" in any other phrase.
- ``AlertContent`` holds no name, no free-text note and no contact detail: it cannot leak what it
  does not have. ``patient_ref`` is the pseudonymous patient id.
- Channels that are not secure (SMS, Slack, Teams) get the short form only: patient reference,
  grades, NEWS2, urgency, red-flag *codes*, the alert code with "Reply ACK <code>" (SMS) and the
  short acknowledge link. No reasons, advice or vitals: their templates cannot even see them.
- SMS text (``max_length`` set) is GSM-7 only and fits ``max_length`` septets; truncation cuts the
  body, never the acknowledge tail (code and link).
- Custom templates (Jinja2, sandboxed, undefined variables are errors) replace the built-in wording
  per channel kind; ``validate_templates`` finds every broken template before use. At run time a
  failing template never drops the message: the built-in message is used and
  ``Rendered.template_errors`` says why, for the caller to log and alert on.

Pure module: no I/O of its own (``Templates.from_directory`` reads through Jinja2's loader).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from jinja2 import DictLoader, FileSystemLoader, StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from worker.advice import INFECTION

if TYPE_CHECKING:
    from worker.evaluation import Evaluation

INFECTION_PHRASE = "Infection cannot be excluded by this assessment"
PROVISIONAL = "Provisional grades for clinician review."
EVENTS = (
    "alert.triggered",
    "alert.escalated",
    "alert.repeated",
    "alert.upgraded",
    "alert.acknowledged",
    "alert.resolved",
    "test",
)
PARTS = ("subject", "text", "html")
# Kinds whose templates may use clinical detail (reasons, advice, vitals) in validation.
DEFAULT_SECURE_KINDS = frozenset({"email", "webhook", "pagerduty"})
PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class AlertContent:
    """Everything a message may say about an alert. No names, notes or contact details."""

    alert_id: int
    alert_code: str
    patient_ref: str
    unit: str | None
    condition: str  # "clinical" | "missed_checkin"
    event: str
    urgency: str
    crs_grade: int | None
    crs_grade_is_minimum: bool
    icans_grade: int | None
    icans_floor: int
    news2: int | None
    red_flags: tuple[str, ...]
    reasons: tuple[str, ...]
    advice: str
    vitals: dict[str, float]
    recorded_at: str
    ack_url: str | None
    step: int
    repeat: int
    reference: str


def content_from_evaluation(
    evaluation: "Evaluation",
    *,
    alert_id: int,
    alert_code: str,
    event: str,
    reference: str,
    unit: str | None = None,
    vitals: Mapping[str, float] | None = None,
    ack_url: str | None = None,
    step: int = 0,
    repeat: int = 0,
) -> AlertContent:
    """An ``AlertContent`` for a clinical alert from its evaluation. Takes only what a message may
    say: the check-in's note and any enrollment detail never reach it. ``vitals`` are the measured
    numbers (e.g. ``checkin.vitals.model_dump(exclude_none=True)``)."""
    return AlertContent(
        alert_id=alert_id,
        alert_code=alert_code,
        patient_ref=evaluation.patient_id,
        unit=unit,
        condition="clinical",
        event=event,
        urgency=evaluation.urgency.value,
        crs_grade=evaluation.crs_grade,
        crs_grade_is_minimum=evaluation.crs_grade_is_minimum,
        icans_grade=evaluation.icans_grade,
        icans_floor=evaluation.icans_floor,
        news2=evaluation.news2,
        red_flags=tuple(evaluation.red_flags),
        reasons=tuple(evaluation.reasons),
        advice=evaluation.advice,
        vitals={k: float(v) for k, v in (vitals or {}).items() if isinstance(v, (int, float))},
        recorded_at=evaluation.recorded_at.isoformat(),
        ack_url=ack_url,
        step=step,
        repeat=repeat,
        reference=reference,
    )


@dataclass(frozen=True)
class Rendered:
    """The rendered parts; unpacks as ``subject, text, html, payload = render(...)``.

    ``template_errors`` is empty unless a custom template failed at run time, in which case the
    built-in message was used instead (``fallback`` is True): log it and alert an administrator.
    The errors name templates and Jinja2 error kinds, never alert data.
    """

    subject: str
    text: str
    html: str | None
    payload: dict[str, Any]
    template_errors: tuple[str, ...] = ()

    @property
    def fallback(self) -> bool:
        return bool(self.template_errors)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.subject, self.text, self.html, self.payload))


# ---------------------------------------------------------------------------------------------
# GSM-7. One character outside the GSM 03.38 alphabet (a non-breaking space, a typographic quote,
# "≥", "…") silently switches the whole SMS to UCS-2: 70 characters per segment instead of 160
# (67 instead of 153 when concatenated), so the page costs two or three times as many segments and
# a gateway with a segment limit cuts it. healthchecks replaces such characters for the same reason.
# We normalise to GSM-7 and count septets (extension characters take two).

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
_REPLACEMENTS = {
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-",
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2026": "...", "\u2265": ">=", "\u2264": "<=", "\u00b0": " deg ", "\u00d7": "x",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " ", "\t": " ",
}  # fmt: skip


def to_gsm7(text: str) -> str:
    """Replace every character outside GSM-7 (look-alikes, then accents stripped, then "?")."""
    out = []
    for ch in text:
        if ch in GSM7_BASIC or ch in GSM7_EXTENSION:
            out.append(ch)
        elif ch in _REPLACEMENTS:
            out.append(_REPLACEMENTS[ch])
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            out.append(base if base and all(c in GSM7_BASIC for c in base) else "?")
    return "".join(out)


def gsm7_length(text: str) -> int:
    """Septets used by ``text`` (already GSM-7): extension characters count twice."""
    return sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)


def sms_max_length(segments: int) -> int:
    """Septets available in ``segments`` GSM-7 segments (160 single, 153 each when concatenated)."""
    return 160 if segments == 1 else 153 * segments


def _cut(text: str, septets: int) -> str:
    out, used = [], 0
    for ch in text:
        used += 2 if ch in GSM7_EXTENSION else 1
        if used > septets:
            break
        out.append(ch)
    return "".join(out)


MIN_BODY = 40  # septets of body kept before a long acknowledge link is given up for the code alone


def fit_text(body: str, tails: list[str], max_length: int | None, *, gsm7: bool) -> str:
    """``body`` + " " + the first tail that fits; the body is cut (at a word when possible, marked
    "...") so that the tail is never cut. Tails are in order of preference (with the link, then the
    code alone); a tail is taken only if ``MIN_BODY`` septets of body still fit beside it.
    Deterministic: the same input gives the same text."""
    clean = to_gsm7 if gsm7 else (lambda s: s)
    length = gsm7_length if gsm7 else len
    body = " ".join(clean(body).split())
    tails = [" ".join(clean(t).split()) for t in tails if t]
    if max_length is None:
        return f"{body} {tails[0]}".strip() if tails else body
    # The link is worth having only if the message still says who and how urgent: keep MIN_BODY.
    room_for = min(length(body), MIN_BODY) + 1
    tail = next((t for t in tails if length(t) + room_for <= max_length), tails[-1] if tails else "")
    if length(body) + 1 + length(tail) <= max_length:
        return f"{body} {tail}".strip()
    room = max_length - length(tail) - 1 - 3
    if room <= 0:
        return tail
    cut = _cut(body, room) if gsm7 else body[:room]
    if " " in cut and len(cut) - cut.rfind(" ") <= 20:
        cut = cut[: cut.rfind(" ")]
    return f"{cut.rstrip(' ,.;:')}... {tail}".strip()


# ---------------------------------------------------------------------------------------------
# Built-in wording (also the fallback when a custom template fails).

_EVENT_LABELS = {
    "alert.triggered": "New alert",
    "alert.escalated": "Escalated",
    "alert.repeated": "Repeat",
    "alert.upgraded": "Upgraded (worse findings)",
    "alert.acknowledged": "Acknowledged",
    "alert.resolved": "Resolved",
    "test": "TEST message (no patient, no action needed)",
}


def event_label(c: AlertContent) -> str:
    label = _EVENT_LABELS.get(c.event, c.event)
    if c.event == "alert.escalated":
        label += f" (step {c.step})"
    elif c.event == "alert.repeated":
        label += f" {c.repeat}: still not acknowledged"
    return label


def crs_text(c: AlertContent, *, short: bool = False) -> str:
    if c.crs_grade is None:
        return "CRS n/a" if short else "CRS not graded"
    if c.crs_grade_is_minimum:
        return f"CRS >={c.crs_grade}" if short else f"CRS at least grade {c.crs_grade} (missing data could make it higher)"
    return f"CRS {c.crs_grade}" if short else f"CRS grade {c.crs_grade}"


def icans_text(c: AlertContent, *, short: bool = False) -> str:
    if c.icans_grade is None:
        if c.condition == "missed_checkin":
            return "ICANS n/a" if short else "ICANS not assessed"
        return f"ICANS >={c.icans_floor}" if short else f"ICANS not fully assessable: at least grade {c.icans_floor}"
    return f"ICANS {c.icans_grade}" if short else f"ICANS grade {c.icans_grade}"


def _headline(c: AlertContent) -> str:
    if c.condition == "missed_checkin":
        return "missed check-in"
    return f"{crs_text(c, short=True)}, {icans_text(c, short=True)}"


def builtin_subject(c: AlertContent) -> str:
    prefix = "[TEST] " if c.event == "test" else ""
    state = "" if c.event in ("alert.triggered", "test") else f" - {_EVENT_LABELS.get(c.event, c.event)}"
    return f"{prefix}[{c.urgency.upper()}] {_headline(c)} - patient {c.patient_ref} - alert {c.alert_code}{state}"


_SHORT_LABELS = {
    "alert.escalated": "ESCALATED",
    "alert.upgraded": "UPGRADED",
    "alert.acknowledged": "ACKED",
    "alert.resolved": "RESOLVED",
    "test": "TEST, no action",
}


def short_label(c: AlertContent) -> str:
    if c.event == "alert.repeated":
        return f"REPEAT {c.repeat}"
    return _SHORT_LABELS.get(c.event, "")


def builtin_short(c: AlertContent) -> str:
    """The body of the not-secure message (SMS, chat); the acknowledge tail is added by ``render``.
    Most important first, since truncation cuts the end: state, urgency, patient, grades, flags."""
    label = short_label(c)
    parts = [f"{label}:" if label else "", f"{c.urgency.upper()} crs-alert pt {c.patient_ref}:"]
    if c.condition == "missed_checkin":
        parts.append("missed check-in.")
    else:
        grades = f"{crs_text(c, short=True)}, {icans_text(c, short=True)}"
        if c.news2 is not None:
            grades += f", NEWS2 {c.news2}"
        parts.append(grades + ".")
        if c.red_flags:
            parts.append("Flags: " + ",".join(c.red_flags) + ".")
        parts.append("Provisional.")
    if c.unit:
        parts.append(f"Unit {c.unit}.")
    return " ".join(p for p in parts if p)


def ack_tails(c: AlertContent, *, sms: bool, replies: bool = True) -> list[str]:
    """Acknowledge tails in order of preference: with the link, then the code alone. An SMS
    invites "Reply ACK <code>" only when its channel takes replies (``replies``)."""
    code = f"Reply ACK {c.alert_code}" if sms and replies else f"Alert {c.alert_code}."
    tails = []
    if c.ack_url and c.event not in ("alert.acknowledged", "alert.resolved"):
        tails.append(f"{code} {c.ack_url}" if sms else f"{code} Ack: {c.ack_url}")
    if c.event in ("alert.acknowledged", "alert.resolved"):
        tails.append(f"Alert {c.alert_code}.")
    else:
        tails.append(code)
    return tails


def _advice_with_infection(c: AlertContent) -> str:
    advice = c.advice.strip()
    if INFECTION_PHRASE not in advice:
        advice = f"{advice} {INFECTION}".strip()
    if PROVISIONAL not in advice:
        advice = f"{PROVISIONAL} {advice}"
    return advice


def _rich_lines(c: AlertContent) -> list[tuple[str, list[str]]]:
    """(heading, lines) sections shared by the text and HTML bodies."""
    where = f" (unit {c.unit})" if c.unit else ""
    summary = [
        f"{c.urgency.upper()} - {event_label(c)} - patient {c.patient_ref}{where}",
        f"Alert {c.alert_code} (id {c.alert_id}); notification reference {c.reference} "
        "(a repeated delivery carries the same reference)",
        f"Check-in recorded at {c.recorded_at}",
    ]
    if c.condition == "missed_checkin":
        grades = ["Missed check-in: no check-in was received when due. No grades were computed."]
    else:
        grades = [crs_text(c), icans_text(c), f"NEWS2 {c.news2}" if c.news2 is not None else "NEWS2 not computed"]
    sections = [("", summary), (PROVISIONAL, grades)]
    if c.red_flags:
        sections.append(("Red flags", [", ".join(c.red_flags)]))
    if c.reasons:
        sections.append(("Reasons", [f"- {r}" for r in c.reasons]))
    if c.vitals:
        sections.append(("Vitals", [f"{k}: {v:g}" for k, v in sorted(c.vitals.items())]))
    sections.append(("Advice", [_advice_with_infection(c)]))
    if c.event not in ("alert.acknowledged", "alert.resolved"):
        ack = [f"Open {c.ack_url}"] if c.ack_url else []
        ack.append(f"or reply ACK {c.alert_code} to the SMS page.")
        sections.append(("Acknowledge", [" ".join(ack)]))
    return sections


def builtin_rich_text(c: AlertContent) -> str:
    out = []
    for heading, lines in _rich_lines(c):
        if heading:
            out.append(heading)
        out.extend(lines)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def builtin_rich_html(c: AlertContent) -> str:
    out = ["<html><body>"]
    for heading, lines in _rich_lines(c):
        if heading:
            out.append(f"<h3>{_esc(heading)}</h3>")
        if heading == "Reasons":
            out.append("<ul>" + "".join(f"<li>{_esc(line[2:])}</li>" for line in lines) + "</ul>")
        elif heading == "Acknowledge" and c.ack_url:
            href = _esc(c.ack_url)
            out.append(f'<p><a href="{href}">Acknowledge alert {_esc(c.alert_code)}</a></p>')
        else:
            out.extend(f"<p>{_esc(line)}</p>" for line in lines)
    out.append("</body></html>")
    return "\n".join(out)


def build_payload(c: AlertContent, *, secure: bool) -> dict[str, Any]:
    """The stable JSON event for webhooks and PagerDuty ``custom_details``; clinical detail (reasons,
    advice, vitals) only when the channel is secure."""
    alert: dict[str, Any] = {
        "id": c.alert_id,
        "code": c.alert_code,
        "condition": c.condition,
        "urgency": c.urgency,
        "unit": c.unit,
        "escalation_step": c.step,
        "repeat": c.repeat,
        "crs_grade": c.crs_grade,
        "crs_grade_is_minimum": c.crs_grade_is_minimum,
        "icans_grade": c.icans_grade,
        "icans_floor": c.icans_floor,
        "news2": c.news2,
        "red_flags": list(c.red_flags),
        "ack_url": c.ack_url,
        "provisional": True,
    }
    if secure:
        alert["reasons"] = list(c.reasons)
        alert["advice"] = _advice_with_infection(c)
        alert["vitals"] = dict(sorted(c.vitals.items()))
    return {
        "version": PAYLOAD_VERSION,
        "type": c.event,
        "id": c.reference,
        "patient_ref": c.patient_ref,
        "occurred_at": c.recorded_at,
        "alert": alert,
    }


# ---------------------------------------------------------------------------------------------
# Templates.

_SECURE_ONLY = ("reasons", "advice", "vitals", "infection_statement")
_NAME = re.compile(r"^(?P<kind>[a-z][a-z0-9_]*)\.(?P<part>subject|text|html)$")


def template_context(c: AlertContent, *, secure: bool) -> dict[str, Any]:
    """What a template may use. Not-secure channels get no reasons, advice or vitals."""
    ctx: dict[str, Any] = {
        "alert_id": c.alert_id,
        "alert_code": c.alert_code,
        "patient_ref": c.patient_ref,
        "unit": c.unit,
        "condition": c.condition,
        "event": c.event,
        "event_label": event_label(c),
        "urgency": c.urgency,
        "crs_grade": c.crs_grade,
        "crs_grade_is_minimum": c.crs_grade_is_minimum,
        "icans_grade": c.icans_grade,
        "icans_floor": c.icans_floor,
        "news2": c.news2,
        "red_flags": list(c.red_flags),
        "recorded_at": c.recorded_at,
        "ack_url": c.ack_url,
        "step": c.step,
        "repeat": c.repeat,
        "reference": c.reference,
        "crs_text": crs_text(c),
        "icans_text": icans_text(c),
        "provisional": PROVISIONAL,
    }
    if secure:
        ctx.update(
            reasons=list(c.reasons),
            advice=_advice_with_infection(c),
            vitals=dict(c.vitals),
            infection_statement=INFECTION,
        )
    return ctx


class Templates:
    """Custom Jinja2 templates named ``<kind>.<part>`` (part: subject, text, html), e.g.
    ``email.subject``, ``twilio_sms.text``. Files in a directory are ``<kind>.<part>.j2``.

    Sandboxed (no attribute access to internals), ``StrictUndefined`` (a misspelt variable is an
    error, not an empty string), HTML parts autoescaped. Construction never raises: syntax errors and
    bad names are kept and reported by ``validate_templates`` (and by ``render`` as a fallback).
    For not-secure channels a ``text`` template renders the body only; the acknowledge tail is
    appended by ``render`` and survives truncation.
    """

    def __init__(self, sources: Mapping[str, str]) -> None:
        self.sources = dict(sources)
        self.env = SandboxedEnvironment(
            loader=DictLoader(self.sources),
            undefined=StrictUndefined,
            autoescape=lambda name: bool(name) and name.endswith(".html"),
        )
        self.errors: dict[str, str] = {}
        self._compiled: dict[str, Any] = {}
        for name in sorted(self.sources):
            if not _NAME.match(name):
                self.errors[name] = (
                    f"{name}: template names are <kind>.<part> with part one of {', '.join(PARTS)}"
                )
                continue
            try:
                self._compiled[name] = self.env.get_template(name)
            except TemplateSyntaxError as exc:
                self.errors[name] = f"{name}: syntax error at line {exc.lineno}: {exc.message}"

    @classmethod
    def from_directory(cls, path: str) -> "Templates":
        """Read every ``*.j2`` file of ``path`` (through Jinja2's file loader)."""
        loader = FileSystemLoader(path)
        env = SandboxedEnvironment(loader=loader)
        sources = {}
        for name in loader.list_templates():
            if name.endswith(".j2") and "/" not in name:
                sources[name[: -len(".j2")]] = loader.get_source(env, name)[0]
        return cls(sources)

    @property
    def names(self) -> list[str]:
        return sorted(self.sources)

    def kinds(self) -> set[str]:
        return {m["kind"] for n in self.sources if (m := _NAME.match(n))}

    def for_kind(self, kind: str) -> dict[str, Any]:
        """part -> compiled template, for the parts this kind overrides."""
        return {part: self._compiled[f"{kind}.{part}"] for part in PARTS if f"{kind}.{part}" in self._compiled}

    def has_kind(self, kind: str) -> bool:
        return any(n.startswith(f"{kind}.") for n in self.sources)


def _describe(name: str, exc: BaseException, *, secure: bool) -> str:
    """A loggable description: template name and Jinja2 error, never rendered data."""
    if isinstance(exc, TemplateSyntaxError):
        return f"{name}: syntax error at line {exc.lineno}: {exc.message}"
    if isinstance(exc, UndefinedError):
        message = str(exc.message)
        var = re.match(r"^'([^']+)' is undefined", message)
        if var and var.group(1) in _SECURE_ONLY and not secure:
            message += " (only available to secure channels)"
        return f"{name}: undefined variable: {message}"
    if isinstance(exc, SecurityError):
        return f"{name}: unsafe operation blocked by the sandbox"
    if isinstance(exc, TemplateError):
        return f"{name}: template error ({type(exc).__name__})"
    return f"{name}: {type(exc).__name__} while rendering"


def _render_custom(
    templates: Templates, kind: str, c: AlertContent, secure: bool
) -> tuple[dict[str, str], list[str]]:
    """Render the kind's custom parts; returns (part -> output, errors)."""
    out: dict[str, str] = {}
    errors = [templates.errors[n] for n in sorted(templates.errors) if n.startswith(f"{kind}.")]
    ctx = template_context(c, secure=secure)
    for part, template in templates.for_kind(kind).items():
        name = f"{kind}.{part}"
        try:
            text = template.render(ctx)
        except Exception as exc:  # noqa: BLE001 - any template failure falls back, never drops the page
            errors.append(_describe(name, exc, secure=secure))
            continue
        if part == "subject":
            text = " ".join(text.split())  # one header line: no CR/LF injection
        if not text.strip():
            errors.append(f"{name}: rendered empty")
            continue
        if secure and part in ("text", "html") and INFECTION_PHRASE not in text:
            errors.append(f"{name}: must contain the sentence '{INFECTION_PHRASE}' (clinical.md section 6)")
            continue
        if re.search(r"ruled out|(?<!cannot be )excluded", text, re.IGNORECASE):
            errors.append(f"{name}: must not say infection or CRS was 'ruled out' or 'excluded' (clinical.md 6)")
            continue
        out[part] = text
    return out, errors


def render(
    content: AlertContent,
    channel_kind: str,
    secure: bool,
    max_length: int | None,
    templates: Templates | None = None,
    *,
    replies: bool = True,
) -> Rendered:
    """Subject, text, HTML (secure channels) and JSON payload of ``content`` for one channel.

    * secure: rich text and HTML (grades, red flags, reasons, vitals, advice, infection sentence).
    * not secure: short text plus the acknowledge tail; ``max_length`` set means SMS (GSM-7,
      "Reply ACK <code>" when the channel takes replies (``replies``: the caller passes the
      channel's ``accepts_replies``), at most ``max_length`` septets).
    * ``templates`` override parts for ``channel_kind``; any failure -> built-in message and
      ``template_errors``.
    """
    subject = builtin_subject(content)
    sms = max_length is not None
    body = builtin_rich_text(content) if secure else builtin_short(content)
    html = builtin_rich_html(content) if secure else None
    errors: tuple[str, ...] = ()
    if templates is not None and templates.has_kind(channel_kind):
        custom, errs = _render_custom(templates, channel_kind, content, secure)
        if errs:
            errors = tuple(errs)
        else:
            subject = custom.get("subject", subject)
            body = custom.get("text", body)
            if secure:
                html = custom.get("html", html)
    if secure:
        text = body
    else:
        text = fit_text(body, ack_tails(content, sms=sms, replies=replies), max_length, gsm7=sms)
        if sms:
            subject = to_gsm7(subject)
    return Rendered(subject, text, html, build_payload(content, secure=secure), errors)


# ---------------------------------------------------------------------------------------------
# Validation against fixtures.

_BASE_FIXTURE = AlertContent(
    alert_id=1,
    alert_code="K7Q2",
    patient_ref="FIXTURE-001",
    unit="Haematology day unit",
    condition="clinical",
    event="alert.triggered",
    urgency="emergency",
    crs_grade=2,
    crs_grade_is_minimum=True,
    icans_grade=None,
    icans_floor=1,
    news2=9,
    red_flags=("hypotension", "news2_emergency"),
    reasons=(
        "Temperature 38.5 C meets the ASTCT fever criterion (>= 38.0 C): CRS grade 1 or more.",
        "Systolic BP 82 mmHg is below 91 for >= 16 y (NEWS2 red band): hypotension red flag.",
    ),
    advice=(
        "Provisional grades for clinician review. Findings meet ASTCT criteria for CRS grade 2 (provisional - "
        f"assumes findings are not due to another cause). {INFECTION}"
    ),
    vitals={"temperature_c": 38.5, "systolic_bp": 82.0, "heart_rate": 118.0},
    recorded_at="2026-11-19T04:50:00+00:00",
    ack_url="https://ack.example.org/a/K7Q2",
    step=0,
    repeat=0,
    reference="ntf-1",
)

FIXTURES: tuple[AlertContent, ...] = (
    _BASE_FIXTURE,
    replace(_BASE_FIXTURE, event="alert.escalated", step=2, icans_grade=0, crs_grade_is_minimum=False, unit=None),
    replace(_BASE_FIXTURE, event="alert.repeated", repeat=3, ack_url=None, news2=None, vitals={}),
    replace(
        _BASE_FIXTURE,
        condition="missed_checkin",
        event="alert.triggered",
        urgency="urgent",
        crs_grade=None,
        crs_grade_is_minimum=False,
        icans_grade=None,
        icans_floor=0,
        news2=None,
        red_flags=(),
        reasons=("No check-in received within 2 h of the scheduled time.",),
        advice="Contact the patient.",
        vitals={},
    ),
    replace(_BASE_FIXTURE, event="alert.resolved", urgency="routine", red_flags=(), crs_grade=0),
    replace(_BASE_FIXTURE, event="test", patient_ref="TEST", urgency="routine"),
)


def validate_templates(
    templates: Templates,
    *,
    secure_kinds: frozenset[str] | set[str] = DEFAULT_SECURE_KINDS,
    known_kinds: set[str] | None = None,
) -> list[str]:
    """Every error of every template: names, syntax, and a render of each fixture.

    A kind in ``secure_kinds`` is rendered with the full context and must say the infection
    sentence; other kinds get the not-secure context, so a template using reasons/advice/vitals for
    an SMS or chat kind is an error. ``known_kinds``, when given, makes an unknown kind an error.
    """
    errors: list[str] = list(templates.errors.values())
    for kind in sorted(templates.kinds()):
        if known_kinds is not None and kind not in known_kinds:
            errors.append(f"{kind}.*: unknown channel kind {kind!r} (known: {', '.join(sorted(known_kinds))})")
            continue
        secure = kind in secure_kinds
        for fixture in FIXTURES:
            _, errs = _render_custom(templates, kind, fixture, secure)
            errors.extend(e for e in errs if e not in errors)
    return errors


def payload_json(payload: Mapping[str, Any]) -> str:
    """Minified, key-sorted JSON: the exact bytes that are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
