"""Experiments a researcher runs: compare rules, sweep options, plot curves and layer norms."""
