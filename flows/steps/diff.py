"""Step kind ``diff``: what changed between two snapshots of the same run, from their artifacts alone.

No RPC: it reads the two snapshot artifacts, after checking each against the sha256 its snapshot
step recorded (an artifact edited after the fact is refused, never compared). Unchanged reads are
counted, not listed; reads that failed, or that only one snapshot made, are counted as not compared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language.suggest import closest
from breakglass.flows.language.types import Ident, Model, Name, is_template
from breakglass.flows.run.home import write_private
from breakglass.flows.steps.base import KindBase, Ref, StepBase
from breakglass.flows.steps.graph import ancestors

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.context import StepContext
    from breakglass.flows.spec.playbook import Playbook

FailRule = Literal["unpaused", "role_granted", "balance_drop", "any_change"]
SECTIONS = ("balances", "paused", "roles", "calls", "storage")
# which snapshot key a fail_on rule needs both snapshots to read, or it could never fire
_NEEDS = {"unpaused": "paused", "role_granted": "roles", "balance_drop": "balances"}


class DiffParams(Model):
    before: Ident = Field(description="id of the earlier snapshot step (an ancestor of this one through needs)")
    after: Ident = Field(description="id of the later snapshot step (an ancestor of this one through needs)")
    fail_on: list[FailRule] = Field(default_factory=list, description=(
        "fail the step if: unpaused (a paused flag went from true to false), role_granted (a role check went "
        "from false to true), balance_drop (a balance fell by more than its tolerance), any_change (anything changed)"))
    tolerance: dict[Name, int] = Field(default_factory=dict, description=(
        "per token ('native' or an ERC-20 contract name): a balance move of at most this many base units is not a change"))


class DiffStep(StepBase):
    kind: Literal["diff"]
    with_: DiffParams = Field(alias="with")


class BalanceChange(Model):
    account: str
    ref: str
    token: str
    before: str = Field(description="base units, as a decimal string")
    after: str
    delta: str = Field(description="after - before, signed")

    def line(self) -> str:
        who = self.ref if self.ref == self.account else f"{self.ref} ({self.account})"
        return f"balance of {who} in {self.token}: {self.before} -> {self.after} ({int(self.delta):+d})"


class PausedChange(Model):
    contract: str
    address: str
    before: bool
    after: bool

    def line(self) -> str:
        return f"{self.contract} ({self.address}) paused: {str(self.before).lower()} -> {str(self.after).lower()}"


class RoleChange(Model):
    contract: str
    role: str
    role_id: str
    account: str
    change: Literal["granted", "revoked"]

    def line(self) -> str:
        return f"{self.role} on {self.contract} {self.change} {'to' if self.change == 'granted' else 'from'} {self.account}"


class CallChange(Model):
    contract: str
    signature: str
    args: list[Any]
    label: str | None
    before: list[Any]
    after: list[Any]

    def line(self) -> str:
        what = self.label or f"{self.contract}.{self.signature.split('(')[0]}({', '.join(str(a) for a in self.args)})"
        return f"{what}: {json.dumps(self.before)} -> {json.dumps(self.after)}"


class SlotChange(Model):
    contract: str
    slot: str
    label: str | None
    before: str
    after: str

    def line(self) -> str:
        return f"{self.contract} storage {self.label or self.slot}: {self.before} -> {self.after}"


class DiffOutputs(Model):
    chain: str
    chain_id: int
    before_block: int
    after_block: int
    changed: int
    unchanged: int
    not_compared: int = Field(description="reads that failed in either snapshot, or that only one snapshot made")
    balances: list[BalanceChange] = Field(default_factory=list)
    paused: list[PausedChange] = Field(default_factory=list)
    roles: list[RoleChange] = Field(default_factory=list)
    calls: list[CallChange] = Field(default_factory=list)
    storage: list[SlotChange] = Field(default_factory=list)
    violations: list[str] = Field(default_factory=list, description="'<fail_on rule>: <entry>' for every entry that broke a rule")
    headline: str
    artifact: str = Field(description="path of the JSON artifact, relative to $BREAKGLASS_HOME")
    sha256: str
    summary: str = Field(description="path of the Markdown summary, relative to $BREAKGLASS_HOME")


def _balance(a: dict[str, Any], b: dict[str, Any]) -> BalanceChange:
    return BalanceChange(account=a["account"], ref=str(a.get("ref", a["account"])), token=a["token"], before=a["raw"],
                         after=b["raw"], delta=str(int(b["raw"]) - int(a["raw"])))


def _paused(a: dict[str, Any], b: dict[str, Any]) -> PausedChange:
    return PausedChange(contract=a["contract"], address=a.get("address", ""), before=a["paused"], after=b["paused"])


def _role(a: dict[str, Any], b: dict[str, Any]) -> RoleChange:
    return RoleChange(contract=a["contract"], role=a["role"], role_id=a["role_id"], account=a["account"],
                      change="granted" if b["has_role"] else "revoked")


def _call(a: dict[str, Any], b: dict[str, Any]) -> CallChange:
    return CallChange(contract=a["contract"], signature=a["signature"], args=a.get("args", []), label=a.get("label"),
                      before=a["result"], after=b["result"])


def _slot(a: dict[str, Any], b: dict[str, Any]) -> SlotChange:
    return SlotChange(contract=a["contract"], slot=a["slot"], label=a.get("label"), before=a["value"], after=b["value"])


# per snapshot section: what identifies a read, its value, and the change record
_KEY: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
    "balances": lambda e: (e["account"], e["token"]),
    "paused": lambda e: (e["contract"],),
    "roles": lambda e: (e["contract"], e["role_id"], e["account"]),
    "calls": lambda e: (e["contract"], e["signature"], json.dumps(e.get("args", []), sort_keys=True)),
    "storage": lambda e: (e["contract"], int(e["slot"], 16)),
}
_VALUE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "balances": lambda e: int(e["raw"]), "paused": lambda e: e["paused"], "roles": lambda e: e["has_role"],
    "calls": lambda e: e["result"], "storage": lambda e: int(e["value"], 16),
}
_FIELD = {"balances": "raw", "paused": "paused", "roles": "has_role", "calls": "result", "storage": "value"}
_CHANGE: dict[str, Callable[[dict[str, Any], dict[str, Any]], Any]] = {
    "balances": _balance, "paused": _paused, "roles": _role, "calls": _call, "storage": _slot}

RULES: dict[str, Callable[[dict[str, list[Any]]], list[Any]]] = {
    "unpaused": lambda c: [x for x in c["paused"] if x.before and not x.after],
    "role_granted": lambda c: [x for x in c["roles"] if x.change == "granted"],
    "balance_drop": lambda c: [x for x in c["balances"] if int(x.delta) < 0],
    "any_change": lambda c: [x for section in SECTIONS for x in c[section]],
}


def compare(before: dict[str, Any], after: dict[str, Any], tolerance: dict[str, int] | None = None) -> dict[str, Any]:
    """The structured diff of two snapshot documents (the artifact format of the ``snapshot`` step)."""
    tolerance = tolerance or {}
    changes: dict[str, list[Any]] = {s: [] for s in SECTIONS}
    unchanged, skipped = 0, []
    for section in SECTIONS:
        old = {_KEY[section](e): e for e in before.get(section, [])}
        new = {_KEY[section](e): e for e in after.get(section, [])}
        for key in [*old, *(k for k in new if k not in old)]:
            a, b = old.get(key), new.get(key)
            if a is None or b is None or _FIELD[section] not in a or _FIELD[section] not in b:
                why = "only in 'after'" if a is None else "only in 'before'" if b is None else "; ".join(
                    f"read failed in '{side}': {e.get('error', 'no value')}" for side, e in (("before", a), ("after", b))
                    if _FIELD[section] not in e)
                skipped.append({"section": section, "key": [str(k) for k in key], "reason": why})
                continue
            va, vb = _VALUE[section](a), _VALUE[section](b)
            if va == vb or (section == "balances" and abs(vb - va) <= tolerance.get(a["token"], 0)):
                unchanged += 1
            else:
                changes[section].append(_CHANGE[section](a, b))
    return {**changes, "changed": sum(len(v) for v in changes.values()), "unchanged": unchanged, "not_compared": skipped}


def violations(changes: dict[str, list[Any]], rules: list[str]) -> list[str]:
    return [f"{rule}: {x.line()}" for rule in rules for x in RULES[rule](changes)]


class Diff(KindBase):
    kind: ClassVar[str] = "diff"
    default_timeout: ClassVar[float] = 300.0  # seconds without `timeout:` (a state diff reads two snapshots)
    spec: ClassVar[type[StepBase]] = DiffStep
    outputs: ClassVar[type[Model]] = DiffOutputs
    protective: ClassVar[bool] = True

    def summary(self, outputs: dict[str, Any]) -> str:
        return str(outputs.get("headline", ""))

    def references(self, step: DiffStep) -> list[Ref]:
        return []  # it names steps, not inventory entries: check_steps checks them

    def check_steps(self, step: DiffStep, playbook: Playbook) -> list[tuple[tuple[Any, ...], str, str]]:
        """Rules about the other steps: both sides are snapshots taken before this step, of one chain."""

        p, steps, parents = step.with_, {s.id: s for s in playbook.steps}, ancestors(playbook)
        snapshots = [s.id for s in playbook.steps if s.kind == "snapshot"]
        known = "Snapshot steps: " + ", ".join(snapshots) + "." if snapshots else "Add a snapshot step to compare."
        out: list[tuple[tuple[Any, ...], str, str]] = []
        good = []
        for side in ("before", "after"):
            name, loc = getattr(p, side), ("with", side)
            guess = closest(name, snapshots)
            hint = f"Did you mean '{guess}'?" if guess else known
            if name not in steps:
                out.append((loc, f"no step '{name}'", hint))
            elif steps[name].kind != "snapshot":
                out.append((loc, f"'{name}' is a {steps[name].kind} step; a diff compares two snapshot steps", hint))
            elif name not in parents.get(step.id, set()):
                out.append((loc, f"snapshot '{name}' is not among this step's needs",
                            f"Add '{name}' to needs of '{step.id}', so it is taken before the diff runs."))
            else:
                good.append(steps[name])
        if p.before == p.after:
            out.append((("with", "after"), f"'before' and 'after' are the same step '{p.before}'",
                        "Compare two different snapshots, e.g. the one at detection and one taken before unpausing."))
        elif p.after in parents.get(p.before, set()):
            out.append((("with", "after"), f"'{p.after}' is taken before '{p.before}' (it is among its needs)",
                        "Swap 'before' and 'after'."))
        if len(good) == 2:
            out += _same_chain_and_reads(p, good[0].with_, good[1].with_)
        return out

    def targets(self, step: DiffStep, inventory: Inventory) -> list[str]:
        p = step.with_
        return [f"compare snapshot {p.before} with {p.after} (no RPC)"] + ([f"fail on: {', '.join(p.fail_on)}"] if p.fail_on else [])

    def run(self, ctx: StepContext, step: DiffStep) -> DiffOutputs:
        p: DiffParams = step.with_
        (a_out, a), (b_out, b) = load(ctx, p.before), load(ctx, p.after)
        if (a["chain"], a["chain_id"]) != (b["chain"], b["chain_id"]):
            raise BreakglassError(f"'{p.before}' read chain {a['chain']} (id {a['chain_id']}) and '{p.after}' read chain "
                                  f"{b['chain']} (id {b['chain_id']}): a diff compares two reads of one chain")
        if b["block_number"] < a["block_number"]:
            raise BreakglassError(f"'{p.after}' (block {b['block_number']}) is older than '{p.before}' (block "
                                  f"{a['block_number']}): swap 'before' and 'after'")
        result = compare(a, b, p.tolerance)
        broken = violations(result, list(p.fail_on))
        lines = [x.line() for s in SECTIONS for x in result[s]]
        headline = (f"{result['changed']} changed, {result['unchanged']} unchanged between blocks {a['block_number']} and "
                    f"{b['block_number']}" + (f": {'; '.join(lines[:3])}" + (" …" if len(lines) > 3 else "") if lines else ""))
        side = {"before": (p.before, a_out, a), "after": (p.after, b_out, b)}
        payload = {
            "kind": "breakglass/diff", "incident": ctx.incident, "run": ctx.run_id, "step": ctx.step_id, "mode": ctx.mode,
            "chain": a["chain"], "chain_id": a["chain_id"],
            **{k: {"step": sid, "block_number": doc["block_number"], "block_hash": doc["block_hash"],
                   "artifact": out["artifact"], "sha256": out["sha256"]} for k, (sid, out, doc) in side.items()},
            "tolerance": {k: str(v) for k, v in p.tolerance.items()}, "fail_on": list(p.fail_on), "violations": broken,
            "changed": result["changed"], "unchanged": result["unchanged"], "not_compared": result["not_compared"],
            **{s: [x.model_dump(mode="json") for x in result[s]] for s in SECTIONS},
        }
        path, digest = ctx.write_artifact(f"{ctx.step_id}.diff.json", payload)
        md = ctx.artifacts_dir / f"{ctx.step_id}.diff.md"
        write_private(md, markdown(ctx.step_id, payload, lines).encode())
        outputs = DiffOutputs(
            chain=a["chain"], chain_id=a["chain_id"], before_block=a["block_number"], after_block=b["block_number"],
            changed=result["changed"], unchanged=result["unchanged"], not_compared=len(result["not_compared"]),
            **{s: result[s] for s in SECTIONS}, violations=broken, headline=headline, artifact=path, sha256=digest,
            summary=str(md.relative_to(ctx.home)),
        )
        if broken:
            shown = "; ".join(broken[:20]) + (f"; and {len(broken) - 20} more (see {path})" if len(broken) > 20 else "")
            raise DiffFailed(f"fail_on: {len(broken)} violation(s): {shown}", outputs)
        return outputs


class DiffFailed(BreakglassError):
    def __init__(self, message: str, outputs: DiffOutputs) -> None:
        super().__init__(message)
        self.outputs = outputs


def load(ctx: StepContext, step_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A snapshot step's outputs and its artifact, refused unless the file still has the recorded sha256."""
    out = ctx.outputs.get(step_id)
    if not out or "sha256" not in out or "artifact" not in out:
        raise BreakglassError(f"snapshot '{step_id}' has no recorded outputs in this run; it must complete before the diff")
    path = ctx.home / out["artifact"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BreakglassError(f"snapshot '{step_id}': cannot read its artifact {out['artifact']}: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != out["sha256"]:
        raise BreakglassError(
            f"snapshot '{step_id}': artifact {out['artifact']} has sha256 {digest}, but the snapshot step recorded "
            f"{out['sha256']}: the file changed after it was taken. Not compared; keep the file as evidence of tampering.")
    doc = json.loads(data)
    if doc.get("kind") != "breakglass/snapshot":
        raise BreakglassError(f"'{step_id}': {out['artifact']} is not a snapshot artifact")
    return out, doc


def _same_chain_and_reads(p: DiffParams, a: Any, b: Any) -> list[tuple[tuple[Any, ...], str, str]]:
    out: list[tuple[tuple[Any, ...], str, str]] = []
    if a.chain != b.chain and not (is_template(a.chain) or is_template(b.chain)):
        out.append((("with", "after"), f"'{p.before}' reads chain '{a.chain}' and '{p.after}' reads chain '{b.chain}'",
                    "A diff compares two reads of the same chain."))
    reads = {"balances": bool(a.balances and b.balances), "paused": bool(a.paused and b.paused), "roles": bool(a.roles and b.roles)}
    for i, rule in enumerate(p.fail_on):
        if rule in _NEEDS and not reads[_NEEDS[rule]]:
            out.append((("with", "fail_on", i), f"fail_on '{rule}' can never fire: '{p.before}' and '{p.after}' do not both "
                        f"read {_NEEDS[rule]}", f"Add {_NEEDS[rule]} to both snapshots, or drop the rule."))
    tokens = set(a.balances.tokens if a.balances else []) | set(b.balances.tokens if b.balances else [])
    for token in p.tolerance:
        if token not in tokens:
            guess = closest(token, tokens)
            out.append((("with", "tolerance", token), f"tolerance for '{token}', which neither snapshot reads a balance in",
                        f"Did you mean '{guess}'?" if guess else "Tokens read: " + (", ".join(sorted(tokens)) or "none") + "."))
    return out


def markdown(step_id: str, payload: dict[str, Any], lines: list[str]) -> str:
    """The responder's summary: what changed, one line each; unchanged reads only as a count."""
    b, a = payload["before"], payload["after"]
    out = [f"# diff `{step_id}`: {b['step']} (block {b['block_number']}) → {a['step']} (block {a['block_number']})", "",
           f"Chain {payload['chain']} (id {payload['chain_id']}): **{payload['changed']} changed**, {payload['unchanged']} "
           f"unchanged, {len(payload['not_compared'])} not compared.", ""]
    if payload["fail_on"]:
        out += [f"fail_on {', '.join(payload['fail_on'])}: " + ("**violated**" if payload["violations"] else "none violated"), ""]
        out += [f"- {v}" for v in payload["violations"]] + ([""] if payload["violations"] else [])
    if lines:
        out += ["## Changes", ""] + [f"- {line}" for line in lines] + [""]
    if payload["not_compared"]:
        out += ["## Not compared", ""] + [f"- {n['section']} {' '.join(n['key'])}: {n['reason']}" for n in payload["not_compared"][:50]]
        out += [f"- … and {len(payload['not_compared']) - 50} more in the JSON artifact"] if len(payload["not_compared"]) > 50 else []
        out += [""]
    out += [f"Evidence: {b['artifact']} (sha256 {b['sha256']}), {a['artifact']} (sha256 {a['sha256']}), both checked."]
    return "\n".join(out) + "\n"


HANDLER = Diff()
