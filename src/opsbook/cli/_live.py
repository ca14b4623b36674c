"""Live progress and prompts for `opsbook run` and `opsbook executions resume`."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from opsbook.engine._hooks import Attestation, Reporter, StepReport
from opsbook.engine.states import State
from opsbook.runbooks.model import Procedure, Step

_ANSI_MARK = {
    State.SUCCEEDED: ("\x1b[32m", "✔"),
    State.FAILED: ("\x1b[31m", "✘"),
    State.SKIPPED: ("\x1b[2m", "–"),
    State.ABORTED: ("\x1b[31m", "■"),
}
_DIM, _RESET = "\x1b[2m", "\x1b[0m"
TROUBLESHOOTING_LINES = 20
MAX_SHOWN = 600  # characters of a dry run's rendered command shown at the terminal
MAX_LIVE_LINES = 200  # output lines of one step shown while it runs


def _would_run(rec: Any) -> list[str]:
    """What a dry-run step would do: a block's rendered command, or an action's answer."""
    if not isinstance(rec, dict):
        return []
    if rec.get("would_run"):
        return [str(rec["would_run"])]
    result = (rec.get("fields") or {}).get("result")
    if isinstance(result, dict):
        would = result.get("would_run") or result.get("commands")
        if isinstance(would, list):
            return [str(w) for w in would]
        if would:
            return [str(would)]
        return [", ".join(f"{k}={v}" for k, v in result.items())]
    return []


def _clip(text: str) -> str:
    """A long rendered command cut for the terminal (``--json`` and `executions show --json`
    keep it whole)."""
    if len(text) <= MAX_SHOWN:
        return text
    return f"{text[:MAX_SHOWN]}… ({len(text) - MAX_SHOWN} more characters; --json shows all)"


class ConsoleReporter(Reporter):
    """Prints one line per step with its duration; details of failures underneath."""

    def __init__(self, *, console: Console, verbose: bool = False) -> None:
        self.c = console
        self.verbose = verbose
        self.procedure: Procedure | None = None
        self._dry_run = False  # set by the first dry-run step
        self._live_lines: dict[tuple[str, int], int] = {}  # lines shown while a step ran

    def execution_started(self, *, execution_id: str, procedure: Procedure, resumed: bool) -> None:
        verb = "Resuming" if resumed else "Running"
        if self.procedure is None:
            self.procedure = procedure  # the outermost one (child procedures report too)
        self.c.print(f"[bold]{verb} {escape(procedure.title)}[/]  [dim]execution {execution_id}[/]")

    def step_started(self, *, step: Step, seq: int, detail: dict[str, Any]) -> None:
        if self.verbose:
            self.c.print(f"  [dim]… {escape(step.title)}[/]")

    def step_finished(self, report: StepReport) -> None:
        self._step_line(report)
        detail = report.detail or {}
        if report.state is State.FAILED or self.verbose:
            self._detail(report, detail)
        elif report.name == "DryRun":
            self._dry_run = True
            if report.state is State.SKIPPED and report.reason:
                self.c.print(f"      [cyan]{escape(report.reason)}[/]")  # would wait: …
            self._dry_detail(detail)

    def _dry_detail(self, detail: dict[str, Any]) -> None:
        """What a dry-run step would do and check; values only a real run has read as
        ``<result of step …>``."""
        if detail.get("would_check_when"):
            self.c.print(f"      [cyan]would check when:[/] {escape(detail['would_check_when'])}")
        for branch in detail.get("branches") or []:
            self.c.print(f"      [cyan]could take:[/] {escape(str(branch))}")
        for rec in detail.get("items", [detail]):
            if not isinstance(rec, dict):
                continue
            for what in _would_run(rec):
                self.c.print(f"      [cyan]would run:[/] {escape(_clip(what.rstrip()))}")
            if rec.get("would_check"):
                checks = "; ".join(str(c) for c in rec["would_check"])
                self.c.print(f"      [cyan]would check:[/] {escape(checks)}")

    def _step_line(self, report: StepReport) -> None:
        """The one line per step, written directly: rich's markup and wrapping cost more than
        a short step itself (this is the hot path of a long run)."""
        if self.c.quiet:
            return
        colour, mark = _ANSI_MARK.get(report.state, ("", "?"))
        dur = f"{report.duration:.2f}s" if report.duration is not None else ""
        label = "" if report.name in ("Succeeded", "Failed") else f"({report.name})"
        title = report.step.title
        if self.c.color_system:
            label = f" {_DIM}{label}{_RESET}" if label else ""
            line = f"  {colour}{mark}{_RESET} {title}{label} {_DIM}{dur}{_RESET}"
        else:
            line = f"  {mark} {title}{' ' + label if label else ''} {dur}"
        self.c.file.write(line.rstrip() + "\n")
        self.c.file.flush()

    def _detail(self, report: StepReport, detail: dict[str, Any]) -> None:
        records = detail.get("items", [detail]) if isinstance(detail, dict) else []
        for rec in records:
            if not isinstance(rec, dict):
                continue
            if rec.get("item") is not None:
                self.c.print(f"      [dim]item:[/] {escape(str(rec['item']))[:120]}")
            for o in rec.get("expectations", []):
                if not o.get("passed"):
                    actual = ", ".join(f"{k} = {v!r}" for k, v in (o.get("actual") or {}).items())
                    self.c.print(
                        f"      [red]expected[/] {escape(o['expr'])}  "
                        f"[dim](line {o.get('line')})[/]"
                    )
                    if o.get("error"):
                        self.c.print(f"        {escape(str(o['error']))}")
                    if actual:
                        self.c.print(f"        [dim]actual:[/] {escape(actual)[:400]}")
            if rec.get("error"):
                self.c.print(f"      [red]{escape(str(rec['error']))}[/]")
            fields = rec.get("fields") or {}
            if (report.step.id, report.seq) in self._live_lines:
                continue  # its output was shown as it ran
            for stream in ("stderr", "stdout"):
                text = str(fields.get(stream) or "").strip()
                if text and report.state is State.FAILED:
                    tail = "\n".join(text.splitlines()[-8:])
                    self.c.print(
                        f"      [dim]{stream}:[/]\n"
                        + "\n".join("        " + escape(line) for line in tail.splitlines())
                    )
        if report.state is State.FAILED and report.reason and not records:
            self.c.print(f"      [red]{escape(report.reason)}[/]")

    def step_output(self, *, step: Step, seq: int, stream: str, line: str) -> None:
        """A running step's output as it comes (the first :data:`MAX_LIVE_LINES` lines)."""
        shown = self._live_lines.get((step.id, seq), 0)
        self._live_lines[step.id, seq] = shown + 1
        if shown == 0 and not self.verbose:
            self.c.print(f"  [dim]… {escape(step.title)}[/]")
        if shown < MAX_LIVE_LINES:
            style = "yellow" if stream == "stderr" else "dim"
            self.c.print(f"      [{style}]│[/] {escape(line)}", highlight=False)
        elif shown == MAX_LIVE_LINES:
            self.c.print("      [dim]│ … (more output: opsbook executions show ID --json)[/]")

    def step_retrying(
        self, *, step: Step, seq: int, attempt: int, of: int, reason: str, retry_in: float
    ) -> None:
        """Each failed attempt, as it happens: a step that keeps failing is never silent."""
        at = time.strftime("%H:%M:%S", time.localtime(time.time() + retry_in))
        self.c.print(
            f"  [yellow]↻[/] {escape(step.title)}: [yellow]attempt {attempt} of {of} failed[/]"
            f" — next attempt in {retry_in:g}s (at {at})\n"
            f"      {escape(_clip(reason))}"
        )

    def step_waiting(self, *, step: Step, seq: int, execution_id: str, why: str) -> None:
        if why == "approval":
            self.c.print(
                f"  [yellow]⏸[/] {escape(step.title)} [yellow]waits for approval[/]\n"
                f"      ask someone else to run: [bold]opsbook approve {execution_id}"
                f" --as THEIR_NAME[/]"
            )
        elif why == "parked":
            self.c.print(
                f"  [yellow]⏸[/] {escape(step.title)} [yellow]waits for a person[/]\n"
                f"      confirm it with: [bold]opsbook executions confirm "
                f"{execution_id}[/]  (or resume interactively: "
                f"opsbook executions resume {execution_id})"
            )
        elif why == "child":
            self.c.print(
                f"  [yellow]⏸[/] {escape(step.title)} [yellow]runs a procedure that waits[/] "
                f"(execution {execution_id})\n      continue it with: [bold]opsbook executions "
                f"resume {execution_id}[/]; this run continues when it finishes"
            )
        elif why == "recovery":
            self.c.print(
                f"  [yellow]⏸[/] {escape(step.title)} was running when the process "
                "died and is not marked idempotent.\n      choose: [bold]opsbook "
                f"executions resume {execution_id} --decision retry|skip|abort[/]"
            )

    def execution_finished(self, *, execution_id: str, state: State, reason: str | None) -> None:
        colour = {State.SUCCEEDED: "green", State.FAILED: "red"}.get(state, "yellow")
        tail = f": {escape(reason)}" if reason else ""
        if state is State.FAILED and self.procedure is not None:
            for section in self.procedure.troubleshooting:
                lines = section.body.strip().splitlines()
                more = len(lines) > TROUBLESHOOTING_LINES
                self.c.print(f"\n[bold]{escape(section.title)}[/] [dim](from the runbook)[/]")
                for line in lines[:TROUBLESHOOTING_LINES]:
                    self.c.print(f"  {escape(line)}", highlight=False)
                if more:
                    self.c.print("  [dim]… (see the runbook for the rest)[/]")
        dry = " (dry run: nothing ran)" if self._dry_run else ""
        self.c.print(
            f"[bold {colour}]{state.title()}[/]{dry}{tail}  [dim]execution {execution_id}[/]"
        )


