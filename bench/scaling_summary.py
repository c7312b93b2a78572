#!/usr/bin/env python3
"""The README's scaling table from one `bench/scaling.sh` run: batchnorm-bench's JSON beside
torch_scaling.py's (F.batch_norm, and the out= form where that ran), with issue 3's two
16-core targets checked on the largest thread count both measured.

    python3 bench/scaling_summary.py ours.json torch.json [torch-out.json]
"""

import json
import sys

# Issue 3, on 16 cores: >= 10x our own 1-thread time and >= 5x faster than PyTorch.
SELF_SPEEDUP = 10.0
OVER_TORCH = 5.0


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def by_threads(report):
    return {r["threads"]: r for r in report["rows"]} if report else {}


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    ours, torch = load(argv[0]), load(argv[1])
    torch_out = load(argv[2]) if len(argv) > 2 else None
    if not ours or not torch:
        sys.exit("scaling_summary.py: both batchnorm-bench and torch_scaling.py JSON are needed")
    mine, theirs, theirs_out = by_threads(ours), by_threads(torch), by_threads(torch_out)
    shape = "[" + ",".join(str(d) for d in ours["shape"]) + "]"
    print(f"{ours['op']} {ours['dtype']} {shape} axis {ours['axis']}, {ours['cpus']} CPUs "
          f"({ours['cpuModel']}), median of {ours['iters']}; {torch['tool']}\n")
    head = "| threads | batchnorm ms | speedup | x memcpy | PyTorch ms | speedup | PyTorch / batchnorm |"
    rule = "| ------: | -----------: | ------: | -------: | ---------: | ------: | ------------------: |"
    if theirs_out:
        head += " PyTorch out= ms |"
        rule += " --------------: |"
    print(head)
    print(rule)
    for t in sorted(mine):
        m, p = mine[t], theirs.get(t)
        cells = [str(t), f"{m['ms']:.3f}", f"{m['speedup']:.2f}", f"{m['fractionOfMemcpy']:.2f}"]
        cells += [f"{p['ms']:.3f}", f"{p['speedup']:.2f}", f"{p['ms'] / m['ms']:.1f}x"] if p else ["", "", ""]
        if theirs_out:
            q = theirs_out.get(t)
            cells.append(f"{q['ms']:.3f}" if q else "")
        print("| " + " | ".join(cells) + " |")
    both = sorted(set(mine) & set(theirs))
    if not both:
        return
    top = both[-1]
    speedup = mine[top]["speedup"]
    over = theirs[top]["ms"] / mine[top]["ms"]
    # The targets are for a 16-core machine: below 16 threads they are shown, not judged.
    mark = lambda ok: ("ok  " if ok else "MISS") if top >= 16 else "n/a "  # noqa: E731
    print()
    print(f"{mark(speedup >= SELF_SPEEDUP)} {top} threads: {speedup:.1f}x our 1-thread time (want >= {SELF_SPEEDUP:g}x)")
    print(f"{mark(over >= OVER_TORCH)} {top} threads: {over:.1f}x faster than PyTorch (want >= {OVER_TORCH:g}x)")


if __name__ == "__main__":
    main(sys.argv[1:])
