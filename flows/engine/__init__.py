"""The Prefect flow that executes a plan: the runner, its entry points, the gate host, closing, recovery, deadlines, artifacts and the run log."""
