"""Admin rules: loading with line numbers, matchers, routing tree, escalation timeline, policy decisions."""

import datetime as dt
import itertools
from pathlib import Path

import pytest

from tests.factories import ev
from worker.rules import escalation, policy, routing
from worker.rules.loader import RulesError, load_rules_text
from worker.rules.matchers import Matcher, MatcherError

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "rules.yaml"
T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.timezone.utc)

MINIMAL = """\
version: 1
receivers:
  nurse: {contacts: [{channel: sms, to: "+447700900001"}]}
  desk: {contacts: [{channel: sms, to: "+447700900002"}]}
escalation_policies:
  p:
    steps:
      - {notify: [nurse], ack_within: 5m}
    failsafe: desk
routes:
  policy: p
"""


def load(text=MINIMAL):
    return load_rules_text(text, "rules.yaml").rules


def errors_of(text):
    with pytest.raises(RulesError) as exc:
        load_rules_text(text, "rules.yaml")
    return [str(e) for e in exc.value.errors]


def test_the_shipped_example_passes_its_own_check():
    loaded = load_rules_text(EXAMPLE.read_text(), str(EXAMPLE))
    assert loaded.rules.routes.policy == "urgent"
    assert len(loaded.sha256) == 64


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("failsafe: desk", "failsafe: nobody"), "rules.yaml:9:5: escalation_policies.p.failsafe: undefined receiver 'nobody'"),
        (("notify: [nurse]", "notify: [nurse, ghost]"), "rules.yaml:8:26: escalation_policies.p.steps.0.notify.1: undefined receiver 'ghost'"),
        (("  policy: p\n", "  policy: q\n"), "rules.yaml:11:3: routes.policy: undefined policy 'q'"),
        (("  policy: p\n", "  policy: p\n  match: ['crs_grade >= 1']\n"), "rules.yaml:12:3: routes.match: the root route is the catch-all"),
        (("  policy: p\n", "  page: false\n"), "rules.yaml:10:1: routes: the root route (catch-all) needs a policy"),
        (("ack_within: 5m", "ack_within: 30s"), "rules.yaml:8:9: escalation_policies.p.steps.0: ack_within must be at least 1m"),
        (("ack_within: 5m", "ack_within: 5m, repeat_every: 2m, repeats: 3"), "do not fit before ack_within"),
        (("ack_within: 5m", "ack_within: 5m, repeats: 1"), "repeats needs repeat_every"),
        (("ack_within: 5m", "ack_within: soon"), "'soon' is not a duration"),
        (("version: 1", "version: 2"), "rules.yaml:1:1: version: Input should be 1"),
        (("  desk: {contacts", "  desk: {colour: red, contacts"), "rules.yaml:4:10: receivers.desk.colour: unknown key"),
        (("  nurse: {contacts: [{channel: sms, to: \"+447700900001\"}]}\n", "  nurse: {contacts: []}\n"), "receivers.nurse.contacts: List should have at least 1 item"),
    ],
)
def test_every_error_names_file_line_and_rule(change, expected):
    old, new = change
    assert old in MINIMAL
    errs = errors_of(MINIMAL.replace(old, new, 1))
    assert any(expected in e for e in errs), errs


def test_all_errors_are_reported_together():
    text = MINIMAL.replace("failsafe: desk", "failsafe: nobody").replace("ack_within: 5m", "ack_within: 5m, colour: red")
    errs = errors_of(text.replace("  policy: p\n", "  policy: q\n"))
    assert len(errs) == 3


def test_duplicate_key_is_an_error_and_values_are_not_echoed():
    text = MINIMAL.replace('  desk: {contacts: [{channel: sms, to: "+447700900002"}]}\n',
                           '  desk: {contacts: [{channel: sms, to: "+447700900002"}]}\n  desk: {contacts: [{channel: sms, to: "+447700999999"}]}\n')  # fmt: skip
    errs = errors_of(text)
    assert errs == ["rules.yaml:5:3: duplicate key 'desk' (the mapping starting at line 3 already has it)"]
    assert "+44770090" not in errs[0]


