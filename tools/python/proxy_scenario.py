"""Code written for Twilio Proxy, run against proxy-relay with one line changed.

twilio-python, unmodified from PyPI (tools/python/requirements.txt), pointed at the server with
`client.proxy.base_url`. Every step asserts what Proxy would answer; any failure exits non-zero
with the step. Run by crates/proxy-relay/tests/proxy_clients.rs with the server's URL and
credentials in PROXY_URL, ACCOUNT_SID and AUTH_TOKEN.
"""

import datetime
import json
import os
import sys
import uuid

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

BASE = os.environ["PROXY_URL"].rstrip("/")
ACCOUNT = os.environ["ACCOUNT_SID"]
TOKEN = os.environ["AUTH_TOKEN"]

client = Client(ACCOUNT, TOKEN)
client.proxy.base_url = BASE  # the one line that changes
proxy = client.proxy.v1

run = uuid.uuid4().hex[:8]
digits = str(int(run, 16) % 10**6).zfill(6)
RIDER, DRIVER = f"+1555{digits}1", f"+1555{digits}2"
POOL = [f"+1444{digits}0", f"+1444{digits}1"]


def step(name):
    print(f"-- {name}", flush=True)


def expect_error(code, status, fn):
    try:
        fn()
    except TwilioRestException as e:
        assert e.code == code, f"expected {code}, got {e.code}: {e.msg}"
        assert e.status == status, f"expected HTTP {status}, got {e.status}"
        return e
    raise AssertionError(f"expected error {code}, the call succeeded")


def is_date(v):
    return isinstance(v, datetime.datetime) and v.tzinfo is not None


sms_sids = iter(f"SM{uuid.uuid4().hex}" for _ in range(1000))


def text(sender, proxy_number, body):
    """What Twilio posts when `sender` texts `proxy_number`, signed as Twilio signs it."""
    url = f"{BASE}/twilio/sms"
    params = {
        "MessageSid": next(sms_sids),
        "AccountSid": ACCOUNT,
        "From": sender,
        "To": proxy_number,
        "Body": body,
        "NumMedia": "0",
    }
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    r = requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert r.status_code == 200, f"webhook answered {r.status_code}: {r.text}"
    return r.text


step("a service and its pool")
service = proxy.services.create(unique_name=f"rides-{run}", default_ttl=3600)
assert service.sid.startswith("KS") and len(service.sid) == 34, service.sid
assert service.account_sid == ACCOUNT
assert service.default_ttl == 3600
assert service.number_selection_behavior == "prefer-sticky"
assert is_date(service.date_created) and is_date(service.date_updated)
assert service.url == f"{BASE}/v1/Services/{service.sid}", service.url
assert service.links["sessions"] == f"{service.url}/Sessions"
assert service.links["phone_numbers"] == f"{service.url}/PhoneNumbers"
svc = proxy.services(service.sid)
numbers = [svc.phone_numbers.create(phone_number=n) for n in POOL]
for n, e164 in zip(numbers, POOL):
    assert n.sid.startswith("PN") and n.phone_number == e164 and n.service_sid == service.sid
    assert n.is_reserved is False and n.in_use == 0 and n.iso_country == "US"
    assert is_date(n.date_created)
assert [n.phone_number for n in svc.phone_numbers.list()] == POOL
fetched = proxy.services(f"rides-{run}").fetch()  # a unique name works in place of the SID
assert fetched.sid == service.sid

step("a session with two participants")
session = svc.sessions.create(
    unique_name=f"ride-{run}",
    participants=[
        {"Identifier": RIDER, "FriendlyName": "rider"},
        {"Identifier": DRIVER, "FriendlyName": "driver"},
    ],
)
assert session.sid.startswith("KC") and session.status == "open", session.status
assert session.ttl == 3600 and session.mode == "voice-and-message"
assert is_date(session.date_created) and is_date(session.date_started)
assert session.date_ended is None and session.closed_reason is None
assert session.links["interactions"].endswith(f"/Sessions/{session.sid}/Interactions")
sess = svc.sessions(session.sid)
parts = sess.participants.list()
assert [p.identifier for p in parts] == [RIDER, DRIVER], [p.identifier for p in parts]
rider, driver = parts
for p in parts:
    assert p.sid.startswith("KP") and p.session_sid == session.sid
    assert p.proxy_identifier in POOL and p.proxy_identifier_sid.startswith("PN")
    assert p.date_deleted is None and is_date(p.date_created)
    assert p.links["message_interactions"].endswith(f"/Participants/{p.sid}/MessageInteractions")
assert rider.friendly_name == "rider"
assert svc.phone_numbers(rider.proxy_identifier_sid).fetch().in_use == 1

step("a conversation through signed webhooks")
text(RIDER, rider.proxy_identifier, "on my way")
assert sess.fetch().status == "in-progress"
text(DRIVER, driver.proxy_identifier, "see you soon")
answer = text(DRIVER, driver.proxy_identifier, "STOP")
assert "unsubscribed" in answer, answer  # the confirmation, in the TwiML answer
text(RIDER, rider.proxy_identifier, "are you there?")  # refused: the driver opted out
text(DRIVER, driver.proxy_identifier, "START")
text(RIDER, rider.proxy_identifier, "thanks")

