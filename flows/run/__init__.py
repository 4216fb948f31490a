"""Running a playbook on Prefect: the runner, the entry point, step context, records, journal, home, Prefect API."""
