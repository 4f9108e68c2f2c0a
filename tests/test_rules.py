"""Admin rules: loading with line numbers, matchers, routing tree, escalation timeline, policy decisions."""

import datetime as dt
import itertools
import time
from pathlib import Path

import pytest

from tests.factories import ev
from worker.rules import escalation, policy, routing
from worker.rules.loader import RulesError, load_rules_text
from worker.rules.matchers import Matcher, MatcherError
from worker.rules.models import SNAPSHOT, Policy

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
        (("ack_within: 5m", "ack_within: 5m, repeat_every: 2m, repeats: 3"), "3 repeats every 2m do not fit before ack_within 5m;"),
        (("ack_within: 5m", "ack_within: 5m, repeat_every: 1m, repeats: true"), "steps.0.repeats: Input should be a valid integer"),
        (("ack_within: 5m", "ack_within: 5m, repeat_every: 1m, repeats: '1'"), "steps.0.repeats: Input should be a valid integer"),
        (("  policy: p\n", "  policy: q\n"), "undefined policy 'q'; defined: p"),
        (("escalation_policies:\n  p:\n    steps:\n      - {notify: [nurse], ack_within: 5m}\n    failsafe: desk\n", "escalation_policies: {}\n"),
         "rules.yaml:7:3: routes.policy: undefined policy 'p'; none defined"),
        (("ack_within: 5m", "ack_within: 5m, repeats: 1"), "repeats needs repeat_every"),
        (("ack_within: 5m", "ack_within: soon"), "steps.0.ack_within: not a duration like '90s', '5m', '1h30m' or '2d'"),
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


# ---- audit fixes: time zone, durations, route tree, warnings, silences, quiet hours ----------


@pytest.mark.parametrize("zone", ["Europe/Londn", "Europe", "", "../../etc/passwd", "Europe/London "])
def test_an_unknown_time_zone_is_a_load_error_at_its_line(zone):
    errs = errors_of(MINIMAL.replace("version: 1\n", f"version: 1\ntimezone: {zone!r}\n"))
    assert errs == ["rules.yaml:2:1: timezone: unknown time zone; use an IANA name like Europe/London"]


@pytest.mark.parametrize("zone", ["Europe/London", "America/New_York", "UTC"])
def test_a_known_time_zone_loads_and_quiet_hours_can_use_it(zone):
    rules = load(MINIMAL.replace("version: 1\n", f"version: 1\ntimezone: {zone}\n") + 'quiet_hours: [{start: "22:00", end: "07:00"}]\n')
    policy.quiet_until({"urgency": "routine"}, T0, rules.timezone, rules.quiet_hours)  # does not raise


@pytest.fixture
def no_system_zone_data():
    """As in a slim container image without the OS's zone files: only the tzdata package is left."""
    import zoneinfo

    zoneinfo.reset_tzpath(to=[])
    zoneinfo.ZoneInfo.clear_cache()
    yield
    zoneinfo.reset_tzpath()
    zoneinfo.ZoneInfo.clear_cache()


@pytest.mark.parametrize("zone", ["Europe/London", "America/Chicago", "US/Central", "GB"])
def test_time_zones_load_without_the_os_zone_files(no_system_zone_data, zone):
    rules = load(MINIMAL.replace("version: 1\n", f"version: 1\ntimezone: {zone}\n") + 'quiet_hours: [{start: "22:00", end: "07:00"}]\n')
    policy.quiet_until({"urgency": "routine"}, T0, rules.timezone, rules.quiet_hours)  # does not raise


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("99999999999d", "a duration is at most 7d"),  # was an OverflowError traceback
        ("9" * 5000 + "s", "a duration is at most 7d"),  # beyond int()'s digit limit
        ("7d1s", "a duration is at most 7d"),
        ("168h1s", "a duration is at most 7d"),
        ("0s", "a duration must be more than zero"),
        ("0d0h", "a duration must be more than zero"),
        ("+447700900001", "not a duration like"),
        ("", "not a duration like"),
        ("5 m", "not a duration like"),
        ("５m", "not a duration like"),  # full-width digit
        ("5m\n", None),
        ("7d", None),
        ("168h", None),
        ("1s", None),
    ],
)
def test_durations_are_capped_at_7d_and_never_echoed(value, message):
    from worker.rules.models import parse_duration

    if message is None:
        assert parse_duration(value) <= dt.timedelta(days=7)
        return
    with pytest.raises(ValueError, match=message) as exc:
        parse_duration(value)
    assert value.strip()[:5] not in str(exc.value) or not value.strip()


