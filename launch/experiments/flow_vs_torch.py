#!/usr/bin/python3
"""flow_vs_torch.py - larch's normalizing flow (docs/flows.md) against an
equivalent PyTorch model, written here from the layer definitions in
src/nn/flow.c (channels-last (n, h, w, c) tensors as larch keeps them).

check: loads the weights of a larch checkpoint (h5py), takes the batch and
the dequantization noise larch used (launch/experiments/flow_dump.c dumps the
input, the dequantized input, z, per-sample bits/dim and every parameter's
gradient of the batch-mean loss after one training-mode pass), recomputes
them by autograd and prints the worst relative differences:

    cc -O2 -Iinclude launch/experiments/flow_dump.c -Lbuild -llarch -Wl,-rpath,$PWD/build -o build/flow_dump
    build/flow_dump CONFIG CKPT DUMP_DIR 16 0
    /usr/bin/python3 launch/experiments/flow_vs_torch.py check CONFIG CKPT DUMP_DIR

train: trains the same model in PyTorch on Fashion-MNIST with the config's
recipe (Adam, lr, batch, linear warmup + cosine over STEPS, optim.clip_norm,
actnorm data-dependent init on the first batch; its own shuffling and noise)
and prints the training loss and gradient norm every LOG steps and the test
bits/dim at the end, for comparing curves with
`larch train CONFIG --set train.max_steps=STEPS --set train.epochs=2`:

    /usr/bin/python3 launch/experiments/flow_vs_torch.py train CONFIG STEPS [--log 50] [--test 10000]
        [--logit ALPHA] [--clip NORM] [--lr LR] [--hidden H] [--seed S]   (overrides of the config)
"""
import argparse
import gzip
import math
import os
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import yaml

LOG2PI = math.log(2 * math.pi)


def conv3(x, w, b):
    """3x3 'same' convolution, x (n, h, w, cin) channels-last, w (cout, 3, 3, cin) as larch stores it."""
    y = F.conv2d(x.permute(0, 3, 1, 2), w.permute(0, 3, 1, 2), b, padding=1)
    return y.permute(0, 2, 3, 1)


