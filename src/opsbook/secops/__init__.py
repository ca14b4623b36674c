"""Security operations (issue 14): the check catalogue mapped to PCI DSS 4.0.1, findings with a
lifecycle, vulnerability scans and imports, access reviews and just-in-time access, Sigma
detection, containment and compliance evidence. Domain code only: the CLI, API and console are
thin adapters over it."""
