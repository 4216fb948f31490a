"""Message templates (``playbooks/templates/<name>.md.j2``): checked at validate, rendered per channel.

The first line is ``Subject: ...``; the rest is the body. Templates see ``incident``, ``drill``,
``playbook``, ``severity``, ``recipient`` (name, kind), ``reply_contact``, ``now`` and ``data``
(the notify step's ``with.data``). Values are data: they are inserted, never rendered again; ``<!channel>`` in an alert stays
text in Slack, and no CR/LF from a value
ever reaches an email header. (The Slack transport escapes the whole text for mrkdwn.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from breakglass.flows.language import templating
from breakglass.integrations.notify.email import header_safe

# the library that ships with breakglass: a playbook's own templates/ folder comes first, then this one
BUNDLED = Path(__file__).resolve().parents[2] / "playbooks" / "templates"
ROOTS = ("incident", "drill", "playbook", "severity", "recipient", "reply_contact", "now", "data")
SUFFIX = ".md.j2"


class MessageTemplateError(Exception):
    pass


def path(folder: Path, name: str) -> Path:
    """The template file: in ``folder`` (the playbook's templates/), else in the bundled library."""
    own = folder / f"{name}{SUFFIX}"
    if own.is_file() or folder.resolve() == BUNDLED.resolve():
        return own
    bundled = BUNDLED / f"{name}{SUFFIX}"
    return bundled if bundled.is_file() else own


def searched(folder: Path) -> list[Path]:
    return [folder] if folder.resolve() == BUNDLED.resolve() else [folder, BUNDLED]


def _env(finalize: Callable[[Any], Any] | None) -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True,
                                finalize=finalize, trim_blocks=False)


ENVS = {"plain": _env(None)}


def check(folder: Path, name: str, data_keys: set[str]) -> list[str]:
    """Problems with a template, for `validate`: missing file, syntax, unknown names."""
    file = path(folder, name)
    if not file.is_file():
        looked = " and ".join(str(f / f"{name}{SUFFIX}") for f in searched(folder))
        return [f"no template '{name}' (looked for {looked}; neither exists)" if len(searched(folder)) > 1
                else f"no template '{name}' ({file} does not exist)"]
    source = file.read_text()
    if not source.startswith("Subject:"):
        return [f"template '{name}' must start with a 'Subject: ...' line"]
    try:
        tree = ENVS["plain"].parse(source)
    except TemplateSyntaxError as exc:
        return [f"template '{name}' line {exc.lineno}: {exc.message}"]
    problems = []
    for ref in templating.references(tree):
        if ref.root not in ROOTS:
            problems.append(f"template '{name}': undefined variable '{ref.root}' (templates may use {', '.join(ROOTS)})")
        elif ref.root == "data" and ref.path and ref.path[0] is not None and ref.path[0] not in data_keys:
            uses_default = f"data.{ref.path[0]}"
            if f"{uses_default} | default" not in source and f"{uses_default}|default" not in source:
                problems.append(f"template '{name}': uses data.{ref.path[0]}, which this step's with.data does not give")
    return problems


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str


@lru_cache(maxsize=256)
def _compiled(source: str) -> Any:
    return ENVS["plain"].from_string(source)


def render(folder: Path, name: str, context: dict[str, Any]) -> Rendered:
    source = path(folder, name).read_text()
    scope = {k: templating.wrap(v) for k, v in context.items()}
    try:
        text = _compiled(source).render(**scope)
    except (UndefinedError, TemplateSyntaxError) as exc:
        raise MessageTemplateError(f"template '{name}': {exc}") from None
    first, _, body = text.partition("\n")
    return Rendered(header_safe(first.removeprefix("Subject:").strip()), body.lstrip("\n"))