def test_yaml_syntax_error_and_wrong_document_type():
    assert errors_of("version: [1\n")[0].startswith("rules.yaml:2:")
    assert errors_of("- just\n- a list\n") == ["rules.yaml:1:1: the rules file must be a mapping (version, receivers, ...)"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("crs_grade >= 5", "crs_grade is between 0 and 4; 5 can never match"),
        ("crs_grade >= high", "crs_grade needs an integer"),
        ("crs_grade has_any [1]", "operator 'has_any' does not apply to crs_grade"),
        ("urgency == critical", "'critical' is not a valid urgency"),
        ("red_flags has_any [seizure, fits]", "'fits' is not a valid red_flags"),
        ("red_flag has_any [seizure]", "unknown field 'red_flag'"),
        ("risk_tier in high", "'in' needs a list"),
        ("risk_tier == [high]", "use 'in' for a list"),
        ("in_risk_window == yes", "in_risk_window needs true or false"),
        ("crs_grade>=3", "is not '<field> <op> <value>'"),
        ("urgency in []", "needs a non-empty list"),
    ],
)
def test_matcher_errors(text, message):
    with pytest.raises(MatcherError) as exc:
        Matcher.parse(text)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("text", "subject", "result"),
    [
        ("crs_grade >= 3", {"crs_grade": 3}, True),
        ("crs_grade >= 3", {"crs_grade": 2}, False),
        ("crs_grade < 1", {"crs_grade": 0}, True),
        ("urgency >= urgent", {"urgency": "emergency"}, True),
        ("urgency >= urgent", {"urgency": "routine"}, False),
        ("urgency <= routine", {"urgency": "none"}, True),
        ("red_flags has_any [seizure, hypotension]", {"red_flags": ("hypotension",)}, True),
        ("red_flags has_all [seizure, hypotension]", {"red_flags": ("hypotension",)}, False),
        ("red_flags has_none [seizure]", {"red_flags": ()}, True),
        ("risk_tier in [high, medium]", {"risk_tier": "medium"}, True),
        ("risk_tier not in [high]", {"risk_tier": "low"}, True),
        ("in_risk_window == true", {"in_risk_window": True}, True),
        ("in_risk_window == true", {"in_risk_window": None}, False),  # null never matches ==
        ("news2 >= 5", {"news2": None}, False),
        ("unit != 5B", {"unit": None}, True),  # null matches != and not in
        ("labels.trial == ZUMA-7", {"labels.trial": "ZUMA-7"}, True),
        ("labels.trial == ZUMA-7", {}, False),
        ("age_years < 16", {"age_years": 15.5}, True),
    ],
)
def test_matcher_semantics(text, subject, result):
    assert Matcher.parse(text)(subject) is result


# ---- routing --------------------------------------------------------------------------------

TREE = """\
version: 1
receivers:
  a: {contacts: [{channel: sms, to: "1"}]}
  b: {contacts: [{channel: sms, to: "2"}]}
  ehr: {contacts: [{channel: ehr}]}
  desk: {contacts: [{channel: sms, to: "3"}]}
escalation_policies:
  root: {steps: [{notify: [a], ack_within: 5m}], failsafe: desk}
  emergency: {steps: [{notify: [b], ack_within: 5m}], failsafe: desk}
  neuro: {steps: [{notify: [a, b], ack_within: 5m}], failsafe: desk}
routes:
  policy: root
  notify: [ehr]
  routes:
    - name: emergency
      match: ["urgency == emergency"]
      policy: emergency
      continue: true
      routes:
        - name: paeds
          match: ["age_band != adult"]
          notify: []
    - name: neuro
      match_any: ["icans_grade >= 2", "red_flags has_any [seizure]"]
      policy: neuro
    - name: quiet
      match: ["urgency == none"]
      page: false
"""


@pytest.mark.parametrize(
    ("subject", "path", "policy", "page", "notify"),
    [
        ({"urgency": "urgent", "icans_grade": 0, "red_flags": ()}, (), "root", True, ("ehr",)),  # catch-all
        ({"urgency": "urgent", "icans_grade": 2, "red_flags": ()}, ("neuro",), "neuro", True, ("ehr",)),  # inherits notify
        ({"urgency": "none", "icans_grade": 0, "red_flags": ()}, ("quiet",), "root", False, ("ehr",)),  # inherits policy
        # continue: the emergency route matches and its siblings are tried too; first match decides
        ({"urgency": "emergency", "icans_grade": 3, "red_flags": (), "age_band": "adult"}, ("emergency",), "emergency", True, ("ehr",)),
        # a child overrides notify with an empty list; the sibling route's notify is still united
        ({"urgency": "emergency", "icans_grade": 3, "red_flags": (), "age_band": "school"}, ("emergency", "paeds"), "emergency", True, ("ehr",)),
    ],
)
def test_routing_tree(subject, path, policy, page, notify):
    rules = load(TREE)
    d = routing.decide(rules.routes, subject)
    assert (d.routes[0].path, d.policy, d.page, d.notify) == (path, policy, page, notify)