class Layer(torch.nn.Module):
    def __init__(self, spec, shape):
        super().__init__()
        self.type, self.lname = spec["type"], spec["name"]
        h, w, c = shape
        self.in_shape = shape
        t = self.type
        if t == "dequantize":
            self.levels = int(spec.get("levels", 256))
            self.logit = float(spec.get("logit", 0))
            self.out_shape = shape
        elif t == "squeeze":
            self.out_shape = (h // 2, w // 2, 4 * c)
        elif t == "actnorm":
            self.logs = torch.nn.Parameter(torch.zeros(c))
            self.bias = torch.nn.Parameter(torch.zeros(c))
            self.initialized = False
            self.out_shape = shape
        elif t == "invconv":
            q = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))[0]
            P, Lo, U = torch.linalg.lu(q)  # q = P Lo U
            d = torch.diagonal(U)
            self.lower = torch.nn.Parameter(torch.tril(Lo, -1).float())
            self.upper = torch.nn.Parameter(torch.triu(U, 1).float())
            self.logs_ic = torch.nn.Parameter(torch.log(d.abs()).float())
            self.register_buffer("sign", torch.sign(d).float())
            # W = P L U: row i of W is row perm[i] of L U
            self.register_buffer("perm", torch.argmax(P, dim=1).float())
            self.out_shape = shape
        elif t == "coupling":
            hid = int(spec.get("hidden", 64))
            ca, cb = c // 2, c - c // 2
            self.ca, self.cb = ca, cb
            self.weight1 = torch.nn.Parameter(torch.randn(hid, 3, 3, ca) * math.sqrt(2.0 / (9 * ca)))
            self.bias1 = torch.nn.Parameter(torch.zeros(hid))
            self.weight2 = torch.nn.Parameter(torch.zeros(2 * cb, 3, 3, hid))
            self.bias2 = torch.nn.Parameter(torch.zeros(2 * cb))
            self.out_shape = shape
        elif t == "split":
            ca, cb = c // 2, c - c // 2
            self.ca, self.cb = ca, cb
            self.weight = torch.nn.Parameter(torch.zeros(2 * cb, 3, 3, ca))
            self.bias = torch.nn.Parameter(torch.zeros(2 * cb))
            self.out_shape = (h, w, ca)
        else:
            raise ValueError(f"layer type {t} is not a flow layer")

    def params_by_larch_name(self):
        t = self.type
        if t == "actnorm":
            return {"logs": self.logs, "bias": self.bias}
        if t == "invconv":
            return {"lower": self.lower, "upper": self.upper, "logs": self.logs_ic}
        if t == "coupling":
            return {"weight1": self.weight1, "bias1": self.bias1, "weight2": self.weight2, "bias2": self.bias2}
        if t == "split":
            return {"weight": self.weight, "bias": self.bias}
        return {}

    def forward(self, x, noise=None):
        """Returns (y, per-sample logdet)."""
        n = x.shape[0]
        h, w, c = self.in_shape
        t = self.type
        zero = torch.zeros(n, dtype=x.dtype)
        if t == "dequantize":
            lv = float(self.levels)
            k = torch.clamp(torch.floor(x * (lv - 1) + 0.5), 0, lv - 1)
            u = torch.rand_like(x) if noise is None else noise
            if self.logit <= 0:
                return (k + u) / lv - 0.5, zero - h * w * c * math.log(lv)
            a = self.logit   # y = logit(a + (1 - 2 a) v), v = (k + u) / levels
            q = a + (1 - 2 * a) * (k + u) / lv
            y = torch.log(q) - torch.log1p(-q)
            ld = (math.log(1 - 2 * a) - torch.log(q) - torch.log1p(-q)).reshape(n, -1).sum(1)
            return y, ld - h * w * c * math.log(lv)
        if t == "squeeze":
            y = x.reshape(n, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(n, h // 2, w // 2, 4 * c)
            return y, zero
        if t == "actnorm":
            if not self.initialized and self.training:
                with torch.no_grad():
                    v = x.reshape(-1, c).double()
                    mean, var = v.mean(0), (v * v).mean(0) - v.mean(0) ** 2
                    ls = -0.5 * torch.log(var.clamp(min=0) + 1e-6)
                    self.logs.copy_(ls.float())
                    self.bias.copy_((-mean * torch.exp(ls)).float())
                self.initialized = True
            return x * torch.exp(self.logs) + self.bias, zero + h * w * self.logs.sum()
        if t == "invconv":
            Lm = torch.tril(self.lower, -1) + torch.eye(c)
            Um = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.logs_ic))
            W = (Lm @ Um)[self.perm.long()]
            return x @ W.t(), zero + h * w * self.logs_ic.sum()
        if t == "coupling":
            xa, xb = x[..., : self.ca], x[..., self.ca:]
            hh = F.relu(conv3(xa, self.weight1, self.bias1))
            o = conv3(hh, self.weight2, self.bias2)
            tt, r = o[..., : self.cb], o[..., self.cb:]
            ls = F.logsigmoid(r + 2.0)
            yb = (xb + tt) * torch.exp(ls)
            return torch.cat([xa, yb], -1), ls.reshape(n, -1).sum(1)
        if t == "split":
            xa, xb = x[..., : self.ca], x[..., self.ca:]
            o = conv3(xa, self.weight, self.bias)
            mean, ls = o[..., : self.cb], o[..., self.cb:]
            e = (xb - mean) * torch.exp(-ls)
            lp = (-0.5 * LOG2PI - ls - 0.5 * e * e).reshape(n, -1).sum(1)
            return xa, lp
        raise AssertionError


