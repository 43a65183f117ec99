"""Executors: where episodes run. Local (in-process, the default: bench.runner) or Ray actors."""
