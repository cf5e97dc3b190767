"""The SES events the stand-in writes for emails it took: Send, Bounce,
Complaint and Rendering Failure, with the "mail" object SES attaches, as SES publishes
them through a configuration set."""

from __future__ import annotations

import re
import time
import uuid
from email.utils import getaddresses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.ses_standin import BulkDelivery, Recorded

ACCOUNT_ID = "123456789012"  # the account of tests/support/sns_signing.py's topic
REPORTING_MTA = "dsn; a8-24.smtp-out.amazonses.com"


def _iso(moment: float) -> str:
    """ISO 8601 with milliseconds and Z, as SES writes its timestamps."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}Z"


def _mail_object(email: Recorded | BulkDelivery, *, with_headers: bool) -> dict:
    """The event's "mail": the email as SES accepted it, its tags as lists
    (SES's own ses:* tags, then the message tags the request carried, such
    as mailout_id; a bulk entry's ReplacementTags over DefaultEmailTags)."""
    body = email.body or {}
    source = body.get("FromEmailAddress", "")
    domain = getaddresses([source])[0][1].rpartition("@")[2]
    destination_of = getattr(email, "entry", body)  # a bulk entry has its own Destination
    destination = destination_of.get("Destination") or {}
    mail = {
        "timestamp": _iso(email.received_time),
        "source": source,
        "sourceArn": f"arn:aws:ses:us-east-1:{ACCOUNT_ID}:identity/{domain}",
        "sendingAccountId": ACCOUNT_ID,
        "messageId": email.message_id,
        # The recipients as the request gave them.
        "destination": [a for key in ("ToAddresses", "CcAddresses", "BccAddresses") for a in destination.get(key, [])],
        "headersTruncated": False,
    }
    if with_headers:
        mail.update(_headers_of(email))
    tags = {"ses:operation": ["SendBulkEmail" if email.is_bulk else "SendEmail"]}
    if body.get("ConfigurationSetName"):
        tags["ses:configuration-set"] = [body["ConfigurationSetName"]]
    tags.update({"ses:source-ip": ["127.0.0.1"], "ses:from-domain": [domain], "ses:caller-identity": ["standin"]})
    mail["tags"] = {**tags, **{name: [value] for name, value in email.tags.items()}}
    return mail


def _headers_of(email: Recorded | BulkDelivery) -> dict:
    """"headers" (each as the message has it, unfolded) and "commonHeaders"."""
    message = email.message
    headers = [{"name": name, "value": re.sub(r"\r?\n", "", str(value))} for name, value in message.raw_items()]
    common = {
        "from": [str(message["From"])],
        "to": [str(message["To"])] if message["To"] else [],
        "messageId": email.message_id,
        "subject": str(message["Subject"] or ""),
    }
    return {"headers": headers, "commonHeaders": common}


def rendering_failure_event(failure: BulkDelivery) -> dict:
    """A "Rendering Failure" event. "templateName" is "The name of the template
    used to send the email": an inline template has none, so it is the
    TemplateName the request gave alongside its TemplateContent, else null
    (the docs do not say what SES writes for an inline template)."""
    template = ((failure.body or {}).get("DefaultContent") or {}).get("Template") or {}
    return {
        "eventType": "Rendering Failure",
        "mail": _mail_object(failure, with_headers=False),
        "failure": {"errorMessage": failure.rendering_error, "templateName": template.get("TemplateName")},
    }


def _recipients(email: Recorded | BulkDelivery, address: str | None) -> list[str]:
    return [address] if address else [bare for _, bare in getaddresses(email.to_addresses)]


def _feedback_id() -> str:
    return f"0100{uuid.uuid4().hex[:12]}-{uuid.uuid4()}-000000"


def bounce_event(email: Recorded | BulkDelivery, address: str | None, bounce_type: str, sub_type: str) -> dict:
    """A "Bounce" event: a DSN's action, status and diagnostic code, but for
    an Undetermined bounce (no DSN)."""
    dsn = {"action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
    if bounce_type == "Transient":
        dsn = {"action": "failed", "status": "4.2.2", "diagnosticCode": "smtp; 452 4.2.2 mailbox full"}
    if bounce_type == "Undetermined":
        dsn = {}
    recipients = [{"emailAddress": a, **dsn} for a in _recipients(email, address)]
    bounce = {
        "bounceType": bounce_type,
        "bounceSubType": sub_type,
        "bouncedRecipients": recipients,
        "timestamp": _iso(time.time()),
        "feedbackId": _feedback_id(),
    }
    if bounce_type != "Undetermined":
        bounce["reportingMTA"] = REPORTING_MTA
    return {"eventType": "Bounce", "bounce": bounce, "mail": _mail_object(email, with_headers=True)}


def complaint_event(email: Recorded | BulkDelivery, address: str | None, feedback_type: str) -> dict:
    """A "Complaint" event with a feedback report (userAgent, complaintFeedbackType, arrivalDate)."""
    complaint = {
        "complainedRecipients": [{"emailAddress": a} for a in _recipients(email, address)],
        "timestamp": _iso(time.time()),
        "feedbackId": _feedback_id(),
        "complaintSubType": None,
        "userAgent": "Mozilla/5.0 (standin)",
        "complaintFeedbackType": feedback_type,
        "arrivalDate": _iso(email.received_time),
    }
    return {"eventType": "Complaint", "complaint": complaint, "mail": _mail_object(email, with_headers=True)}


def send_event(email: Recorded | BulkDelivery) -> dict:
    """A "Send" event: SES accepted the email and will try to deliver it. Its
    "send" object is present only in a Send event and carries nothing (AWS's
    "Contents of event data that Amazon SES publishes to Amazon SNS" and its
    examples)."""
    return {"eventType": "Send", "mail": _mail_object(email, with_headers=True), "send": {}}