class Flow(torch.nn.Module):
    def __init__(self, cfg, in_shape):
        super().__init__()
        layers, shape = [], in_shape
        for spec in cfg["model"]:
            L = Layer(spec, shape)
            layers.append(L)
            shape = L.out_shape
        self.layers = torch.nn.ModuleList(layers)
        self.D = in_shape[0] * in_shape[1] * in_shape[2]

    def forward(self, x, noise=None):
        """Per-sample bits/dim (the flow_nll loss of each sample), z and the dequantized input."""
        ld = torch.zeros(x.shape[0], dtype=x.dtype)
        deq = None
        for L in self.layers:
            x, l = L(x, noise) if L.type == "dequantize" else L(x)
            if L.type == "dequantize":
                deq = x
            ld = ld + l
        z = x.reshape(x.shape[0], -1)
        nll = 0.5 * (z * z).sum(1) + 0.5 * z.shape[1] * LOG2PI - ld
        return nll / (self.D * math.log(2.0)), x, deq

    def named_larch_params(self):
        for L in self.layers:
            for k, p in L.params_by_larch_name().items():
                yield f"{L.lname}.{k}", p

    def load_larch(self, path):
        with h5py.File(path, "r") as f:
            for L in self.layers:
                for k, p in L.params_by_larch_name().items():
                    a = torch.from_numpy(np.array(f[f"params/{L.lname}/{k}"], dtype=np.float32))
                    assert a.shape == p.shape, (L.lname, k, a.shape, p.shape)
                    p.data.copy_(a)
                if L.type == "invconv":
                    L.perm.copy_(torch.from_numpy(np.array(f[f"buffers/{L.lname}/perm"], dtype=np.float32)))
                    L.sign.copy_(torch.from_numpy(np.array(f[f"buffers/{L.lname}/sign"], dtype=np.float32)))
                if L.type == "actnorm":
                    L.initialized = float(np.array(f[f"buffers/{L.lname}/initialized"])[0]) != 0


def load_cfg(path):
    with open(path) as f:
        return yaml.safe_load(f)


def read_dump(d):
    out = {}
    with open(os.path.join(d, "manifest.txt")) as f:
        for line in f:
            name, n = line.split()
            out[name] = np.fromfile(os.path.join(d, name + ".f32"), dtype="<f4")
            assert out[name].size == int(n)
    return out


