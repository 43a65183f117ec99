"""Measurement: MAC/FLOP accounting from executed shapes, timing regions."""
