"""Experiments of the original scripts, each a driver over the core."""
