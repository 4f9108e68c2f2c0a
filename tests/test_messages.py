"""worker.messages: wording per channel, no PHI on channels that are not secure, SMS length and
GSM-7, the JSON event, and custom templates (validation at load, fallback at run time)."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import baseline, merge
from worker.checkin import parse_checkin
from worker.evaluation import evaluate
from worker.messages import (
    FIXTURES,
    GSM7_BASIC,
    GSM7_EXTENSION,
    INFECTION_PHRASE,
    MIN_BODY,
    AlertContent,
    Rendered,
    Templates,
    content_from_evaluation,
    fit_text,
    gsm7_length,
    render,
    sms_max_length,
    to_gsm7,
    validate_templates,
)

NOTE_CANARY = "CANARY-NOTE Jane Doe lives at 12 Elm Street, call +44 7700 900123"
REASON_CANARY = "CANARY-REASON-9b1"
ADVICE_CANARY = "CANARY-ADVICE-3c7"
VITAL_CANARY = "canary_vital_x"

NOT_SECURE = [("twilio_sms", 160), ("http_sms", 306), ("slack", None), ("teams", None)]
SECURE = ["email", "webhook", "pagerduty"]


def sick_content(**overrides) -> AlertContent:  # noqa: ANN003
    """A real evaluation of a febrile, hypotensive check-in whose note carries a PHI canary."""
    doc = merge(
        baseline(),
        {
            "patient_id": "P-0042",
            "note": NOTE_CANARY,
            "vitals": {"temperature_c": 39.4, "systolic_bp": 82, "heart_rate_bpm": 124},
            "fluid_responsive_hypotension": False,
        },
    )
    checkin = parse_checkin(doc)
    evaluation = evaluate(checkin)
    content = content_from_evaluation(
        evaluation,
        alert_id=42,
        alert_code="K7Q2",
        event="alert.triggered",
        reference="ntf-123",
        unit="Haematology",
        vitals=checkin.vitals.model_dump(exclude_none=True),
        ack_url="https://ack.example.org/a/Zx81",
    )
    return dataclasses.replace(content, **overrides)


def with_canaries(c: AlertContent) -> AlertContent:
    return dataclasses.replace(
        c, reasons=(*c.reasons, REASON_CANARY), advice=f"{c.advice} {ADVICE_CANARY}", vitals={**c.vitals, VITAL_CANARY: 1.0}
    )


def all_text(r: Rendered) -> str:
    import json

    return "\n".join([r.subject, r.text, r.html or "", json.dumps(r.payload)])


# ------------------------------------------------------------------------------------------- PHI


def test_alert_content_has_no_field_for_names_notes_or_contacts():
    fields = {f.name for f in dataclasses.fields(AlertContent)}
    assert not {f for f in fields if re.search(r"name|note|phone|email|address|mrn|dob", f)}


@pytest.mark.parametrize(("kind", "max_length"), [*NOT_SECURE, *((k, None) for k in SECURE)])
def test_the_note_never_reaches_any_message(kind, max_length):
    """The check-in's note (with a name, address and phone number) is in no channel's output."""
    r = render(sick_content(), kind, kind in SECURE, max_length)
    text = all_text(r)
    for piece in ("CANARY-NOTE", "Jane", "Elm Street", "7700 900123"):
        assert piece not in text


@pytest.mark.parametrize(("kind", "max_length"), NOT_SECURE)
def test_not_secure_channels_carry_no_clinical_free_text(kind, max_length):
    r = render(with_canaries(sick_content()), kind, False, max_length)
    text = all_text(r)
    for canary in (REASON_CANARY, ADVICE_CANARY, VITAL_CANARY, "Temperature 39.4", "82 mmHg"):
        assert canary not in text
    assert r.html is None
    assert set(r.payload["alert"]) >= {"red_flags", "crs_grade"} and "reasons" not in r.payload["alert"]
    # what it does say: patient reference, grades, urgency, flag codes, the code and the link
    assert "P-0042" in r.text and "EMERGENCY" in r.text and "CRS " in r.text and "hypotension" in r.text
    assert "K7Q2" in r.text and "https://ack.example.org/a/Zx81" in r.text


@pytest.mark.parametrize("kind", SECURE)
def test_secure_channels_carry_the_rich_message(kind):
    c = sick_content()
    r = render(c, kind, True, None)
    assert all(reason in r.text for reason in c.reasons)
    assert "temperature_c: 39.4" in r.text
    assert r.payload["alert"]["reasons"] == list(c.reasons)
    assert r.payload["alert"]["vitals"]["temperature_c"] == 39.4


# ------------------------------------------------------------------------------------------- wording


@pytest.mark.parametrize("content", [sick_content(), *FIXTURES], ids=lambda c: f"{c.condition}-{c.event}")
def test_rich_messages_say_provisional_and_infection_not_excluded(content):
    r = render(content, "email", True, None)
    for part in (r.text, r.html, r.payload["alert"]["advice"]):
        assert INFECTION_PHRASE in part
        assert "Provisional grades for clinician review." in part
    for part in (r.subject, r.text, r.html):
        assert "ruled out" not in part.lower()
        assert part.lower().count("excluded") == part.count(INFECTION_PHRASE)


def test_missing_infection_sentence_is_added_to_advice():
    c = dataclasses.replace(FIXTURES[0], advice="Contact the patient.")
    assert INFECTION_PHRASE in render(c, "email", True, None).text


def test_minimum_grades_are_worded_as_at_least():
    c = dataclasses.replace(FIXTURES[0], crs_grade=2, crs_grade_is_minimum=True, icans_grade=None, icans_floor=1)
    r = render(c, "email", True, None)
    assert "CRS at least grade 2 (missing data could make it higher)" in r.text
    assert "ICANS not fully assessable: at least grade 1" in r.text
    assert "CRS >=2, ICANS >=1" in render(c, "twilio_sms", False, 160).text


def test_subject_and_payload_shape():
    c = sick_content()
    subject, text, html, payload = render(c, "webhook", True, None)
    assert subject.startswith("[EMERGENCY] CRS ") and subject.endswith("patient P-0042 - alert K7Q2")
    assert set(payload) == {"version", "type", "id", "patient_ref", "occurred_at", "alert"}
    assert (payload["type"], payload["id"], payload["patient_ref"]) == ("alert.triggered", "ntf-123", "P-0042")
    assert payload["occurred_at"] == "2026-11-20T08:00:00+00:00"
    assert payload["alert"]["red_flags"] == list(c.red_flags) and payload["alert"]["provisional"] is True


@pytest.mark.parametrize(
    ("event", "step", "repeat", "sms_start"),
    [
        ("alert.triggered", 0, 0, "EMERGENCY crs-alert pt P-0042:"),
        ("alert.escalated", 2, 0, "ESCALATED: EMERGENCY"),
        ("alert.repeated", 0, 3, "REPEAT 3: EMERGENCY"),
        ("alert.upgraded", 0, 0, "UPGRADED: EMERGENCY"),
        ("alert.acknowledged", 0, 0, "ACKED: EMERGENCY"),
        ("alert.resolved", 0, 0, "RESOLVED: EMERGENCY"),
        ("test", 0, 0, "TEST, no action: EMERGENCY"),
    ],
)
def test_event_is_visible_in_sms(event, step, repeat, sms_start):
    r = render(sick_content(event=event, step=step, repeat=repeat), "twilio_sms", False, 306)
    assert r.text.startswith(sms_start)
    if event in ("alert.acknowledged", "alert.resolved"):
        assert "Reply ACK" not in r.text and r.text.endswith("Alert K7Q2.")
    else:
        assert r.text.endswith("Reply ACK K7Q2 https://ack.example.org/a/Zx81")


def test_an_sms_channel_without_a_reply_path_never_invites_a_reply():
    """A generic gateway's replies reach nobody: its SMS gives the code and the link instead."""
    c = sick_content()
    text = render(c, "http_sms", False, 306, replies=False).text
    assert "Reply" not in text and "reply" not in text
    assert text.endswith("Alert K7Q2. https://ack.example.org/a/Zx81")
    short = render(c, "http_sms", False, 100, replies=False).text
    assert gsm7_length(short) <= 100 and "Alert K7Q2." in short and "Reply" not in short


