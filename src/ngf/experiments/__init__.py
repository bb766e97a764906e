"""Experiments a researcher runs: compare rules, sweep options, plot curves and layer norms.

The plan (every rule × grid point × dataset × seed, from options or a ``[plan]`` table), its
checks before the first run, running it in this process, in worker processes or on Ray (runs
that differ only in seed stacked), and reading the runs back into tables, figures and reports.
"""
