"""The playbook model: typed inputs and steps, one discriminated union over the step-kind registry."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from breakglass.flows.language.triggers import Trigger
from breakglass.flows.language.types import Model, Name
from breakglass.flows.steps import AnyStep

SCALAR_TYPES = ("address", "chain", "tx_hash", "string", "int", "bool")
INPUT_TYPES = SCALAR_TYPES + tuple(f"list[{t}]" for t in SCALAR_TYPES)
InputType = Literal[INPUT_TYPES]  # type: ignore[valid-type]  # built from the tuples above; mypy wants the values written out
HEX32_INPUT_TYPES = ("tx_hash", "list[tx_hash]")


class InputSpec(Model):
    type: InputType
    description: str = ""
    required: bool | None = Field(None, description="defaults to true unless a default is given")
    default: Any = None
    drill: Any = Field(None, description="value a drill uses when none is given, e.g. 'fixture:attacker'")

    @model_validator(mode="after")
    def _consistent(self) -> InputSpec:
        if self.required and self.default is not None:
            raise ValueError("an input with a default is not required; drop 'required: true' or the default")
        return self

    @property
    def is_required(self) -> bool:
        return self.default is None and self.required is not False


class Playbook(Model):
    apiVersion: Literal["breakglass/v1"]
    kind: Literal["Playbook"]
    name: Name
    description: str = Field(min_length=1)
    severity: Literal["low", "medium", "high", "critical"]
    inputs: dict[Name, InputSpec] = Field(default_factory=dict)
    triggers: list[Trigger] = Field(default_factory=list, description="alerts that start this playbook (see flows/language/triggers.py)")
    steps: list[AnyStep] = Field(min_length=1)

    def step(self, step_id: str) -> Any:
        return next(s for s in self.steps if s.id == step_id)
