"""Benchmarks that print the figures of DESIGN.md: call counts and ratios, never seconds."""
