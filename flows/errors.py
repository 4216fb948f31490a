"""Typed errors. Library code raises these; only the CLI turns them into exit codes."""

from __future__ import annotations

from dataclasses import dataclass


class BreakglassError(Exception):
    """Bad input or usage: the user can fix it. The CLI exits 1 with the message."""


class RunFailed(Exception):
    """The command worked but found failure (a run failed, a check failed). The CLI exits 2."""

    def __init__(self, message: str, document: object | None = None) -> None:
        super().__init__(message)
        self.document = document


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in a file, printed as ``path:line:col: where: message. hint``."""

    path: str
    line: int
    col: int
    where: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        end = "" if self.message.endswith((".", "?", "!")) else "."
        text = f"{self.path}:{self.line}:{self.col}: {self.where}: {self.message}{end}"
        return f"{text} {self.hint}" if self.hint else text


class SpecError(BreakglassError):
    """One or more problems in playbooks or inventories, all collected before failing."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(set(diagnostics))
        super().__init__("\n".join(str(d) for d in self.diagnostics))
