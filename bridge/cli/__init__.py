"""The command line: run, worker, check-config (with --online), status, parked, reconcile, ..."""
