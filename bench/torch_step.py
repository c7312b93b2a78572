#!/usr/bin/env python3
"""PyTorch's side of the training-step bench (bench/step.ts runs it when torch imports):
nn.BatchNorm2d forward + backward, relu(bn(x) + z) forward, and the peak memory of a
20-step BatchNorm2d training loop, at the given shape and thread count.

    python3 bench/torch_step.py --shape 64,128,56,56 --channels-last 0 --threads 2 --iters 9

Prints one JSON object: medians in ms and the loop's peak RSS above what the caller holds
(x and dy allocated up front), in bytes.
"""

import argparse
import gc
import json
import resource
import statistics
import time

import torch
import torch.nn.functional as F


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def median_ms(step, iters):
    for _ in range(2):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", type=lambda s: [int(v) for v in s.split(",")], required=True)
    p.add_argument("--channels-last", type=int, default=0)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--iters", type=int, default=9)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    c = a.shape[1]
    x = torch.randn(a.shape).contiguous(memory_format=fmt).requires_grad_(True)
    z = torch.randn(a.shape).contiguous(memory_format=fmt)
    dy = torch.randn(a.shape).contiguous(memory_format=fmt)
    bn = torch.nn.BatchNorm2d(c)

    def layer_step():
        x.grad = None
        bn.zero_grad()
        bn(x).backward(dy)

    with torch.no_grad():
        plain = median_ms(lambda: bn(x), a.iters)
        residual = median_ms(lambda: F.relu(bn(x) + z), a.iters)
    step = median_ms(layer_step, a.iters)

    # The timing loops leave the last step's x.grad alive: drop it first, so that "before"
    # holds only x and dy (and the layer), as the Node side's does.
    x.grad = None
    bn.zero_grad()
    gc.collect()
    before = rss_bytes()
    peak = before
    for _ in range(20):
        x.grad = None
        bn.zero_grad()
        y = bn(x)
        peak = max(peak, rss_bytes())
        y.backward(dy)
        peak = max(peak, rss_bytes())
        del y
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": a.threads,
                "layerStepMs": step,
                "trainForwardMs": plain,
                "residualReluForwardMs": residual,
                "peakBytesAboveCaller": peak - before,
            }
        )
    )


if __name__ == "__main__":
    main()
