"""The playbook language: models, loader, semantic checks, templates, inputs, triggers. No Prefect, no engines."""
