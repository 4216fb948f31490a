"""The `breakglass` command, one module per command family."""
