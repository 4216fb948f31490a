"""Approval gates: the rule book, the gate state machine, intents and digests, votes, Slack clicks, notices."""
