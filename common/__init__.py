"""Shared library of the surrogate-gradient SNN experiment suite."""
