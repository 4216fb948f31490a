"""``breakglass audit verify INCIDENT``: is the incident's hash-chained audit log intact?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breakglass.flows.cli_base import JsonOpt, _emit, _home, app, err, out
from breakglass.flows.errors import RunFailed

audit_app = typer.Typer(no_args_is_help=True, help="The incident's tamper-evident audit log.")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def verify(incident: Annotated[str, typer.Argument(help="the incident id")], as_json: JsonOpt = False) -> int:
    """Check the chain entry by entry, and against the heads recorded in the incident's run records."""
    from breakglass.flows import audit
    from breakglass.flows.runstore import Store

    store = Store(_home())
    handles = store.runs(incident)  # an unknown incident is a clear error (exit 1)
    heads = [(f"run record {h.dir.name}", r.audit_head.model_dump()) for h in handles
             if (r := h.load()).audit_head is not None]
    base = store.incident_dir(incident)
    problems = audit.verify(base, heads)
    head = audit.head(base)
    if as_json:
        _emit({"incident": incident, "intact": not problems, "problems": problems, "head": head,
               "checked_against": [w for w, _ in heads]}, True)
    elif not problems:
        out.print(f"{incident}: audit log intact · {head['entries']} entries · head {head['sha256']} · "
                  f"matches {len(heads)} recorded head(s)", markup=False)
    for problem in problems:
        err.print(problem, markup=False)
    if problems:
        raise RunFailed(f"{incident}: the audit log is broken ({len(problems)} problem(s)); the first: {problems[0]}")
    return 0


@app.command()
def report(incident: Annotated[str, typer.Argument(help="the incident id")],
           fmt: Annotated[str, typer.Option("--format", help="md, html or json")] = "md",
           output: Annotated[Path | None, typer.Option("--out", help="write here instead of stdout")] = None) -> int:
    """The incident's report: summary, UTC timeline, actions with explorer links, funds movement, notifications,
    approvals, gaps. HTML is one self-contained file with the timeline as an inline SVG chart."""
    from breakglass.flows import report as report_mod
    from breakglass.flows.errors import BreakglassError

    if fmt not in ("md", "html", "json"):
        raise BreakglassError(f"--format {fmt!r}: choose md, html or json")
    doc = report_mod.build(_home(), incident)
    text = report_mod.render(doc, fmt)
    if output is not None:
        output.write_text(text)
        err.print(f"wrote {output}", markup=False)
    else:
        out.file.write(text)
    if not doc["audit"]["intact"]:  # rendered, but never silently: exit 2 and say why
        raise RunFailed(f"{incident}: the audit log is broken; the report says so. First problem: "
                        f"{doc['audit']['problems'][0]}")
    return 0
