"""PyTorch eager contenders: the same mlp and LeNet-5 trained with bp, fa or dfa (and lra on the mlp).

The way one would write it by hand in PyTorch: a module, ``torch.optim.Adam``, and a
loop of forward, ``loss.backward()`` and ``step()``, with the data on the device and
batches drawn from a permutation there. Feedback alignment is a custom
``autograd.Function`` per layer whose backward sends the error through a fixed random
B instead of the forward weights; direct feedback alignment detaches every layer from
the one below and hands each hidden output e·Dᵀ from one ``autograd.Function`` at the
logits (docs/rules.md#fa, #dfa). Local representation alignment (docs/rules.md#lra, ngf's
``lra`` with its defaults: β = 0.1, E fixed, Glorot-normal) detaches every layer from the
one below, sets each hidden layer's target from the error of the layer above sent down
through its fixed random E, and adds the per-layer local losses ½‖z − y‖² to the
cross-entropy before one ``backward()``.

``one_run`` is one whole run as a process of its own (the ``throughput`` section): the
data read, the network built, one epoch trained and the test split evaluated.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time

import numpy as np

from benchmarks.common import Dataset, Settings, data_folders, load_data, read_idx

LRA_BETA = 0.1  # ngf's lra default (src/ngf/plugins/lra.py); E's scale 1 × Glorot's std, normal, as fa's B


def available() -> bool:
    return importlib.util.find_spec("torch") is not None


def device_name() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _define():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class FALinear(torch.autograd.Function):
        """y = x Wᵀ + b; backward sends δ through B, not W (Lillicrap et al. 2016)."""

        @staticmethod
        def forward(ctx, x, w, b, feedback):
            ctx.save_for_backward(x, feedback)
            return F.linear(x, w, b)

        @staticmethod
        def backward(ctx, g):
            x, feedback = ctx.saved_tensors
            gx = g @ feedback if ctx.needs_input_grad[0] else None
            return gx, g.t() @ x, g.sum(0), None

    class FAConv(torch.autograd.Function):
        """A convolution whose input gradient is the transposed convolution with B."""

        @staticmethod
        def forward(ctx, x, w, b, feedback, padding):
            ctx.save_for_backward(x, feedback)
            ctx.padding, ctx.w_shape = padding, w.shape
            return F.conv2d(x, w, b, padding=padding)

        @staticmethod
        def backward(ctx, g):
            x, feedback = ctx.saved_tensors
            gx = None
            if ctx.needs_input_grad[0]:
                gx = torch.nn.grad.conv2d_input(x.shape, feedback, g, padding=ctx.padding)
            gw = torch.nn.grad.conv2d_weight(x, ctx.w_shape, g, padding=ctx.padding)
            return gx, gw, g.sum((0, 2, 3)), None, None

    class DFAOutput(torch.autograd.Function):
        """Identity on the logits; backward gives each hidden output z^l the gradient e·D_lᵀ."""

        @staticmethod
        def forward(ctx, logits, feedback, *hidden):
            ctx.feedback, ctx.shapes = feedback, [h.shape for h in hidden]
            return logits.view_as(logits)

        @staticmethod
        def backward(ctx, e):
            return (e, None) + tuple((e @ d.t()).view(s) for d, s in zip(ctx.feedback, ctx.shapes))

    class Layer(nn.Module):
        """A dense or convolutional map a_l with its activation f_l, as in ngf's models."""

        def __init__(self, make, act, pool: bool, rule: str, padding: int = 0):
            super().__init__()
            self.map, self.act, self.pool, self.rule, self.padding = make, act, pool, rule, padding
            if rule in ("fa", "lra"):  # lra's E: the first layer's goes unused, as ngf gives node 1 none
                w = self.map.weight
                self.register_buffer("feedback", torch.randn_like(w) * math.sqrt(2.0 / sum(w.shape[:2])))

        def forward(self, z):
            m = self.map
            if isinstance(m, nn.Linear):
                z = z.flatten(1)
                h = FALinear.apply(z, m.weight, m.bias, self.feedback) if self.rule == "fa" else m(z)
            else:
                h = FAConv.apply(z, m.weight, m.bias, self.feedback, self.padding) if self.rule == "fa" else m(z)
            z = self.act(h)
            return F.max_pool2d(z, 2) if self.pool else z

    class Net(nn.Module):
        def __init__(self, layers, rule: str, hidden_sizes: list[int]):
            super().__init__()
            self.layers, self.rule = nn.ModuleList(layers), rule
            if rule == "dfa":
                for i, size in enumerate(hidden_sizes):
                    self.register_buffer(f"d{i}", torch.randn(size, 10) * math.sqrt(2.0 / (size + 10)))

        def forward(self, x):
            if self.rule != "dfa":
                for layer in self.layers:
                    x = layer(x)
                return x
            hidden = []
            for layer in self.layers[:-1]:  # every layer learns from e alone: cut the path below
                x = layer(x.detach())
                hidden.append(x)
            logits = self.layers[-1](x.detach())
            feedback = [getattr(self, f"d{i}") for i in range(len(hidden))]
            return DFAOutput.apply(logits, feedback, *hidden)

        def objective(self, x, y):
            """What ``backward()`` is called on: the cross-entropy, and for lra the local losses too."""
            if self.rule != "lra":
                return F.cross_entropy(self(x), y)
            pres, outs, z = [], [], x
            for layer in self.layers:  # every layer learns from its local loss alone: cut the path below
                pres.append(layer.map(z.detach().flatten(1)))
                z = layer.act(pres[-1])
                outs.append(z)
            loss = F.cross_entropy(pres[-1], y)
            with torch.no_grad():
                delta = torch.softmax(pres[-1], 1) - F.one_hot(y, pres[-1].shape[1])  # δ^L = e
                targets = [None] * len(outs)
                for l in range(len(outs) - 2, -1, -1):  # h̃ = h − β δ^{l+1} E_{l+1}, y = f(h̃)
                    targets[l] = self.layers[l].act(pres[l] - LRA_BETA * (delta @ self.layers[l + 1].feedback))
                    delta = (pres[l] > 0) * (outs[l] - targets[l])  # δ^l = f'(h)(z − y), f = relu
            for z, target in zip(outs[:-1], targets[:-1]):  # ∂/∂h of ½‖z − y‖²/B is δ^l/B, as ngf averages
                loss = loss + 0.5 * (z - target).square().sum() / len(y)
            return loss

    def mlp(rule, width):
        relu = torch.relu
        layers = [Layer(nn.Linear(784, width), relu, False, rule), Layer(nn.Linear(width, width), relu, False, rule),
                  Layer(nn.Linear(width, 10), lambda h: h, False, rule)]
        return Net(layers, rule, [width, width])

    def cnn(rule, width=None):
        if rule == "lra":
            raise ValueError("the PyTorch lra twin is written for the mlp only")
        relu = torch.relu
        layers = [Layer(nn.Conv2d(1, 6, 5, padding=2), relu, True, rule, 2),
                  Layer(nn.Conv2d(6, 16, 5), relu, True, rule, 0),
                  Layer(nn.Linear(400, 120), relu, False, rule), Layer(nn.Linear(120, 84), relu, False, rule),
                  Layer(nn.Linear(84, 10), lambda h: h, False, rule)]
        return Net(layers, rule, [6 * 14 * 14, 400, 120, 84])

    return {"mlp": mlp, "cnn": cnn}


