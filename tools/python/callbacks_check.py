"""What a receiver of proxy-relay's callbacks does with Twilio's own library: validate each
request's X-Twilio-Signature with twilio-python's RequestValidator, and read the debugger
alerts back through twilio-python's Monitor client pointed at the server.

Reads JSON on stdin: {"token", "requests": [{"url", "params": [[k, v]...], "signature"}],
"monitor": {"base", "account", "token"}}; prints JSON: {"valid": [bool...], "alerts": [...],
"warnings": [...], "fetched": {...}}.
"""
import datetime
import json
import sys

from twilio.request_validator import RequestValidator
from twilio.rest import Client

job = json.load(sys.stdin)
validator = RequestValidator(job["token"])
valid = [
    validator.validate(r["url"], dict(r["params"]), r["signature"]) for r in job["requests"]
]

m = job["monitor"]
client = Client(m["account"], m["token"])
client.monitor.base_url = m["base"]


def shown(a):
    return {
        "sid": a.sid,
        "error_code": a.error_code,
        "log_level": a.log_level,
        "alert_text": a.alert_text,
        "resource_sid": a.resource_sid,
        "service_sid": a.service_sid,
        "account_sid": a.account_sid,
        "date_created_is_datetime": isinstance(a.date_created, datetime.datetime),
        "url": a.url,
    }


# A page size of 2 makes the client follow next_page_url.
alerts = [shown(a) for a in client.monitor.v1.alerts.list(page_size=2)]
warnings = [shown(a) for a in client.monitor.v1.alerts.list(log_level="warning", page_size=2)]
today = datetime.datetime.now(datetime.timezone.utc)
ranged = client.monitor.v1.alerts.list(
    start_date=today - datetime.timedelta(hours=1), end_date=today + datetime.timedelta(hours=1)
)
future = client.monitor.v1.alerts.list(start_date=today + datetime.timedelta(days=1))
fetched = shown(client.monitor.v1.alerts(alerts[0]["sid"]).fetch()) if alerts else None
print(
    json.dumps(
        {
            "valid": valid,
            "alerts": alerts,
            "warnings": warnings,
            "ranged": len(ranged),
            "future": len(future),
            "fetched": fetched,
        }
    )
)
