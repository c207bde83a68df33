"""Scaling analysis for hscale results: pure functions apart from plot.py."""