def rel(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def cmd_check(a):
    cfg = load_cfg(a.config)
    dump = read_dump(a.dump)
    shape = (28, 28, 1)
    model = Flow(cfg, shape)
    model.load_larch(a.checkpoint)
    model.train()
    n = dump["bpd"].size
    x = torch.from_numpy(dump["x"].reshape(n, *shape))
    # the same noise: u = v * levels - k, v = y + 0.5 (or with the logit transform
    # v = (sigmoid(y) - alpha) / (1 - 2 alpha)), from larch's dequantized input y
    dq = model.layers[0]
    lv, al = float(dq.levels), dq.logit
    k = torch.clamp(torch.floor(x * (lv - 1) + 0.5), 0, lv - 1)
    deq_l = torch.from_numpy(dump["deq"].reshape(n, *shape)).double()
    v = (torch.sigmoid(deq_l) - al) / (1 - 2 * al) if al > 0 else deq_l + 0.5
    u = (v * lv - k.double()).clamp(0, 1 - 1e-9)
    print(f"noise recovered from larch's dequantized input: min {u.min().item():.4f} max {u.max().item():.4f}")
    if a.double:
        model.double()
    bpd, z, deq = model(x.double() if a.double else x, u if a.double else u.float())
    loss = bpd.mean()
    loss.backward()
    rows = [("dequantized input", rel(dump["deq"], deq.detach().numpy())),
            ("z", rel(dump["z"], z.detach().numpy())),
            ("per-sample bits/dim", rel(dump["bpd"], bpd.detach().numpy())),
            ("batch loss", rel(dump["loss"], loss.detach().numpy()))]
    print(f"loss: larch {dump['loss'][0]:.6f}  torch {loss.item():.6f} bits/dim")
    worst = 0.0
    for name, p in model.named_larch_params():
        g = p.grad.detach().numpy()
        r = rel(dump["grad." + name], g)
        rows.append((f"grad {name}", r))
        worst = max(worst, r)
    for name, r in rows:
        print(f"  {name:28s} max |larch - torch| / max |torch| = {r:.2e}")
    print(f"worst gradient relative difference {worst:.2e}")
    return 0 if worst < a.tol and rows[2][1] < a.tol else 1


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def fmnist(d, train):
    base = "train-images-idx3-ubyte" if train else "t10k-images-idx3-ubyte"
    p = os.path.join(d, base + ".gz")
    return read_idx(p if os.path.exists(p) else os.path.join(d, base))


def cmd_train(a):
    cfg = load_cfg(a.config)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(a.threads)
    d = cfg["data"]["dir"]
    tr = torch.from_numpy(fmnist(d, True).astype(np.float32) / 255.0).reshape(-1, 28, 28, 1)
    te = torch.from_numpy(fmnist(d, False).astype(np.float32) / 255.0).reshape(-1, 28, 28, 1)[: a.test]
    for spec in cfg["model"]:
        if spec["type"] == "dequantize" and a.logit is not None:
            spec["logit"] = a.logit
        if spec["type"] == "coupling" and a.hidden:
            spec["hidden"] = a.hidden
    model = Flow(cfg, (28, 28, 1))
    B = int(cfg["train"]["batch_size"])
    lr = float(a.lr if a.lr else cfg["optim"]["lr"])
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    steps_per_epoch = tr.shape[0] // B
    warm = int(round(float(cfg.get("sched", {}).get("warmup_epochs", 0)) * steps_per_epoch))
    total = a.steps

    def lr_at(s):   # linear warmup then cosine to 0 over the run
        if s < warm:
            return lr * (s + 1) / warm
        return lr * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))

    perm = torch.randperm(tr.shape[0])
    gmax = 0.0
    if a.clip is None:
        a.clip = float(cfg["optim"].get("clip_norm", 0))
    t0 = time.time()
    model.train()
    for s in range(total):
        idx = perm[(s * B) % (steps_per_epoch * B):][:B]
        for g in opt.param_groups:
            g["lr"] = lr_at(s)
        bpd, _, _ = model(tr[idx])
        loss = bpd.mean()
        opt.zero_grad()
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip if a.clip > 0 else float("inf")).item()
        gmax = max(gmax, gn)
        opt.step()
        if (s + 1) % a.log == 0 or s == 0:
            print(f"torch step {s + 1}/{total} loss {loss.item():.4f} lr {lr_at(s):.3g} grad norm {gn:.3g} "
                  f"(max since last {gmax:.3g}) ({time.time() - t0:.0f} s)", flush=True)
            gmax = 0.0
    model.eval()
    with torch.no_grad():
        tot = 0.0
        for i in range(0, te.shape[0], 500):
            bpd, _, _ = model(te[i: i + 500])
            tot += bpd.sum().item()
    print(f"torch test bits/dim {tot / te.shape[0]:.4f} ({te.shape[0]} images) after {total} steps, "
          f"{time.time() - t0:.0f} s")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("config")
    c.add_argument("checkpoint")
    c.add_argument("dump")
    c.add_argument("--tol", type=float, default=1e-3)
    c.add_argument("--double", action="store_true", help="compute in float64 (the reference)")
    t = sub.add_parser("train")
    t.add_argument("config")
    t.add_argument("steps", type=int)
    t.add_argument("--log", type=int, default=50)
    t.add_argument("--test", type=int, default=10000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--lr", type=float, default=0)
    t.add_argument("--clip", type=float, default=None, help="clip the gradient's global norm (0: off; default: the config's optim.clip_norm)")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--logit", type=float, default=None, help="dequantize's logit alpha (0: off; default: the config's)")
    t.add_argument("--hidden", type=int, default=0, help="every coupling's hidden channels (0: the config's)")
    a = ap.parse_args()
    return cmd_check(a) if a.cmd == "check" else cmd_train(a)


if __name__ == "__main__":
    sys.exit(main())
