"""The security check catalogue (issue 14), in the manner of Prowler and kube-bench: each check
has an id, a severity, what it checks, how to fix it, and the PCI DSS 4.0.1 requirements it
supports. The checks themselves live in :mod:`opsbook.secops.checks`; a check that fails reports
one failure per subject (an account, a file, a certificate, a source address), and each failure
becomes a finding (:mod:`opsbook.secops.findings`)."""

from __future__ import annotations

from dataclasses import dataclass

from opsbook.errors import ValidationError
from opsbook.secops.model import Severity


@dataclass(frozen=True)
class CheckSpec:
    id: str
    family: str
    severity: Severity
    title: str
    checks: str
    fix: str
    requirements: tuple[str, ...]
    #: the sandbox faults this check is the one to catch (drills and the benchmark use it)
    catches: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "family": self.family,
            "severity": self.severity,
            "title": self.title,
            "checks": self.checks,
            "fix": self.fix,
            "requirements": list(self.requirements),
            "catches": list(self.catches),
        }


def _c(
    id: str,
    family: str,
    severity: Severity,
    title: str,
    checks: str,
    fix: str,
    requirements: tuple[str, ...],
    catches: tuple[str, ...] = (),
) -> CheckSpec:
    return CheckSpec(id, family, severity, title, checks, fix, requirements, catches)


