"""The ``breakglass`` command. One error boundary, the same exit codes everywhere:

0 success · 1 bad input or usage · 2 the command worked but found failure · 3 a bug · 130 Ctrl-C
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

try:  # typer >= 0.20 vendors click; its exceptions live there
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on plain click
    from click import exceptions as click_exceptions  # type: ignore[no-redef]  # the same module, before typer vendored it
from breakglass.flows import __version__
from breakglass.flows.cli.base import (  # noqa: E402
    AsOpt,
    IncidentArg,
    IncidentOpt,
    InputOpt,
    InventoryOpt,
    JsonOpt,
    _api,
    _emit,
    _home,
    _require_inventory,
    app,
    err,
    out,
)
from breakglass.flows.cli.paths import resolve as resolve_playbook
from breakglass.flows.errors import BreakglassError, RunFailed, SpecError

if TYPE_CHECKING:
    from breakglass.flows.run.records import RunRecord

PlaybookArg = Annotated[Path, typer.Argument(help="a playbook file, or its name in ./playbooks/", metavar="PLAYBOOK")]


@app.command()
def validate(paths: Annotated[list[Path], typer.Argument(help="playbook, inventory or drill files, or folders",
                                                         metavar="PATH...")],
             inventory: InventoryOpt = None, as_json: JsonOpt = False) -> int:
    """Check playbooks and inventories; every problem is reported with file:line:col.

    Examples: breakglass validate playbooks/ · breakglass validate mine.yaml --inventory playbooks/inventories/example.yaml"""
    from breakglass.flows.spec.validate import validate as run_validate

    report = run_validate(paths, inventory)
    note = (f"references (contracts, signers, contacts, channels) of {len(report.unchecked)} playbook(s) were not "
            "checked: no inventory was given or found beside them. Check them with --inventory FILE, e.g. "
            "--inventory playbooks/inventories/example.yaml") if report.unchecked else None
    if as_json:
        doc = {"valid": not report.diagnostics, "files": report.files, "errors": [d.__dict__ for d in report.diagnostics],
               "references_unchecked": report.unchecked, "note": note, "notes": report.notes}
        if report.diagnostics:  # the same error member as every other command's
            doc["error"] = {"code": "invalid", "exit_code": 1,
                            "message": f"{len(report.diagnostics)} problem(s) in {len(report.files)} file(s)"}
        _emit(doc, True)
    else:
        for diag in report.diagnostics:
            err.print(str(diag), markup=False, highlight=False)
        if not report.diagnostics:
            err.print(f"ok: {len(report.files)} file(s) valid", markup=False)
        else:
            err.print(f"{len(report.diagnostics)} problem(s) in {len(report.files)} file(s)", markup=False)
        for line in report.notes + ([note] if note else []):
            err.print(f"note: {line}", markup=False)
    return 1 if report.diagnostics else 0


def _print_plan(plan: Any) -> None:
    mode = "LIVE" if plan.mode == "live" else "drill"
    err.print(f"plan: {plan.playbook} ({plan.severity}) with inventory {plan.inventory} [{mode}]", markup=False)
    for number, wave in enumerate(plan.waves, start=1):
        err.print(f"wave {number}" + (" (concurrently)" if len(wave) > 1 else ""), markup=False)
        for step in (s for s in plan.steps if s.id in wave):
            extras = [f"needs {', '.join(step.needs)}" if step.needs else "", f"if {step.condition}" if step.condition else "",
                      f"retries {step.retries}" if step.retries else "", f"timeout {step.timeout:g}s" if step.timeout else "",
                      "GATE" if step.gate else ""]
            err.print(f"  {step.id} [{step.kind}] " + " · ".join(e for e in extras if e), markup=False)
            for target in step.targets:
                err.print(f"      {target}", markup=False)


@app.command()
def plan(playbook: PlaybookArg, inventory: InventoryOpt = None, input: InputOpt = None, as_json: JsonOpt = False) -> int:
    """Print the step graph in execution order and the resolved targets. No side effects, no RPC.

    Examples: breakglass plan guardian-key-compromise --inventory playbooks/inventories/drill.yaml ·
    breakglass plan mine.yaml -i inventories/mainnet.yaml --input attacker=0x… --json"""
    from breakglass.flows import planner
    from breakglass.flows.language import inputs
    from breakglass.flows.spec.validate import load_playbook

    pb, inv = load_playbook(resolve_playbook(playbook), _require_inventory(inventory, "plan"))
    assert inv is not None
    values = inputs.resolve(pb, inputs.parse_pairs(input or []), inv, drill_values={} if inv.is_drill else None,
                            placeholders=inv.is_drill)
    result = planner.plan(pb, inv, values)
    if as_json:
        _emit(result.to_json(), True)
    else:
        _print_plan(result)
    return 0


def _finish(records: list[Any], as_json: bool) -> int:
    docs = [json.loads(r.model_dump_json()) for r in records]
    if as_json:
        _emit(docs[0] if len(docs) == 1 else {"runs": docs}, True)
    for record in records:
        if not as_json:
            _print_record(record)
    failed = [r for r in records if r.status != "completed"]
    if failed:
        from breakglass.flows.engine.closing import next_steps

        raise RunFailed(f"run {failed[0].run_id} of incident {failed[0].incident} ended {failed[0].status}: "
                        f"{failed[0].error or ''}".rstrip(": ") + f"\n{next_steps(failed[0].incident)}")
    return 0


def _print_record(record: RunRecord) -> None:
    from breakglass.flows.cli.output import record_table

    out.print(record_table(record))


@app.command()
def run(playbook: PlaybookArg, inventory: InventoryOpt = None, input: InputOpt = None, incident: IncidentOpt = None,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="skip the live confirmation")] = False,
        as_: AsOpt = None, as_json: JsonOpt = False) -> int:
    """Run a playbook. Against a live inventory it shows the plan and asks you to type the playbook's name.

    Examples: breakglass run guardian-key-compromise -i inventories/mainnet.yaml --input attacker=0x… --as alice ·
    breakglass run mine.yaml -i inventories/mainnet.yaml --yes --json"""
    from breakglass.flows import planner
    from breakglass.flows.engine import entry
    from breakglass.flows.language import inputs
    from breakglass.flows.spec.validate import load_playbook

    inventory = _require_inventory(inventory, "run")
    playbook = resolve_playbook(playbook)
    pb, inv = load_playbook(playbook, inventory)
    assert inv is not None
    given = inputs.parse_pairs(input or [])
    if not inv.is_drill and not yes:
        if not sys.stdin.isatty():
            raise BreakglassError("this is a LIVE run and stdin is not a terminal: pass --yes to confirm")
        _print_plan(planner.plan(pb, inv, inputs.resolve(pb, given, inv)))
        answer = typer.prompt(f"LIVE run. Type the playbook name ({pb.name}) to run it", default="", show_default=False)
        if answer.strip() != pb.name:
            raise BreakglassError("not confirmed: nothing was run")
    home = _home()
    record = entry.start(playbook_path=playbook, inventory_path=inventory, given=given, incident=incident, home=home,
                         api=_api, initiator=as_, on_created=lambda h: err.print(f"incident {h.dir.parent.parent.name} · run {h.dir.name}",
                                                                   markup=False))
    return _finish([record], as_json)


@app.command()
def drill(playbook: PlaybookArg, inventory: InventoryOpt = None, input: InputOpt = None, incident: IncidentOpt = None,
          auto_approve: Annotated[bool, typer.Option("--auto-approve", help="cast fixture votes at gates (drills only)")] = False,
          keep_chain: Annotated[bool, typer.Option("--keep-chain", help="leave the drill's anvil running to inspect it")] = False,
          as_: AsOpt = None, as_json: JsonOpt = False,
          fork_url: Annotated[str | None, typer.Option("--fork-url", envvar="BREAKGLASS_FORK_URL",
                                                       help="fork this live chain (needs --inventory LIVE)")] = None,
          fork_block: Annotated[int | None, typer.Option("--fork-block", help="fork at this block (default: latest)")] = None,
          ) -> int:
    """Rehearse a playbook (or a drill spec, kind: Drill) on a throwaway anvil with the fixture protocol deployed.

    With a drill spec (given, or playbooks/drills/<playbook file> next to the playbook) the run is scored
    against its expectations; unmet ones are gaps, and the exit code is 2. A playbook outside playbooks/ without
    inventories/drill.yaml beside it is drilled with the bundled drill inventory.

    Examples: breakglass drill guardian-key-compromise --auto-approve · breakglass drill mine.yaml -i my-drill.yaml"""
    from breakglass.flows.drills import drill as drill_mod
    from breakglass.flows.spec import drillspec

    playbook = resolve_playbook(playbook, "playbook (or drill spec)")
    home = _home()
    spec_path = playbook if _kind(playbook) == "Drill" else drillspec.for_playbook(playbook)
    spec, given = None, _pairs(input)
    card: dict[str, Any] = {}
    if spec_path is not None:
        spec, playbook, spec_inventory = drillspec.load(spec_path, inventory)
        inventory, given, as_ = inventory or spec_inventory, {**spec.inputs, **given}, as_ or spec.initiator
        err.print(f"drill spec {spec_path}: {spec.name}", markup=False)
    if inventory is None and spec is None and not fork_url:
        chosen = drill_mod.default_inventory(playbook)
        if chosen == drill_mod.BUNDLED_INVENTORY and playbook.resolve().parent != chosen.parent.parent:
            err.print(f"drill inventory: {chosen} (the bundled one; pass --inventory FILE for your own)", markup=False)
    fork = None
    if spec is not None and spec.fork is not None and not fork_url:  # the spec's chain setup: a fork
        import os

        fork_url = os.environ.get(spec.fork.url_env, "")
        if not fork_url:
            raise BreakglassError(f"drill spec {spec_path}: fork.url_env {spec.fork.url_env} is not set; export the live "
                                  "chain's RPC URL in it")
        fork_block = fork_block if fork_block is not None else spec.fork.block
    if fork_url:
        import tempfile

        from breakglass.flows.drills import fork as forkdrill

        if inventory is None:
            raise BreakglassError("--fork-url needs --inventory LIVE_INVENTORY: the live deployment is what a fork "
                                  "drill rehearses")
        work = Path(tempfile.mkdtemp(prefix="fork-", dir=home))
        try:
            inventory, fork = forkdrill.prepare(inventory, fork_url, fork_block, work)
        except BreakglassError as exc:
            if spec_path is None or spec is None or spec.fork is None or not str(exc).startswith("--fork-block"):
                raise
            from breakglass.flows.language.yamlpos import load as load_yaml

            line, col = load_yaml(spec_path).where(("fork", "block"))  # the block came from the spec: say where
            raise BreakglassError(f"{spec_path}:{line}:{col}: fork.block: {str(exc).removeprefix('--fork-block ')}") from None
        fork["url"] = fork_url
    record = drill_mod.run(playbook_path=playbook, inventory_path=inventory, given=given, incident=incident,
                           home=home, api=_api, auto_approve=auto_approve, keep_chain=keep_chain, initiator=as_,
                           spec=spec, card=card, fork=fork)
    if keep_chain:
        kept = home / "incidents" / record.incident / "runs" / record.run_id / "kept-chains.json"
        err.print(f"the drill's chain keeps running (see {kept}); stop it with kill <pid> when done", markup=False)
    try:
        code = _finish([record], as_json)
    finally:  # the scorecard comes last, after the steps' table
        if card:
            _print_card(card, home / "incidents" / record.incident / "runs" / record.run_id / "artifacts")
    if card.get("gaps"):
        raise RunFailed(f"drill {card['name']}: {len(card['gaps'])} gap(s); the first: {card['gaps'][0]}")
    return code


def _kind(path: Path) -> str | None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None  # the loader reports it, with its line
    return data.get("kind") if isinstance(data, dict) else None


def _print_card(card: dict[str, Any], where: Path) -> None:
    times = ", ".join(f"{k.removeprefix('time_to_')} {v:g} s" for k, v in card["metrics_seconds"].items() if v is not None)
    met = sum(1 for c in card["expectations"] if c["met"])
    startup = f" · tool start-up {card['tool_startup_s']:g} s (not judged)" if card.get("tool_startup_s") is not None else ""
    err.print(f"scorecard: {'PASSED' if card.get('passed') else 'FAILED'}, {met}/{len(card['expectations'])} "
              f"expectations met · response {times}{startup}", markup=False)
    for gap in card["gaps"]:
        err.print(f"  gap: {gap}", markup=False)
    err.print(f"  {where / 'scorecard.json'} (and .md, .html)", markup=False)


def _pairs(values: list[str] | None) -> dict[str, str]:
    from breakglass.flows.language.inputs import parse_pairs

    return parse_pairs(values or [])


@app.command()
def resume(incident: IncidentArg, as_json: JsonOpt = False, as_: AsOpt = None,
           from_step: Annotated[str | None, typer.Option("--from", metavar="STEP", help="re-run this failed or completed "
                                                         "step and every step that needs it")] = None) -> int:
    """Continue an incident's failed or interrupted runs: completed steps are not run again; steps skipped
    because a step they need failed run now.

    Example: breakglass resume INC-20261205-0001 --as alice"""
    import getpass

    from breakglass.flows.engine import entry
    from breakglass.flows.scale.deploy import handed_off

    home, api = _home(), _api()
    by = as_ or f"os:{getpass.getuser()}"
    if from_step is not None:
        return _finish(entry.resume(incident, api, home, from_step=from_step, by=by), as_json)
    pooled = [h for h in entry.unfinished(incident, home) if handed_off(h) is not None]
    if pooled:
        from breakglass.flows.scale import reaper

        for handle in pooled:
            flow_run = reaper.resume_on_pool(api, handle)
            handoff = handed_off(handle) or {}
            err.print(f"{incident}/{handle.dir.name}: handed back to pool '{handoff.get('pool')}' as flow run "
                      f"{flow_run}; a worker continues it (`breakglass status {incident}`)", markup=False)
        if len(pooled) == len(entry.unfinished(incident, home)):
            _emit({"incident": incident, "handed_back": [h.dir.name for h in pooled]}, as_json)
            return 0
    return _finish(entry.resume(incident, api, home, by=by), as_json)


def _wants_json(argv: list[str]) -> bool:
    return "--json" in argv or any(a == "--format=json" for a in argv) or any(
        a == "--format" and b == "json" for a, b in zip(argv, argv[1:], strict=False))


def _fail(code: int, kind: str, message: str, as_json: bool, **extra: Any) -> int:
    """The one place an error leaves the CLI: text on stderr, and with --json one document on stdout."""
    from breakglass.flows.cli.base import EMITTED

    if as_json and not EMITTED:
        _emit({"error": {"code": kind, "exit_code": code, "message": message, **extra}}, True)
    return code


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # every directory and file under $BREAKGLASS_HOME is the owner's alone (0700 / 0600)
    from breakglass.flows.run import interrupt

    interrupt.terminate_as_interrupt()  # SIGTERM as Ctrl-C; a running run installs its own handlers

    from breakglass.flows.cli.base import EMITTED

    EMITTED.clear()
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    try:
        result = app(args=args, prog_name="breakglass", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except SpecError as exc:
        for diag in exc.diagnostics:
            err.print(str(diag), markup=False, highlight=False)
        err.print(f"{len(exc.diagnostics)} problem(s); nothing was run", markup=False)
        return _fail(1, "invalid", f"{len(exc.diagnostics)} problem(s); nothing was run", as_json,
                     diagnostics=[d.__dict__ for d in exc.diagnostics])
    except BreakglassError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return _fail(1, "error", str(exc), as_json)
    except RunFailed as exc:
        err.print(f"failed: {exc}", markup=False, highlight=False)
        return _fail(2, "failed", str(exc), as_json)
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted", markup=False)
        return _fail(130, "interrupted", "interrupted", as_json)
    except typer.Exit as exc:
        return exc.exit_code
    except click_exceptions.NoArgsIsHelpError as exc:
        err.print(exc.format_message(), markup=False)
        return 0
    except click_exceptions.UsageError as exc:
        err.print(f"error: {exc.format_message()}", markup=False, highlight=False)
        if exc.ctx is not None:
            err.print(f"usage: {exc.ctx.command_path} --help", markup=False)
        return _fail(1, "usage", exc.format_message(), as_json)
    except click_exceptions.ClickException as exc:
        err.print(f"error: {exc.format_message()}", markup=False)
        return _fail(1, "error", exc.format_message(), as_json)
    except Exception as exc:
        traceback.print_exc()
        err.print(f"\nThis is a bug in breakglass {__version__}. Please report it with the traceback above.", markup=False)
        return _fail(3, "bug", f"{type(exc).__name__}: a bug in breakglass; the traceback is on stderr", as_json)


def entrypoint() -> None:
    sys.exit(main())


from breakglass.flows.cli import admin as cli_admin  # noqa: E402,F401  (schema, version, server; audit; close; approve, ack, status; prepare, sign, check; deploy, worker)
from breakglass.flows.cli import audit as cli_audit  # noqa: E402,F401  (schema, version, server; audit; close; approve, ack, status; prepare, sign, check; deploy, worker)
from breakglass.flows.cli import close as cli_close  # noqa: E402,F401  (schema, version, server; audit; close; approve, ack, status; prepare, sign, check; deploy, worker)
from breakglass.flows.cli import gates as cli_gates  # noqa: E402,F401  (schema, version, server; audit; close; approve, ack, status; prepare, sign, check; deploy, worker)
from breakglass.flows.cli import guardian as cli_guardian  # noqa: E402,F401  (schema, version, server; audit; close; approve, ack, status; prepare, sign, check; deploy, worker)
from breakglass.flows.cli import scale as cli_scale  # noqa: E402,F401  (schema, version, server; audit; close; approve, ack, status; prepare, sign, check; deploy, worker)

if __name__ == "__main__":
    entrypoint()