def test_only_the_twilio_kind_takes_replies():
    from worker.channels.registry import load_channel_kinds

    assert {kind for kind, cls in load_channel_kinds().items() if cls.accepts_replies} == {"twilio_sms"}


# ------------------------------------------------------------------------------------------- SMS


def test_gsm7_replacements():
    # Each of these alone would switch the SMS to UCS-2 (70 characters a segment).
    assert to_gsm7("SpO2 \u2264 91\u00a0% \u2013 it\u2019s \u201cbad\u201d\u2026 \u2265 38\u00b0C") == (
        "SpO2 <= 91 % - it's \"bad\"... >= 38 deg C"
    )
    assert to_gsm7("Zoë Ångström ćž 漢") == "Zoe Ångström cz ?"
    assert gsm7_length("a{b}€") == 8


def test_sms_is_cut_before_the_ack_tail_deterministically():
    c = sick_content(red_flags=tuple(f"flag_{i}" for i in range(40)))
    first = render(c, "twilio_sms", False, 160).text
    assert first == render(c, "twilio_sms", False, 160).text
    assert gsm7_length(first) <= 160
    assert first.endswith("... Reply ACK K7Q2 https://ack.example.org/a/Zx81")


def test_link_is_dropped_before_the_code_when_nothing_else_fits():
    c = sick_content(ack_url="https://ack.example.org/" + "a" * 40)
    text = render(c, "twilio_sms", False, 100).text
    assert gsm7_length(text) <= 100 and text.endswith("Reply ACK K7Q2")
    assert text.startswith("EMERGENCY crs-alert pt P-0042: CRS")  # who and how urgent survive


