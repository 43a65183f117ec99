"""Acceleration methods: each is a Steering of the compute plan, registered by name in bench.harness.registry."""
