"""opsbook runbooks: format v1 (docs/runbook-format.md) parsed into the frozen model.

Public modules (nothing is imported here, so importing the package stays cheap):

- :mod:`opsbook.runbooks.model` — the frozen model the engine runs
- :mod:`opsbook.runbooks.parser` — ``parse_text``, ``parse_file``
- :mod:`opsbook.runbooks.params` — ``parse_param_args``, ``validate_params``
- :mod:`opsbook.runbooks.catalogue` — ``load_catalogue``, ``Catalogue``
- :mod:`opsbook.runbooks.lint` — ``lint_paths``, ``Finding``, ``format_finding``

Modules starting with ``_`` are private to the parser.
"""
