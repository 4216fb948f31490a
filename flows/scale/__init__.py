"""Scale-out on Prefect: deployments, workers, crash detection of runs handed to a pool."""