_MODELS = None


def models():
    global _MODELS
    if _MODELS is None:
        _MODELS = _define()
    return _MODELS


def torch_contender(rule: str, model: str, data: Dataset, settings: Settings, threads: int | None = None,
                    seed: int = 0, keep: dict | None = None):
    """One PyTorch eager epoch per call, synchronised at its end by fetching the summed loss.

    ``threads``: PyTorch's intra-op threads on a CPU (default: ``settings.threads``, every core).
    ``keep``, if given, receives the network as ``keep["net"]``.
    """
    import torch
    threads = threads or settings.threads
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    device = device_name()
    net = models()[model](rule, settings.mlp_width).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    x = torch.as_tensor(data.x).permute(0, 3, 1, 2).contiguous().to(device)  # NCHW, uint8
    y = torch.as_tensor(data.y).long().to(device)
    batch, n_steps = settings.batch_size, len(data.x) // settings.batch_size
    generator = torch.Generator(device=device)
    if keep is not None:
        keep["net"] = net

    def epoch(i: int) -> None:
        torch.set_num_threads(threads)  # contenders of other thread counts share this process
        generator.manual_seed(seed * 1000 + i)
        perm = torch.randperm(len(x), device=device, generator=generator)
        total = torch.zeros((), device=device)
        for s in range(n_steps):
            rows = perm[s * batch:(s + 1) * batch]
            loss = net.objective(x[rows].float() / 255.0, y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        total.item()

    return epoch


def build(spec: str, data: Dataset, settings: Settings):
    """A contender from ``torch:RULE:MODEL``, or ``torch@N:RULE:MODEL`` for N threads."""
    framework, rule, model = spec.split(":")
    threads = framework.partition("@")[2]
    return torch_contender(rule, model, data, settings, int(threads) if threads else None)


def device_peak_bytes() -> int | None:
    import torch
    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None


def test_split(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The test images (uint8 NHWC) and labels: MNIST's t10k files, or 1000 random ones for ``synthetic``."""
    if kind == "synthetic":
        rng = np.random.default_rng(1)
        return rng.integers(0, 256, (1000, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 1000).astype(np.int32)
    for folder in data_folders(kind):
        found = [next((p for p in (folder / f"t10k-{part}-idx{d}-ubyte.gz", folder / f"t10k-{part}-idx{d}-ubyte")
                       if p.is_file()), None) for part, d in (("images", 3), ("labels", 1))]
        if all(found):
            x = read_idx(found[0])
            return x.reshape(x.shape + (1,) * (4 - x.ndim)), read_idx(found[1]).astype(np.int32)
    raise SystemExit(f"{kind}'s test split not found in {', '.join(map(str, data_folders(kind)))}")


def one_run(rule: str, model: str, data: str, examples: int, seed: int, threads: int, batch_size: int = 64,
            lr: float = 1e-3, mlp_width: int = 512) -> dict:
    """One whole run, as a process would do it: read the data, train one epoch, evaluate the test split.

    Prints (and returns) the test accuracy and the seconds spent in here.
    """
    import torch
    start = time.perf_counter()
    train = load_data(data, examples).take(examples)
    x_test, y_test = test_split(data)
    settings = Settings(data=data, batch_size=batch_size, lr=lr, mlp_width=mlp_width, threads=threads)
    keep: dict = {}
    torch_contender(rule, model, train, settings, threads, seed, keep)(0)
    net, correct = keep["net"], 0
    with torch.no_grad():
        x = torch.as_tensor(x_test).permute(0, 3, 1, 2).to(device_name())
        for s in range(0, len(x), 1000):
            logits = net(x[s:s + 1000].float() / 255.0)
            correct += int((logits.argmax(1).cpu() == torch.as_tensor(y_test[s:s + 1000]).long()).sum())
    found = {"rule": rule, "model": model, "seed": seed, "threads": threads,
             "test_accuracy": correct / len(x_test), "seconds_in_process": time.perf_counter() - start}
    print(json.dumps(found))
    return found
