"""Simulator suites: each supplies tasks, init states, protocol constants and success semantics."""
