"""Evidence: the hash-chained audit log, incident reports and drill scorecards."""
