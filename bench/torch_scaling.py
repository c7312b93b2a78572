#!/usr/bin/env python3
"""PyTorch's CPU batch norm timed per thread count, printed in the same table as
`batchnorm-bench` (crates/batchnorm-bench) so the two can be read side by side.

    python3 bench/torch_scaling.py --shape 32,64,56,56 --axis 1 --op train \
        --dtype f32 --threads 1,2,4,8,16 --iters 50 [--json]

F.batch_norm is called as a user would (it allocates its output each call). Effective
GB/s = (bytes of x + bytes of y) / median time; backward counts x + dy + dx. The memcpy
column is `dst.copy_(x)` at the same thread count.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

EPS = 1e-5
MOMENTUM = 0.1


def int_list(text):
    return [int(v) for v in text.split(",")]


def parse_args(argv):
    cpus = os.cpu_count() or 1
    default_threads = [t for t in (1, 2, 4, 8, 16, 32, 64, 128) if t < cpus] + [cpus]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int_list, default=[32, 64, 56, 56])
    p.add_argument("--axis", type=int, default=1)
    p.add_argument("--op", choices=["train", "eval", "backward"], default="train")
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    p.add_argument("--threads", type=int_list, default=default_threads)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--out",
        action="store_true",
        help="train/eval: write into preallocated tensors (aten native_batch_norm.out) like "
        "batchnorm-bench does, instead of allocating y per call",
    )
    return p.parse_args(argv)


def median_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def make_call(args):
    """The op as a no-argument call, and the bytes it moves at least once."""
    dtype = torch.float32 if args.dtype == "f32" else torch.float64
    gen = torch.Generator().manual_seed(0)
    # Same memory order as our [outer, C, inner] view; torch wants channels at dim 1, so the
    # channel axis is moved there as a view (NHWC becomes a channels_last NCHW tensor).
    x = (torch.rand(args.shape, generator=gen, dtype=dtype) * 2 - 1).movedim(args.axis, 1)
    channels = x.shape[1]
    gamma = torch.rand(channels, generator=gen, dtype=dtype) * 2 - 1
    beta = torch.rand(channels, generator=gen, dtype=dtype) * 2 - 1
    running_mean = torch.zeros(channels, dtype=dtype)
    running_var = torch.ones(channels, dtype=dtype)
    nbytes = x.numel() * x.element_size()

    if args.op in ("train", "eval") and args.out:
        training = args.op == "train"
        y = torch.empty_like(x)
        save_mean = torch.empty(channels, dtype=dtype)
        save_invstd = torch.empty(channels, dtype=dtype)

        def call():
            torch.ops.aten.native_batch_norm.out(
                x, gamma, beta, running_mean, running_var, training, MOMENTUM, EPS,
                out=y, save_mean=save_mean, save_invstd=save_invstd,
            )

        try:
            call()
        except (NotImplementedError, RuntimeError) as e:
            sys.exit(f"torch_scaling.py: --out needs aten::native_batch_norm.out on CPU, which "
                     f"torch {torch.__version__} lacks ({str(e).splitlines()[0][:100]})")
        return x, call, 2 * nbytes
    if args.op == "train":

        def call():
            F.batch_norm(x, running_mean, running_var, gamma, beta, True, MOMENTUM, EPS)

        return x, call, 2 * nbytes
    if args.op == "eval":

        def call():
            F.batch_norm(x, running_mean, running_var, gamma, beta, False, MOMENTUM, EPS)

        return x, call, 2 * nbytes
    dy = (torch.rand(args.shape, generator=gen, dtype=dtype) * 2 - 1).movedim(args.axis, 1)
    _, save_mean, save_invstd = torch.ops.aten.native_batch_norm(
        x, gamma, beta, running_mean, running_var, True, MOMENTUM, EPS
    )

    def call():
        torch.ops.aten.native_batch_norm_backward(
            dy, x, gamma, running_mean, running_var, save_mean, save_invstd, True, EPS,
            [True, True, True],
        )

    return x, call, 3 * nbytes


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def measure(args):
    with torch.no_grad():
        x, call, nbytes = make_call(args)
        copy = torch.empty_like(x)
        copy_bytes = 2 * x.numel() * x.element_size()
        torch.set_num_threads(1)
        single_copy_ms = median_ms(lambda: copy.copy_(x), args.warmup, args.iters)
        rows = []
        for threads in args.threads:
            torch.set_num_threads(threads)
            ms = median_ms(call, args.warmup, args.iters)
            copy_ms = median_ms(lambda: copy.copy_(x), args.warmup, args.iters)
            rows.append({
                "threads": threads,
                "ms": ms,
                "gbPerS": nbytes / (ms * 1e6),
                "memcpyMs": copy_ms,
                "memcpyGbPerS": copy_bytes / (copy_ms * 1e6),
            })
    base = next((r for r in rows if r["threads"] == 1), rows[0])["ms"]
    for r in rows:
        r["fractionOfMemcpy"] = r["gbPerS"] / r["memcpyGbPerS"]
        r["speedup"] = base / r["ms"]
    return {
        "tool": f"torch {torch.__version__}" + (" (out=)" if args.out and args.op != "backward" else ""),
        "op": args.op,
        "dtype": args.dtype,
        "shape": args.shape,
        "axis": args.axis,
        "iters": args.iters,
        "bytesMoved": nbytes,
        "cpus": os.cpu_count(),
        "cpuModel": cpu_model(),
        "loadAverage": load_average(),
        "singleThreadMemcpy": {"ms": single_copy_ms, "gbPerS": copy_bytes / (single_copy_ms * 1e6)},
        "rows": rows,
    }


def table(report):
    shape = "[" + ",".join(str(d) for d in report["shape"]) + "]"
    model = f" ({report['cpuModel']})" if report["cpuModel"] else ""
    load = f" | load {report['loadAverage']:.2f}" if report["loadAverage"] is not None else ""
    copy = report["singleThreadMemcpy"]
    lines = [
        f"{report['tool']}: {report['op']} {report['dtype']} {shape} axis {report['axis']} | "
        f"{report['bytesMoved'] / 1e6:.1f} MB moved per call | median of {report['iters']} | "
        f"{report['cpus']} CPUs{model}{load}",
        f"memcpy, 1 thread (Tensor.copy_): {copy['ms']:.3f} ms = {copy['gbPerS']:.1f} GB/s",
        f"{'threads':>7} {'median ms':>10} {'GB/s':>8} {'memcpy GB/s':>12} {'x memcpy':>9} {'speedup':>8}",
    ]
    for r in report["rows"]:
        lines.append(
            f"{r['threads']:>7} {r['ms']:>10.3f} {r['gbPerS']:>8.1f} {r['memcpyGbPerS']:>12.1f} "
            f"{r['fractionOfMemcpy']:>9.2f} {r['speedup']:>8.2f}"
        )
    return "\n".join(lines)


def main(argv):
    args = parse_args(argv)
    if any(t < 1 for t in args.threads) or args.iters < 1:
        sys.exit("torch_scaling.py: --threads must be >= 1 and --iters >= 1")
    report = measure(args)
    print(json.dumps(report) if args.json else table(report))


if __name__ == "__main__":
    main(sys.argv[1:])
