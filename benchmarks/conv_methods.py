"""LeNet-5's two convolutions on this backend, by each of ngf's conv methods (docs/benchmarks.md).

    python -m benchmarks.conv_methods [--rounds 5] [--calls 200]

Times, interleaved round by round, the forward pass and the forward pass with both
gradients of ``ngf.models.conv.convolve`` for xla (``lax.conv_general_dilated``),
patches (im2col) and shifts (shifted matmuls), at batch 64. Whole training epochs
with each method are the ``paths`` section's ``ngf@patches`` row.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

from ngf.models.conv import CONV_METHODS, convolve

# (name, input [N, H, W, C], kernel HWIO, padding): LeNet-5's first and second convolutions
CASES = (("conv1 1→6 5×5 SAME", (64, 28, 28, 1), (5, 5, 1, 6), "SAME"),
         ("conv2 6→16 5×5 VALID", (64, 14, 14, 6), (5, 5, 6, 16), "VALID"))


def programs(shape, kernel_shape, padding, method):
    """Jitted forward, and forward with the vjps for the input and the kernel."""
    def forward(x, k):
        return convolve(x, k, 1, padding, method)

    def with_grads(x, k, g):
        out, pullback = jax.vjp(forward, x, k)
        return out, pullback(g)

    return jax.jit(forward), jax.jit(with_grads)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"{jax.default_backend()}, jax {jax.__version__}; median ms per call over {args.rounds} rounds")
    for name, shape, kernel_shape, padding in CASES:
        keys = jax.random.split(jax.random.key(0), 3)
        x, k = jax.random.normal(keys[0], shape), jax.random.normal(keys[1], kernel_shape)
        g = jax.random.normal(keys[2], jax.eval_shape(lambda: convolve(x, k, 1, padding)).shape)
        runs = {}
        for method in CONV_METHODS:
            forward, with_grads = programs(shape, kernel_shape, padding, method)
            runs[f"{method} forward"] = (forward, (x, k))
            runs[f"{method} forward+grads"] = (with_grads, (x, k, g))
        times = {label: [] for label in runs}
        for fn, fn_args in runs.values():
            jax.block_until_ready(fn(*fn_args))  # compile
        for _ in range(args.rounds):
            for label, (fn, fn_args) in runs.items():
                start = time.perf_counter()
                for _ in range(args.calls):
                    out = fn(*fn_args)
                jax.block_until_ready(out)
                times[label].append((time.perf_counter() - start) / args.calls * 1e3)
        print(f"\n{name}")
        for label, values in times.items():
            print(f"  {label:24s} {statistics.median(values):7.3f} ms")


if __name__ == "__main__":
    main()
