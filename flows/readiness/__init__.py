"""Readiness and pre-flight: what `check` and every run verify before anything is signed."""
