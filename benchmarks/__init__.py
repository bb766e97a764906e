"""ngf's benchmark suite: ``python -m benchmarks`` (docs/benchmarks.md).

Every number it reports is a ratio of medians measured side by side in one process
(contenders interleaved epoch by epoch after a warm-up), so that load from elsewhere
on a shared machine hits both sides of a ratio alike. Sections: ``handwritten`` (ngf
bp against a plain JAX + optax loop), ``rules`` (each rule against ngf bp), ``torch``
(ngf against PyTorch eager for bp, fa and dfa), ``memory`` (peak memory, one process
per contender) and ``scaling`` (time per epoch against width and batch, beside FLOPs).
"""
