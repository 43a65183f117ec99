"""vla-accel-bench: one harness to compare inference acceleration methods for VLA policies."""

__version__ = "0.1.0"
