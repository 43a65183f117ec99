"""Scripted-expert demonstrations: rollouts, the LIBERO HDF5 layout, generation and the expert sweep."""