def test_sms_max_length():
    assert [sms_max_length(n) for n in (1, 2, 3)] == [160, 306, 459]


GSM_SAFE = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    patient_ref=st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True),
    unit=st.none() | GSM_SAFE,
    flags=st.lists(st.sampled_from(["hypotension", "hypoxemia", "high_fever", "news2_emergency", "seizure"]), max_size=5),
    code=st.from_regex(r"[A-Z0-9]{4,6}", fullmatch=True),
    url=st.none() | st.from_regex(r"https://ack\.example\.org/a/[A-Za-z0-9]{4,80}", fullmatch=True),
    max_length=st.integers(min_value=60, max_value=918),
    event=st.sampled_from(["alert.triggered", "alert.escalated", "alert.repeated", "alert.upgraded", "test"]),
)
def test_sms_always_fits_is_gsm7_and_keeps_the_code(patient_ref, unit, flags, code, url, max_length, event):
    c = dataclasses.replace(
        with_canaries(FIXTURES[0]), patient_ref=patient_ref, unit=unit, red_flags=tuple(flags), alert_code=code,
        ack_url=url, event=event,
    )  # fmt: skip
    text = render(c, "twilio_sms", False, max_length).text
    assert gsm7_length(text) <= max_length
    assert all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)
    assert f"Reply ACK {code}" in text
    if url and len(f"Reply ACK {code} {url}") + 1 + MIN_BODY <= max_length:
        assert text.endswith(f"Reply ACK {code} {url}")
    assert REASON_CANARY not in text and ADVICE_CANARY not in text


def test_fit_text_without_limit_and_without_gsm():
    assert fit_text("body  text", ["tail"], None, gsm7=False) == "body text tail"
    assert fit_text("x" * 50, ["tail"], 20, gsm7=False) == "x" * 12 + "... tail"


# ------------------------------------------------------------------------------------------- templates


GOOD = {
    "email.subject": "{{ urgency|upper }} {{ patient_ref }} {{ alert_code }}",
    "email.text": "{% for r in reasons %}* {{ r }}\n{% endfor %}{{ advice }}",
    "email.html": "<p>{{ patient_ref }}</p><p>{{ advice }}</p>",
    "twilio_sms.text": "{{ urgency|upper }} pt {{ patient_ref }} {{ crs_text }} flags {{ red_flags|join(',') }}",
}


def test_good_templates_validate_and_are_used():
    templates = Templates(GOOD)
    assert validate_templates(templates) == []
    c = sick_content()
    r = render(c, "email", True, None, templates)
    assert not r.fallback and r.subject == "EMERGENCY P-0042 K7Q2"
    assert r.text.startswith(f"* {c.reasons[0]}") and INFECTION_PHRASE in r.text
    sms = render(c, "twilio_sms", False, 160, templates)
    assert sms.text.startswith("EMERGENCY pt P-0042 CRS") and sms.text.endswith("Reply ACK K7Q2 https://ack.example.org/a/Zx81")
    assert gsm7_length(sms.text) <= 160