def test_continue_collects_every_matched_route():
    rules = load(TREE)
    matched = routing.match(rules.routes, {"urgency": "emergency", "icans_grade": 3, "red_flags": (), "age_band": "adult"})
    assert [m.path for m in matched] == [("emergency",), ("neuro",)]


def test_an_emergency_always_pages_even_on_a_page_false_route():
    rules = load(TREE.replace('match: ["urgency == none"]', 'match: ["crs_grade >= 0"]').replace("continue: true", "continue: false")
                 .replace('match: ["urgency == emergency"]', 'match: ["urgency == routine"]'))  # fmt: skip
    d = routing.decide(rules.routes, {"urgency": "emergency", "crs_grade": 4, "icans_grade": 0, "red_flags": ()})
    assert d.page is True and d.guard and "emergency always pages" in d.guard


def test_subject_of_an_evaluation_routes_in_the_example():
    rules = load_rules_text(EXAMPLE.read_text()).rules
    cases = [
        (ev(vitals={"temperature_c": 38.5}, oxygen={"device": "bipap"}), "emergency", "emergency"),
        (ev(neuro={"ice_score": 8}), "neuro", "urgent"),
        (ev(vitals={"temperature_c": 38.2}), "urgent", "urgent"),
        (ev(symptoms=["fatigue"]), "routine", "routine-review"),
        (ev(), "nothing-to-report", "urgent"),
    ]
    for e, route_name, policy_name in cases:
        d = routing.decide(rules.routes, policy.subject(e, unit="5B"))
        assert (d.route_name, d.policy) == (route_name, policy_name)
    assert routing.decide(rules.routes, policy.subject(ev(), unit="5B")).page is False


# ---- escalation timeline --------------------------------------------------------------------