class ConsoleInteraction:
    """Asks the operator at the terminal. Every checklist item is asked separately."""

    wait_for_approval = True

    def __init__(self, *, console: Console, actor: str) -> None:
        self.c = console
        self.actor = actor

    def _ask(self, prompt: str) -> str:
        self.c.print(prompt, end="")
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.strip()

    def confirm_manual(self, *, step: Step, execution_id: str) -> Attestation | None:
        self.c.print(f"\n  [bold]{escape(step.title)}[/] [dim](manual step)[/]")
        if step.instruction.strip():
            for line in step.instruction.strip().splitlines():
                self.c.print(f"    {escape(line)}")
        try:
            items: list[int] = []
            for i, item in enumerate(step.checklist):
                ans = self._ask(f"    [ ] {escape(item.text)} — done? [y/N/p(ark)] ").lower()
                if ans in ("p", "park"):
                    return None
                if ans not in ("y", "yes"):
                    self.c.print("    [yellow]not attested: the execution stays parked[/]")
                    return None
                items.append(i)
            if not step.checklist:
                ans = self._ask("    Done? [y/N] ").lower()
                if ans not in ("y", "yes"):
                    return None
            note = self._ask("    Note (optional, e.g. ticket number): ") or None
        except (EOFError, KeyboardInterrupt):
            return None
        return Attestation(actor=self.actor, items=tuple(items), note=note)

    def recovery_decision(self, *, step: Step, execution_id: str) -> str | None:
        self.c.print(
            f"\n  [yellow]{escape(step.title)}[/] was running when opsbook died; it is "
            "not marked idempotent, so it may have partly run."
        )
        try:
            ans = self._ask("    retry, skip or abort? [r/s/a, empty = decide later] ").lower()
        except (EOFError, KeyboardInterrupt):
            return None
        return {
            "r": "retry",
            "retry": "retry",
            "s": "skip",
            "skip": "skip",
            "a": "abort",
            "abort": "abort",
        }.get(ans)
