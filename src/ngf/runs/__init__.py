"""The run layer: a run's config, its folder and files, name resolution and the epoch loop.

``ngf.core`` holds the learning machinery (rules, the network, feedback, the engine);
this package turns a ``RunConfig`` into a trained, recorded run (``ngf.runs.api.run``).
"""