@pytest.mark.parametrize("value", [None, 5, 5.0, [], {}, b"5m"])
def test_parse_duration_raises_only_value_error(value):
    from worker.rules.models import parse_duration

    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(value)


@pytest.mark.parametrize("key", ["ack_within", "repeat_every", "ack_timeout", "failsafe_repeat_every"])
def test_every_policy_duration_is_capped(key):
    step = "{notify: [nurse], ack_within: 8d}" if key == "ack_within" else "{notify: [nurse], ack_within: 5m}"
    text = MINIMAL.replace("{notify: [nurse], ack_within: 5m}", step)
    if key == "repeat_every":
        text = text.replace("ack_within: 5m}", "ack_within: 5m, repeat_every: 8d}")
    elif key != "ack_within":
        text = text.replace("    failsafe: desk\n", f"    failsafe: desk\n    {key}: 8d\n")
    errs = errors_of(text)
    assert len(errs) == 1 and errs[0].endswith(f"{key}: a duration is at most 7d") and "8d" not in errs[0].split(": ", 1)[1]


def test_missed_checkin_grace_is_capped_and_times_of_day_are_not_echoed():
    errs = errors_of(MINIMAL + 'missed_checkins: {grace: 99999999999d}\nquiet_hours: [{start: "25:00", end: "07:00"}]\n')
    assert any(e.endswith("missed_checkins.grace: a duration is at most 7d") for e in errs)
    assert any("quiet_hours.0.start: not a time of day HH:MM (24 h)" in e for e in errs)
    assert not any("99999" in e or "25:00" in e for e in errs)


def test_quiet_hours_with_the_same_start_and_end_are_an_error():
    errs = errors_of(MINIMAL + 'quiet_hours: [{start: "07:00", end: "07:00"}]\n')
    assert errs == ["rules.yaml:12:15: quiet_hours.0: start and end are the same time, so the window would never apply; "
                    "e.g. 22:00 to 07:00"]  # fmt: skip
    load(MINIMAL + 'quiet_hours: [{start: "07:00", end: "07:01"}]\n')


ROUTES = """\
routes:
  policy: p
  routes:
    - name: emergency
      match: ["urgency == emergency"]
"""


def tree(children: str) -> str:
    return MINIMAL.replace("routes:\n  policy: p\n", ROUTES + children)


def test_a_catch_all_child_before_its_siblings_is_an_error():
    errs = errors_of(tree("    - name: all-quiet\n      page: false\n    - name: x\n      match: ['crs_grade >= 1']\n"
                          "    - match: ['crs_grade >= 2']\n"))  # fmt: skip
    assert errs == ["rules.yaml:15:7: routes.routes.1: route 'all-quiet' matches everything, so the routes after it "
                    "('x', routes.routes.3) can never match: give it matchers, set continue: true, or move it last"]  # fmt: skip


@pytest.mark.parametrize(
    "children",
    [
        "    - name: all-quiet\n      page: false\n",  # last: fine
        "    - name: all\n      continue: true\n    - name: x\n      match: ['crs_grade >= 1']\n",  # continue: fine
        "    - name: all\n      match: []\n      match_any: ['crs_grade >= 0']\n    - name: x\n      match: ['crs_grade >= 1']\n",
    ],
)
def test_a_catch_all_child_that_is_last_or_continues_is_fine(children):
    load(tree(children))


def test_a_nested_catch_all_is_found_and_unnamed_routes_are_named_by_path():
    errs = errors_of(tree("      routes:\n        - page: false\n        - match: ['crs_grade >= 1']\n"))
    assert len(errs) == 1 and errs[0].startswith("rules.yaml:16:11: routes.routes.0.routes.0: route routes.routes.0.routes.0 "
                                                 "matches everything, so the routes after it (routes.routes.0.routes.1)")  # fmt: skip


def test_duplicate_route_names_anywhere_in_the_tree():
    errs = errors_of(tree("      routes:\n        - name: emergency\n          match: ['crs_grade >= 3']\n"))
    assert errs == ["rules.yaml:16:11: routes.routes.0.routes.0.name: route name 'emergency' is already used by the "
                    "route at routes.routes.0; route names must be unique"]  # fmt: skip


