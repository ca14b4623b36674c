"""Incidents: see docs/incidents.md."""
