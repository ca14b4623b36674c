"""Troubleshooting as a system (issue 12): diagnosis with ranked hypotheses and their evidence,
log search and request tracing over the sandbox's JSON logs, log templates, known errors and
diagnostic bundles. Adapters (CLI, API, console, runbook actions) sit on top of it."""