@pytest.mark.parametrize(
    ("match", "where", "message"),
    [
        ("match: ['crs_grade > 4']", "routes.routes.1.match.0", "route 'x' can never match: 'crs_grade > 4' can never hold"),
        ("match: ['urgency < none']", "routes.routes.1.match.0", "'urgency < none' can never hold"),
        ("match: ['urgency > emergency']", "routes.routes.1.match.0", "'urgency > emergency' can never hold"),
        ("match: ['crs_grade < 0']", "routes.routes.1.match.0", "'crs_grade < 0' can never hold"),
        ("match: ['unit == 5B', 'crs_grade >= 3', 'crs_grade < 2']", "routes.routes.1.match.1",
         "route 'x' can never match: 'crs_grade >= 3' and 'crs_grade < 2' can never hold together"),
        ("match: ['in_risk_window == true', 'in_risk_window == false']", "routes.routes.1.match.0", "can never hold together"),
        ("match: ['risk_tier in [high]', 'risk_tier == low']", "routes.routes.1.match.0", "can never hold together"),
        ("match_any: ['crs_grade >= 3', 'urgency < none']", "routes.routes.1.match_any.1",
         "route 'x': the match_any entry 'urgency < none' can never hold"),
    ],
)
def test_matchers_that_can_never_hold_are_errors(match, where, message):
    errs = errors_of(tree(f"    - name: x\n      {match}\n"))
    assert len(errs) == 1 and f": {where}: route " in errs[0] and message in errs[0], errs


@pytest.mark.parametrize(
    "matchers",
    [
        ["crs_grade > 3"], ["crs_grade <= 0"], ["urgency <= none"], ["urgency >= emergency"], ["crs_grade >= 3", "crs_grade <= 3"],
        ["in_risk_window != true", "in_risk_window != false"],  # null (not computable) satisfies both
        ["risk_tier not in [high, medium, low, unknown]"],  # null again
        ["day_since_therapy >= 3650"], ["news2 == 20"],
        ["age_years > 119.5", "age_years < 0.5"],  # number: not enumerated, never guessed
        ["unit == 5A", "unit == 5B"], ["labels.trial == A", "labels.trial == B"],  # str: skipped
        ["red_flags has_all [seizure]", "red_flags has_none [seizure]"],  # set: skipped
    ],
)
def test_satisfiable_or_unknowable_matchers_are_not_flagged(matchers):
    from worker.rules.matchers import contradiction

    assert contradiction([Matcher.parse(t) for t in matchers]) == ()


def test_route_tree_errors_are_reported_with_the_field_errors():
    text = tree("    - name: all\n    - name: emergency\n      match: ['crs_grade > 4']\n")
    errs = errors_of(text.replace("ack_within: 5m", "ack_within: 8d"))
    assert len(errs) == 4, errs  # catch-all, duplicate name, never matches, duration


def test_unused_receivers_and_policies_are_warnings_not_errors():
    text = MINIMAL.replace("escalation_policies:\n", "  spare: {contacts: [{channel: sms, to: \"9\"}]}\nescalation_policies:\n")
    text = text.replace("routes:\n", "  old: {steps: [{notify: [nurse], ack_within: 5m}], failsafe: desk}\nroutes:\n")
    loaded = load_rules_text(text, "rules.yaml")
    assert [str(w) for w in loaded.warnings] == [
        "rules.yaml:5:3: receivers.spare: receiver 'spare' is not used by any escalation policy or route; remove it or use it",
        "rules.yaml:11:3: escalation_policies.old: escalation policy 'old' is not used by any route; remove it or route to it",
    ]
    assert load_rules_text(EXAMPLE.read_text()).warnings == ()  # the shipped file uses everything it defines


