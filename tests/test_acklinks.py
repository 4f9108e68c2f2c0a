"""Acknowledgement links: signed, expiring; forged, altered, expired and wrong-secret links refused."""

import datetime as dt

import pytest

from worker import acklinks

SECRET = "s" * 40
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def test_a_valid_link_round_trips():
    token = acklinks.issue(SECRET, 42, "charge-nurse", NOW)
    claims = acklinks.verify(SECRET, token, NOW + dt.timedelta(minutes=59), HOUR)
    assert (claims.alert_id, claims.receiver, claims.issued_at) == (42, "charge-nurse", NOW)
    assert len(token) < 120 and token.isascii() and " " not in token


def test_every_link_has_its_own_nonce():
    assert acklinks.issue(SECRET, 42, "a", NOW) != acklinks.issue(SECRET, 42, "a", NOW)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t[:-3] + ("AAA" if t[-3:] != "AAA" else "BBB"), "not valid"),  # altered signature
        (lambda t: "eyJhIjo5OTksInIiOiJ4IiwibiI6Inh4In0" + t[t.index("."):], "not valid"),  # forged payload
        (lambda t: t.replace(".", "", 1), "not valid"),
        (lambda t: "", "not valid"),
        (lambda t: "garbage", "not valid"),
    ],
)
def test_forged_or_altered_links_are_refused(mutate, message):
    token = acklinks.issue(SECRET, 42, "charge-nurse", NOW)
    with pytest.raises(acklinks.LinkError, match=message):
        acklinks.verify(SECRET, mutate(token), NOW, HOUR)


def test_a_link_signed_with_another_secret_is_refused():
    token = acklinks.issue("t" * 40, 42, "charge-nurse", NOW)
    with pytest.raises(acklinks.LinkError, match="not valid"):
        acklinks.verify(SECRET, token, NOW, HOUR)


def test_expiry_edge():
    token = acklinks.issue(SECRET, 42, "charge-nurse", NOW)
    acklinks.verify(SECRET, token, NOW + HOUR, HOUR)  # exactly max_age: still valid
    with pytest.raises(acklinks.LinkError, match="expired"):
        acklinks.verify(SECRET, token, NOW + HOUR + dt.timedelta(seconds=1), HOUR)


def test_a_link_from_the_future_is_refused():
    token = acklinks.issue(SECRET, 42, "charge-nurse", NOW + dt.timedelta(minutes=10))
    with pytest.raises(acklinks.LinkError, match="not valid"):
        acklinks.verify(SECRET, token, NOW, HOUR)


def test_a_short_secret_is_a_configuration_error():
    with pytest.raises(ValueError, match="at least 32 characters"):
        acklinks.issue("short", 1, "x", NOW)


def test_a_link_carries_the_epoch_it_was_sent_in():
    claims = acklinks.verify(SECRET, acklinks.issue(SECRET, 42, "charge-nurse", NOW, 3), NOW, dt.timedelta(hours=12))
    assert claims.epoch == 3 and not claims.outdated(3) and claims.outdated(4) and claims.outdated(2)
    legacy = acklinks.verify(SECRET, acklinks.issue(SECRET, 42, "charge-nurse", NOW), NOW, dt.timedelta(hours=12))
    assert legacy.epoch is None and not legacy.outdated(7)  # a link from before epochs were signed
