"""JSON Schemas generated from the models: ``playbooks/schema.json`` and ``playbooks/run-record.schema.json``."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from breakglass.flows.language.inventory import Inventory
from breakglass.flows.run.records import RunRecord
from breakglass.flows.spec.drillspec import DrillSpec
from breakglass.flows.spec.playbook import Playbook

Document = Annotated[Playbook | Inventory | DrillSpec, Field(discriminator="kind")]


def spec_schema() -> dict[str, Any]:
    schema = TypeAdapter(Document).json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "breakglass/v1",
            "title": "breakglass playbook, inventory, drill spec", **schema}


def record_schema() -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "breakglass/run-record/v1",
            **RunRecord.model_json_schema()}


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
