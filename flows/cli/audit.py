"""``breakglass audit verify INCIDENT``: is the incident's hash-chained audit log intact?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breakglass.flows.cli.base import HELP, IncidentArg, JsonOpt, _emit, _home, app, err, out
from breakglass.flows.errors import RunFailed

audit_app = typer.Typer(no_args_is_help=True, context_settings=HELP, rich_markup_mode=None, help="The incident's tamper-evident audit log.")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def verify(incident: IncidentArg, as_json: JsonOpt = False) -> int:
    """Check the chain entry by entry, and against the heads recorded in the incident's run records.

    Example: breakglass audit verify INC-20261205-0001"""
    from breakglass.flows.run import audit
    from breakglass.flows.run.runstore import Store

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
def report(incident: IncidentArg,
           fmt: Annotated[str, typer.Option("--format", help="md, html or json", metavar="FORMAT")] = "md",
           output: Annotated[Path | None, typer.Option("--out", help="write here instead of stdout", metavar="FILE")] = None,
           as_json: JsonOpt = False) -> int:
    """The incident's report: summary, UTC timeline, actions with explorer links, funds movement, notifications,
    approvals, gaps. HTML is one self-contained file with the timeline as an inline SVG chart.

    Examples: breakglass report INC-20261205-0001 --format html --out report.html · breakglass report DRILL-… --json"""
    from breakglass.flows.errors import BreakglassError
    from breakglass.flows.evidence import report as report_mod

    if as_json:
        if fmt not in ("md", "json"):
            raise BreakglassError(f"--json and --format {fmt} disagree: give one of them")
        fmt = "json"
    if fmt not in ("md", "html", "json"):
        raise BreakglassError(f"--format {fmt!r}: choose md, html or json")
    doc = report_mod.build(_home(), incident)
    text = report_mod.render(doc, fmt)
    if output is not None:
        output.write_text(text)
        err.print(f"wrote {output}", markup=False)
    elif fmt == "json":
        _emit(doc, True)
    else:
        out.file.write(text)
    if not doc["audit"]["intact"]:  # rendered, but never silently: exit 2 and say why
        raise RunFailed(f"{incident}: the audit log is broken; the report says so. First problem: "
                        f"{doc['audit']['problems'][0]}")
    return 0
