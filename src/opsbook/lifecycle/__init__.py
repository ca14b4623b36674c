"""The runbook lifecycle (issue 15): runbook metrics and feedback, change management
(proposal → reviews → tested → approved → published → trained), training and certification,
quick reference cards. Adapters (CLI, API, console) sit on top of it."""
