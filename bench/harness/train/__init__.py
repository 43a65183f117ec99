"""Training: LAC's two stages (lac.py)."""