step("a MessageInteraction, and one to a participant who opted out")
mi = sess.participants(rider.sid).message_interactions.create(body="your driver is here")
assert mi.sid.startswith("KI") and mi.participant_sid == rider.sid
assert mi.outbound_participant_sid == rider.sid and mi.inbound_participant_sid is None
assert mi.outbound_resource_status == "queued" and mi.outbound_resource_sid.startswith("SM")
assert json.loads(mi.data) == {"body": "your driver is here"}
assert sess.participants(rider.sid).message_interactions(mi.sid).fetch().sid == mi.sid
text(RIDER, rider.proxy_identifier, "STOP")
refused = sess.participants(rider.sid).message_interactions.create(body="rate your ride")
assert refused.outbound_resource_status == "failed" and refused.outbound_resource_sid is None
listed_mi = sess.participants(rider.sid).message_interactions.list()
assert [m.sid for m in listed_mi] == [refused.sid, mi.sid]

step("the interaction log, more than one page")
page = sess.interactions.page(page_size=3)
assert len(list(page)) == 3 and page.next_page_url is not None
assert page.next_page_url.startswith(f"{BASE}/v1/"), page.next_page_url
everything = sess.interactions.list(page_size=3)
assert len(everything) == 9, len(everything)  # 7 texts and 2 MessageInteractions
assert len({i.sid for i in everything}) == 9
by_body = {json.loads(i.data)["body"]: i for i in everything}
for i in everything:
    assert i.sid.startswith("KI") and i.session_sid == session.sid and i.service_sid == service.sid
    assert i.type == "message" and i.account_sid == ACCOUNT
    assert is_date(i.date_created) and is_date(i.date_updated)
    assert i.url.startswith(f"{BASE}/v1/Services/{service.sid}/Sessions/{session.sid}/")
forward = by_body["on my way"]
assert forward.inbound_participant_sid == rider.sid and forward.inbound_resource_status == "delivered"
assert forward.inbound_resource_type == "Message" and forward.inbound_resource_sid.startswith("SM")
assert forward.inbound_resource_url.endswith(f"/Messages/{forward.inbound_resource_sid}.json")
assert forward.outbound_participant_sid == driver.sid
assert forward.outbound_resource_status == "queued" and forward.outbound_resource_sid.startswith("SM")
stop = by_body["STOP"]  # the driver's: dropped, no outbound leg
assert stop.outbound_participant_sid is None and stop.outbound_resource_sid is None
assert stop.outbound_resource_status is None and stop.inbound_resource_status == "delivered"
blocked = by_body["are you there?"]
assert blocked.outbound_participant_sid == driver.sid
assert blocked.outbound_resource_status == "failed" and blocked.outbound_resource_sid is None
start = by_body["START"]
assert start.outbound_resource_status == "queued", start.outbound_resource_status
one = sess.interactions(forward.sid).fetch()
assert one.sid == forward.sid and one.data == forward.data
assert sess.interactions(forward.sid).delete() is True
assert len(sess.interactions.list()) == 8
expect_error(20404, 404, lambda: sess.interactions(forward.sid).fetch())

step("close and reopen")
closed = sess.update(status="closed")
assert closed.status == "closed" and closed.closed_reason == "api" and is_date(closed.date_ended)
assert svc.phone_numbers(rider.proxy_identifier_sid).fetch().in_use == 0
expect_error(80608, 400, lambda: sess.update(status="open"))
expect_error(80607, 400, lambda: sess.update(ttl=60))
reopened = sess.update(status="in-progress")
assert reopened.status == "in-progress" and reopened.date_ended is None
expiry = datetime.datetime(2099, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
assert sess.update(date_expiry=expiry).date_expiry == expiry

step("Proxy's rules, as TwilioRestException with Proxy's codes")
expect_error(80602, 400, lambda: proxy.services.create(unique_name=f"rides-{run}"))
expect_error(
    80609,
    400,
    lambda: svc.sessions.create(
        participants=[{"Identifier": f"+1666{digits}{k}"} for k in range(3)]
    ),
)
expect_error(80611, 400, lambda: svc.phone_numbers(rider.proxy_identifier_sid).delete())
expect_error(80103, 400, lambda: sess.participants.create(identifier=RIDER))
expect_error(80104, 400, lambda: svc.phone_numbers.create(phone_number=POOL[0]))
expect_error(20404, 404, lambda: proxy.services("KS" + "0" * 32).fetch())

step("wrong credentials: 401, 20003, nothing changed")
stranger = Client(ACCOUNT, "not-the-token")
stranger.proxy.base_url = BASE
expect_error(20003, 401, lambda: stranger.proxy.v1.services.create(unique_name=f"x-{run}"))
assert [s.unique_name for s in proxy.services.list() if s.unique_name == f"x-{run}"] == []

step("delete")
assert sess.delete() is True
expect_error(20404, 404, lambda: sess.fetch())
assert svc.phone_numbers(numbers[1].sid).delete() is True
print("python scenario passed")
