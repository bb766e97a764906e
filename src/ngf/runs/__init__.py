"""The run layer: a run's config, its folder and files, name resolution and the epoch loop,
checkpoints and resuming, divergence, stacked runs and the hooks that watch a run.

``ngf.core`` holds the learning machinery (rules, the network, feedback, the engine);
this package turns a ``RunConfig`` into a trained, recorded run (``ngf.runs.api.run``).
"""