def test_a_receiver_used_only_as_route_notify_or_failsafe_is_used():
    text = MINIMAL.replace("escalation_policies:\n", "  ehr: {contacts: [{channel: ehr}]}\nescalation_policies:\n")
    assert load_rules_text(text.replace("  policy: p\n", "  policy: p\n  notify: [ehr]\n")).warnings == ()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('["patient_id == P-test"]', '["urgency >= none"]', "silences.0.match: silence 'admitted-p-test' must name whom it mutes"),
        ('["patient_id == P-test"]', '["patient_id != P-test"]', "must name whom it mutes"),
        ('["patient_id == P-test"]', '["unit not in [5B]", "crs_grade >= 0"]', "must name whom it mutes"),
        ("ends: 2026-11-26T00:00:00Z", "ends: 2036-11-26T00:00:00Z",
         "silences.0: ends at most 7d after starts; renew it if it is still needed"),
        ("ends: 2026-11-26T00:00:00Z", "ends: 2026-12-02T00:00:01Z", "ends at most 7d after starts"),
    ],
)
def test_a_silence_names_a_patient_or_unit_and_lasts_at_most_7d(old, new, message):
    assert old in SILENCE
    errs = errors_of(MINIMAL + SILENCE.replace(old, new))
    assert len(errs) == 1 and message in errs[0], errs


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ends: 2026-11-26T00:00:00Z", "ends: 2026-12-02T00:00:00Z"),  # exactly 7d
        ('["patient_id == P-test"]', '["unit in [5B, 5C]", "urgency <= urgent"]'),
        ('["patient_id == P-test"]', '["patient_id in [P-test, P-other]"]'),
    ],
)
def test_silences_at_the_limits_load(old, new):
    load(MINIMAL + SILENCE.replace(old, new))


def test_a_policy_frozen_before_the_7d_cap_still_loads_from_its_snapshot():
    """An open alert's frozen policy must keep escalating after the cap was introduced."""
    from worker.rules.models import SNAPSHOT, Policy, parse_duration

    old = {"steps": [{"notify": ["a"], "ack_within": "5m"}], "ack_timeout": "30d", "failsafe": "b"}
    assert Policy.model_validate(old, context=SNAPSHOT).ack_timeout == dt.timedelta(days=30)
    with pytest.raises(ValueError, match="a duration is at most 7d"):
        Policy.model_validate(old)
    with pytest.raises(ValueError, match="too long"):
        parse_duration("99999999999d", None)  # beyond timedelta.max: a ValueError, not an OverflowError
    assert parse_duration("999999999s", None) == dt.timedelta(seconds=999999999)


def test_latest_due_is_the_page_a_catch_up_loop_finds_and_takes_one_pass():
    pol = Policy.model_validate({"steps": [{"notify": ["a"], "ack_within": "5m", "repeat_every": "2m", "repeats": 2},
                                           {"notify": ["b"], "ack_within": "5m"}], "failsafe": "c",
                                 "failsafe_repeat_every": "5s"}, context=SNAPSHOT)  # fmt: skip
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for first_step in (0, 1, 2):
        for seq in range(4):
            for minutes in (0, 2, 4, 5, 9, 10, 11, 13.5):
                now = start + dt.timedelta(minutes=minutes)
                want = seq
                while escalation.page_at(pol, start, want + 1, first_step).at <= now:
                    want += 1
                page, following = escalation.latest_due(pol, start, seq, now, first_step)
                assert (page, following) == (escalation.page_at(pol, start, want, first_step),
                                             escalation.page_at(pol, start, want + 1, first_step))  # fmt: skip
    t = time.perf_counter()  # a day down: 17,000 failsafe pages skipped (page_at in a loop: minutes)
    page, _ = escalation.latest_due(pol, start, 1, start + dt.timedelta(days=1))
    assert (page.kind, page.at) == ("failsafe", start + dt.timedelta(days=1)) and time.perf_counter() - t < 2


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("repeat_every", "59s", False), ("repeat_every", "1m", True),
    ("failsafe_repeat_every", "59s", False), ("failsafe_repeat_every", "1m", True), ("failsafe_repeat_every", "1s", False),
])
def test_repeats_are_at_least_a_minute_apart_in_a_file_but_a_frozen_policy_still_loads(key, value, ok):
    step = {"notify": ["a"], "ack_within": "5m"}
    policy = {"steps": [step], "failsafe": "c"}
    if key == "repeat_every":
        step.update(repeat_every=value, repeats=1)
    else:
        policy[key] = value
    if ok:
        Policy.model_validate(policy)
    else:
        with pytest.raises(ValueError, match=f"{key} must be at least 1m"):
            Policy.model_validate(policy)
    assert Policy.model_validate(policy, context=SNAPSHOT)  # an alert opened under older rules keeps escalating
