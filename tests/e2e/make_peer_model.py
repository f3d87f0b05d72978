#!/usr/bin/env python3
"""Write a random ref-realnvp model in the peer's JSON export format (bench/SPEC.md section 5).

Usage: make_peer_model.py OUT.json [--dims D] [--hidden H] [--blocks K] [--seed S] [--scale F]

Weights are uniform in +-scale/sqrt(fan_in) (PyTorch's nn.Linear init, last layer included),
rounded to float32 values; block k >= 1 gets a random permutation. Standard library only:
the end-to-end tests build their models with it and `flowscore import --peer-json`.
"""
import argparse
import json
import random
import struct


def f32(x):
    """The nearest float32 value, as a Python float (exact in JSON)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def linear(rng, n_out, n_in, scale):
    bound = scale / (n_in ** 0.5)
    w = [[f32(rng.uniform(-bound, bound)) for _ in range(n_in)] for _ in range(n_out)]
    b = [f32(rng.uniform(-bound, bound)) for _ in range(n_out)]
    return {"W": w, "b": b}


def make(dims, hidden, blocks, seed, scale):
    rng = random.Random(seed)
    d1 = dims // 2
    d2 = dims - d1
    out = {"model": "ref-realnvp", "D": dims, "H": hidden, "K": blocks, "d1": d1, "d2": d2,
           "clamp": 2.0, "init": "random seed=%d scale=%g" % (seed, scale), "blocks": []}
    for k in range(blocks):
        perm = None
        if k >= 1:
            perm = list(range(dims))
            rng.shuffle(perm)
        out["blocks"].append({"perm": perm, "layers": [
            linear(rng, hidden, d1, scale),
            linear(rng, hidden, hidden, scale),
            linear(rng, 2 * d2, hidden, scale),
        ]})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--dims", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", type=float, default=0.5)
    a = ap.parse_args()
    with open(a.out, "w") as f:
        json.dump(make(a.dims, a.hidden, a.blocks, a.seed, a.scale), f)


if __name__ == "__main__":
    main()