def test_timeline_steps_repeats_and_failsafe():
    rules = load_rules_text(EXAMPLE.read_text()).rules
    pol = rules.escalation_policies["emergency"]
    pages = escalation.first_pages(pol, T0, failsafe_repeats=2)
    got = [(int((p.at - T0).total_seconds() // 60), p.step, p.repeat, p.kind, p.receivers) for p in pages]
    assert got == [
        (0, 0, 0, "page", ("oncall-fellow", "charge-nurse")),
        (2, 0, 1, "repeat", ("oncall-fellow", "charge-nurse")),
        (4, 0, 2, "repeat", ("oncall-fellow", "charge-nurse")),
        (5, 1, 0, "page", ("attending", "charge-nurse")),
        (7, 1, 1, "repeat", ("attending", "charge-nurse")),
        (10, 2, 0, "failsafe", ("unit-desk",)),
        (15, 2, 1, "failsafe", ("unit-desk",)),
        (20, 2, 2, "failsafe", ("unit-desk",)),
    ]
    assert [p.seq for p in pages] == list(range(8))


def test_page_at_is_deterministic():
    pol = load_rules_text(EXAMPLE.read_text()).rules.escalation_policies["urgent"]
    for seq in range(10):
        assert escalation.page_at(pol, T0, seq) == escalation.page_at(pol, T0, seq)
        assert escalation.page_at(pol, T0, seq).seq == seq
    assert escalation.page_at(pol, T0, 50).kind == "failsafe"


# ---- decisions: upgrade, inhibition, silences, quiet hours ----------------------------------


def test_upgrade_only_when_worse_than_the_worst_seen():
    first = policy.subject(ev(vitals={"temperature_c": 38.5}))
    worst = policy.merge_worst(None, first)
    assert policy.assess(worst, first) == ("annotate", [])
    assert policy.assess(worst, policy.subject(ev()))[0] == "annotate"  # improving: no page
    kind, why = policy.assess(worst, policy.subject(ev(vitals={"temperature_c": 38.5}, oxygen={"device": "facemask"})))
    assert kind == "upgrade" and why == ["CRS grade 1 -> 3"]
    kind, why = policy.assess(worst, policy.subject(ev(vitals={"temperature_c": 38.5}, symptoms=["chest_pain"])))
    assert kind == "upgrade" and why == ["new emergency red flag: chest_pain"]
    # a new URGENT-tier flag alone is an annotation
    assert policy.assess(worst, policy.subject(ev(vitals={"temperature_c": 38.5}, symptoms=["dizziness"])))[0] == "annotate"
    worse = policy.merge_worst(worst, policy.subject(ev(neuro={"ice_score": 6})))
    assert (worse.crs_grade, worse.icans_level) == (1, 2)


def test_inhibition_by_an_open_emergency_of_the_same_patient():
    rules = load_rules_text(EXAMPLE.read_text()).rules
    emergency = policy.subject(ev(symptoms=["chest_pain"]))
    urgent = policy.subject(ev(vitals={"temperature_c": 38.2}))
    assert policy.inhibited_by(urgent, [emergency], rules.inhibit) is rules.inhibit[0]
    other_patient = dict(emergency, patient_id="P-other")
    assert policy.inhibited_by(urgent, [other_patient], rules.inhibit) is None
    assert policy.inhibited_by(emergency, [emergency], rules.inhibit) is None  # an emergency is never inhibited


SILENCE = """\
silences:
  - id: admitted-p-test
    match: ["patient_id == P-test"]
    starts: 2026-11-25T00:00:00Z
    ends: 2026-11-26T00:00:00Z
    max_urgency: urgent
    reason: admitted to ward 5B, monitored on the ward
    author: dr.lee
"""


def test_silences_mute_up_to_urgent_never_an_emergency():
    rules = load(MINIMAL + SILENCE)
    urgent = policy.subject(ev(vitals={"temperature_c": 38.2}))
    emergency = policy.subject(ev(symptoms=["chest_pain"]))
    assert policy.silenced_by(urgent, T0, rules.silences).id == "admitted-p-test"
    assert policy.silenced_by(urgent, T0 + dt.timedelta(days=1), rules.silences) is None  # ended (exclusive)
    assert policy.silenced_by(urgent, T0 - dt.timedelta(hours=9), rules.silences) is None  # not started
    assert policy.silenced_by(emergency, T0, rules.silences) is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("max_urgency: urgent", "max_urgency: emergency", "silences.0.max_urgency: Input should be 'routine' or 'urgent'"),
        ("ends: 2026-11-26T00:00:00Z", "ends: 2026-11-24T00:00:00Z", "ends must be after starts"),
        ("starts: 2026-11-25T00:00:00Z", "starts: 2026-11-25T00:00:00", "needs a UTC offset"),
        ("    author: dr.lee\n", "", "silences.0.author: required key is missing"),
    ],
)
def test_silence_validation(old, new, message):
    assert any(message in e for e in errors_of(MINIMAL + SILENCE.replace(old, new)))


@pytest.mark.parametrize(
    ("local_time", "urgency", "until"),
    [
        ("2026-11-25T23:30:00+00:00", "routine", "2026-11-26T07:00:00+00:00"),
        ("2026-11-26T06:59:00+00:00", "routine", "2026-11-26T07:00:00+00:00"),
        ("2026-11-26T07:00:00+00:00", "routine", None),
        ("2026-11-25T21:59:00+00:00", "routine", None),
        ("2026-11-25T23:30:00+00:00", "urgent", None),
        ("2026-11-25T23:30:00+00:00", "emergency", None),
        ("2026-07-01T21:30:00+00:00", "routine", "2026-07-02T06:00:00+00:00"),  # BST: 22:30 London, ends 07:00 BST
    ],
)
def test_quiet_hours_defer_routine_only(local_time, urgency, until):
    rules = load_rules_text(EXAMPLE.read_text()).rules
    subj = {"urgency": urgency}
    got = policy.quiet_until(subj, dt.datetime.fromisoformat(local_time), rules.timezone, rules.quiet_hours)
    assert got == (dt.datetime.fromisoformat(until) if until else None)


def test_timeline_can_restart_at_a_later_step_and_past_the_last_is_failsafe():
    pol = load_rules_text(EXAMPLE.read_text()).rules.escalation_policies["emergency"]
    pages = list(itertools.islice(escalation.timeline(pol, T0, first_step=1), 3))
    assert [(p.step, p.repeat, p.kind, int((p.at - T0).total_seconds() // 60)) for p in pages] == [
        (1, 0, "page", 0), (1, 1, "repeat", 2), (2, 0, "failsafe", 5)]
    assert escalation.page_at(pol, T0, 0, first_step=5).kind == "failsafe"


def test_a_frozen_policy_snapshot_loads_back_identical():
    from worker.rules.models import Policy, format_duration, parse_duration

    rules = load_rules_text(EXAMPLE.read_text()).rules
    for pol in rules.escalation_policies.values():
        assert Policy.model_validate(pol.model_dump(mode="json")) == pol
    for text in ("90s", "5m", "1h30m", "2d", "1d2h3m4s"):
        assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)
    assert format_duration(parse_duration("90s")) == "1m30s"
