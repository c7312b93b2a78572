"""PyTorch's CPU batch norm in float32, bfloat16 and float16 on [64,128,56,56], the peer row of
docs/benchmarks.md#half-precision. Run: python3 bench/torch_half.py [threads] (default 2).
Medians of 15 calls: training forward (running statistics updated), eval, and the backward
of a training forward (autograd, dx + dgamma + dbeta). PyTorch allocates every output."""

import sys
import time

import torch
import torch.nn.functional as F


def median_ms(f, calls=15):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x32 = torch.randn(64, 128, 56, 56)
    print(f"torch {torch.__version__}, {threads} threads, [64,128,56,56] NCHW")
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = x32.to(dtype)
        weight, bias = torch.ones(128), torch.zeros(128)
        running_mean, running_var = torch.zeros(128), torch.ones(128)
        train = median_ms(lambda: F.batch_norm(x, running_mean, running_var, weight, bias, training=True))
        evaluate = median_ms(lambda: F.batch_norm(x, running_mean, running_var, weight, bias, training=False))
        xg, wg, bg = x.clone().requires_grad_(True), weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
        y = F.batch_norm(xg, None, None, wg, bg, training=True)
        dy = torch.randn_like(y)
        backward = median_ms(lambda: torch.autograd.grad(y, (xg, wg, bg), dy, retain_graph=True))
        print(f"{str(dtype):16} train {train:7.2f} ms  eval {evaluate:7.2f} ms  backward {backward:7.2f} ms")


if __name__ == "__main__":
    main()
