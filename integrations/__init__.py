"""breakglass.integrations: adapters to the outside world (chains, Slack, email, webhooks, alerts).

This package never imports ``breakglass.flows`` and never imports Prefect.
"""
