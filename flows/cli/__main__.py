"""`python -m breakglass.flows.cli`: the same as the `breakglass` command."""

from breakglass.flows.cli.main import entrypoint

entrypoint()
