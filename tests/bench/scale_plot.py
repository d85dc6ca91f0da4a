# SPDX-License-Identifier: BSD-2-Clause
"""Draw the scale run's plot: scale_plot.py CURVES.json OUT.png

Left: start-up time against N on this machine, measured points on the
model's lines; right: the model on a cluster up to 1,000 nodes. Run by
bench_scale.py with Debian's python3, which has python3-matplotlib."""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, out):
    with open(src) as f:
        d = json.load(f)
    c = d["curves"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5))
    for i, s in enumerate(c["machine"]):
        col = f"C{i}"
        xs, ys = zip(*c["machine"][s])
        a1.plot(xs, ys, "-", color=col)
        if c["measured"].get(s):
            mx, my = zip(*c["measured"][s])
            a1.plot(mx, my, "o", color=col, label=s)
        xs, ys = zip(*c["cluster"][s])
        a2.plot(xs, ys, "-", color=col, label=s)
    a1.set(xscale="log", yscale="log", xlabel="nodes N", ylabel="start-up s (all nodes done)",
           title="this machine: measured (points), model (lines)")
    a2.set(xscale="log", yscale="log", xlabel="nodes N", ylabel="start-up s",
           title=f"model on a cluster, server {d['B'] / 1e6:.0f} MB/s")
    for a in (a1, a2):
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
