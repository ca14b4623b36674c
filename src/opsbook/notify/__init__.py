"""Notifications: email (SMTP), chat webhooks (Slack/Teams-compatible), generic HMAC-signed
JSON webhooks and SMS through a provider's HTTP API. Pages are queued in the ``notifications``
table (an outbox) in the same transaction as the incident change that causes them, then
delivered: every attempt is recorded, failures retry and fall back to the next channel, and a
page is claimed before it is sent so no two processes ever send it twice. See docs/incidents.md.
"""