def test_html_templates_are_autoescaped():
    c = sick_content(unit="<script>x</script>")
    r = render(c, "email", True, None, Templates({"email.html": "<b>{{ unit }}</b> {{ advice }}"}))
    assert "<b>&lt;script&gt;x&lt;/script&gt;</b>" in r.html


def test_validation_reports_every_error_with_the_template_name():
    templates = Templates(
        {
            "email.subject": "{{ urgencyy }}",  # undefined
            "email.text": "{% if reasons %}{{ advice }}",  # syntax error: no endif
            "twilio_sms.text": "{{ patient_ref }} {{ reasons|join(' ') }}",  # not available to SMS
            "webhook.text": "{{ patient_ref }}",  # secure rich text without the infection sentence
            "slack.body": "x",  # bad part name
            "pigeon.text": "{{ patient_ref }}",  # unknown kind
            "teams.text": "{{ ''.__class__.__mro__ }}",  # sandbox
        }
    )
    errors = validate_templates(templates, known_kinds={"email", "twilio_sms", "webhook", "slack", "teams"})
    assert "email.subject: undefined variable: 'urgencyy' is undefined" in errors
    assert any(e.startswith("email.text: syntax error at line 1:") for e in errors)
    assert (
        "twilio_sms.text: undefined variable: 'reasons' is undefined (only available to secure channels)" in errors
    )
    assert f"webhook.text: must contain the sentence '{INFECTION_PHRASE}' (clinical.md section 6)" in errors
    assert any(e.startswith("slack.body: template names are <kind>.<part>") for e in errors)
    assert any(e.startswith("pigeon.*: unknown channel kind 'pigeon'") for e in errors)
    assert "teams.text: unsafe operation blocked by the sandbox" in errors
    assert len(errors) == len(set(errors)) == 7


def test_ruled_out_wording_is_refused():
    templates = Templates({"slack.text": "{{ patient_ref }}: infection ruled out"})
    assert validate_templates(templates) == ["slack.text: must not say infection or CRS was 'ruled out' or 'excluded' (clinical.md 6)"]


def test_runtime_failure_falls_back_and_flags():
    """A template that breaks on some data: the built-in message is sent and the failure reported."""
    templates = Templates({"twilio_sms.text": "{{ patient_ref }} NEWS2 {{ news2 + 1 }}"})
    assert validate_templates(templates) != []  # a fixture has news2=None: caught at load time too
    c = sick_content(news2=None)
    r = render(c, "twilio_sms", False, 160, templates)
    assert r.fallback
    assert r.template_errors == ("twilio_sms.text: TypeError while rendering",)
    assert r.text == render(c, "twilio_sms", False, 160).text  # the built-in message, not nothing
    ok = render(sick_content(), "twilio_sms", False, 160, templates)
    assert not ok.fallback and ok.text.startswith("P-0042 NEWS2 ")


def test_syntax_error_at_runtime_falls_back():
    r = render(sick_content(), "email", True, None, Templates({"email.subject": "{{ broken"}))
    assert r.fallback and r.template_errors[0].startswith("email.subject: syntax error at line 1")
    assert r.subject == render(sick_content(), "email", True, None).subject


def test_templates_for_other_kinds_are_ignored():
    r = render(sick_content(), "slack", False, None, Templates({"email.subject": "{{ nope }}"}))
    assert not r.fallback


def test_subject_template_cannot_inject_headers():
    r = render(sick_content(), "email", True, None, Templates({"email.subject": "a\r\nBcc: x@y.example\n b"}))
    assert r.subject == "a Bcc: x@y.example b"


def test_templates_from_directory(tmp_path):
    (tmp_path / "email.subject.j2").write_text("{{ alert_code }} {{ urgency }}\n")
    (tmp_path / "notes.txt").write_text("ignored")
    templates = Templates.from_directory(str(tmp_path))
    assert templates.names == ["email.subject"]
    assert render(sick_content(), "email", True, None, templates).subject == "K7Q2 emergency"
