"""breakglass.flows: the playbook language and its orchestration on Prefect."""

from __future__ import annotations

__version__ = "0.1.0"