CATALOGUE: dict[str, CheckSpec] = {
    c.id: c
    for c in (
        _c(
            "tls.protocols",
            "tls",
            "high",
            "Only TLS 1.2 or newer is accepted",
            "Scans the payment network endpoint with sslyze and lists every protocol version it"
            " accepts; SSL 2.0/3.0 and TLS 1.0/1.1 fail.",
            "Set the server's minimum protocol to TLS 1.2 (nginx ssl_protocols TLSv1.2 TLSv1.3;"
            " Azure Application Gateway SSL policy AppGwSslPolicy20220101S) and restart it.",
            ("4.2.1", "2.2.7"),
            ("weak-tls",),
        ),
        _c(
            "tls.weak-ciphers",
            "tls",
            "medium",
            "No weak cipher suites",
            "Lists the TLS 1.2 cipher suites the payment network accepts (sslyze): NULL, EXPORT,"
            " anonymous, RC4, DES/3DES, MD5, CBC with SHA-1 or suites without forward secrecy"
            " fail.",
            "Allow only ECDHE with AES-GCM or ChaCha20-Poly1305 (Mozilla 'intermediate').",
            ("4.2.1",),
            ("weak-tls",),
        ),
        _c(
            "tls.cert-expiry",
            "tls",
            "high",
            "The payment network certificate is valid for 30 days or more",
            "Reads the certificate the payment network serves (sslyze certificate info) and its"
            " days left.",
            "Renew the certificate now (`opsbook sandbox chaos clear cert-expiring` on the sandbox;"
            " Key Vault certificate auto-renewal in production) and alert at 30 days.",
            ("4.2.1", "4.2.1.1"),
            ("cert-expiring",),
        ),
        _c(
            "tls.cert-expired",
            "tls",
            "critical",
            "The payment network certificate has not expired",
            "The certificate served is inside its validity period.",
            "Issue a new certificate and reload the server; find out why renewal did not run.",
            ("4.2.1", "4.2.1.1"),
            ("expired-cert",),
        ),
        _c(
            "tls.plain-http",
            "tls",
            "high",
            "Service endpoints use HTTPS",
            "Every service URL of a non-local environment is https:// (the sandbox's services"
            " listen on loopback only and are skipped).",
            "Terminate TLS at the ingress for every service.",
            ("4.2.1",),
        ),
        _c(
            "auth.brute-force",
            "identity",
            "high",
            "No login brute force",
            "Counts failed logins per source address in the account service's security log"
            " over the last 15 minutes; 10 or more from one address fail.",
            "Block the addresses at the WAF, check the targeted accounts for a successful login"
            " afterwards, and open a security incident if one succeeded.",
            ("8.3.4", "10.2.1.4", "10.4.1"),
            ("suspicious-logins",),
        ),
        _c(
            "auth.token-new-address",
            "identity",
            "high",
            "No token is used from an unknown address",
            "Reads the account service's token use events and compares each source address with"
            " the addresses known for the token's account.",
            "Revoke the token and every session of the account (incident-containment), then find"
            " out how it leaked.",
            ("8.2.2", "8.3.1", "10.4.1"),
            ("leaked-token",),
        ),
        _c(
            "accounts.dormant",
            "identity",
            "high",
            "No account unused for 90 days is enabled",
            "opsbook accounts and the platform's database and operator accounts (the sandbox's"
            " identity records) with no login for 90 days; admin accounts are high.",
            "Disable the account (`opsbook users disable NAME`; remove the platform grant in the"
            " access review) and re-enable it only on request.",
            ("8.2.6",),
            ("dormant-admin",),
        ),
        _c(
            "tokens.never-expiring",
            "identity",
            "medium",
            "API tokens expire within a year",
            "Active opsbook API tokens whose lifetime is longer than 365 days.",
            "Revoke the token and issue one with `--expires` of a year or less.",
            ("8.3.9", "8.6.3"),
        ),
        _c(
            "tokens.unused",
            "identity",
            "low",
            "No active token unused for 90 days",
            "Active opsbook API tokens not used for 90 days (or never used and older than 90).",
            "Revoke tokens nobody uses (`opsbook tokens revoke ID`).",
            ("8.2.6",),
        ),
        _c(
            "tokens.too-broad",
            "identity",
            "medium",
            "Tokens carry no admin scope",
            "Active opsbook API tokens with the admin scope.",
            "Issue a token with only the scopes the automation needs (read, run).",
            ("7.2.2", "7.2.5"),
        ),
        _c(
            "data.pan-in-logs",
            "data",
            "critical",
            "No card number in the logs",
            "Searches the services' logs for primary account numbers (issuer prefix, length and"
            " Luhn); shows each masked as first six and last four digits.",
            "Stop the logging at its source, purge the lines (the log store and its backups),"
            " and treat it as a security incident (PCI DSS 3.3/3.5).",
            ("3.4.1", "3.5.1", "10.3.1"),
            ("pan-in-log",),
        ),
        _c(
            "data.pan-in-ledger",
            "data",
            "critical",
            "No card number stored in clear in the ledger",
            "Searches the ledger's free-text columns (references, payees, messages) for card"
            " numbers.",
            "Tokenise or truncate the value, fix the write path, and record the removal.",
            ("3.5.1",),
        ),
        _c(
            "workspace.secrets-in-files",
            "workspace",
            "high",
            "No credentials in workspace files",
            "opsbook.toml, contacts.yaml, environments/*.yaml and the runbooks: password/token"
            " assignments, credentials in URLs, private keys.",
            "Treat it as exposed: rotate it in Key Vault, reference it as a secret, remove it from"
            " the file and from git history.",
            ("8.3.2", "8.6.2"),
        ),
        _c(
            "workspace.file-permissions",
            "workspace",
            "medium",
            "State and key files are private",
            "The database, keys and secrets under .opsbook are readable by their owner only, and"
            " nothing under .opsbook is world-writable.",
            "chmod 600 the files and 700 the directories named.",
            ("10.3.2", "7.2.1"),
        ),
        _c(
            "audit.chain",
            "audit",
            "critical",
            "The audit trail verifies",
            "Walks the hash-chained audit trail (and the signed checkpoints where a witness is"
            " configured).",
            "Do not repair it: export what verifies, open a SEV-1 security incident, and restore"
            " the database from the last verified backup.",
            ("10.2.1", "10.3.2", "10.3.4"),
        ),
        _c(
            "platform.health-exposure",
            "platform",
            "medium",
            "Health endpoints expose nothing sensitive",
            "Each service's health answer contains no password, secret, token or private key.",
            "Remove the value from the health answer; rotate it if it was real.",
            ("6.2.4",),
        ),
        _c(
            "ledger.integrity",
            "platform",
            "critical",
            "Every transfer balances",
            "Each transfer's entries sum to zero in the ledger.",
            "Do not fix it by hand: open a SEV-1 security incident (tampering or a defect).",
            ("10.2.1", "11.5.2"),
        ),
        _c(
            "findings.overdue",
            "program",
            "high",
            "No finding is past its due date",
            "Open findings whose due date (severity SLA) has passed.",
            "Fix the finding, or have a second person accept the risk until a date"
            " (`opsbook findings accept`).",
            ("6.3.1", "6.3.3"),
        ),
        _c(
            "access.review-due",
            "program",
            "low",
            "An access review closed this quarter",
            "The last closed access review campaign is less than 92 days old.",
            "Start one: `opsbook access review start`.",
            ("7.2.4", "7.2.5.1"),
        ),
    )
}


def get_check(check_id: str) -> CheckSpec:
    spec = CATALOGUE.get(check_id)
    if spec is None:
        raise ValidationError(
            f"unknown check {check_id!r}",
            field="--only",
            hint="`opsbook security checks` lists them",
        )
    return spec


def checks_for_requirement(requirement: str) -> list[CheckSpec]:
    """Checks that support ``requirement`` or one of its sub-requirements (8.3 → 8.3.4)."""
    return [
        c
        for c in CATALOGUE.values()
        if any(r == requirement or r.startswith(requirement + ".") for r in c.requirements)
    ]
