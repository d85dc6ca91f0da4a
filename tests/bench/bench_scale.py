# SPDX-License-Identifier: BSD-2-Clause
"""bench.py scale: N simulated nodes starting against one shared file system.

    bench.py scale [--smoke] [-C BUILDDIR] [--workdir DIR] [--ns 1,2,4] ...

A node is its own mount of the stand-in (sqvbench-latfs) of the shared data
directory, its own daemon on it, and its own replay (sqvbench-replay) of the
read trace of a real cold import, checked against the source venv. All the
stand-in mounts of one cell share one server (-o server=, a file in
/dev/shm): a per-request delay, an aggregate bandwidth, a limit on requests
in service, and counters of what it served. Each strategy runs for each N;
the run writes the table, the model's fitted parameters and a plot
(results-scale-*.{json,md,png} in the work directory). docs/scaling.md
describes the model and holds the results of one named run.

--smoke: the tiny venv, N = 1 and 2; exits 1 when a cell or a measurement is
missing. It is the meson test 'bench-scale-smoke' (suite bench).
"""

import argparse
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import bench
import reclaim
from sqvtest import pids_naming

# The simulated server. The per-request delays are the stand-in's of the
# main bench (docs/performance.md); clients keep entries, attributes and data
# in their caches (timeout, keep_data_cache) as a Lustre client holding its
# locks does, so each node asks the server for each thing once. The aggregate
# bandwidth is low enough that the server, not this machine, is the limit.
SERVER = dict(meta_delay_us=1000, read_delay_us=1000, read_bw_mbps=1000,
              server_bw_mbps=100, server_conc=16, timeout=86400)
FULL_NS = (1, 2, 4, 8, 16, 32)
SMOKE_NS = (1, 2)
# (name, what each node mounts; None: the venv directory itself)
STRATEGIES = ("dir", "squashfuse_ll", "sqvenvfs", "sqvenvfs hot", "staged", "broadcast")
# Broadcast tree fan-out of the simulation (each node forwards to this
# many), sbcast's largest (sbcast(1), --fanout).
FANOUT = 8

log = bench.log


class Cell:
    """One strategy at one N: the nodes' mounts and what they measured."""

    def __init__(self, ctx, strategy, n):
        self.ctx, self.strategy, self.n = ctx, strategy, n
        tag = strategy.replace(" ", "-")
        self.base = os.path.join(ctx.scale_dir, f"{tag}-{n}")
        self.server = f"/dev/shm/sqvbench-scale-{os.getpid()}-{tag}-{n}"
        self.local = os.path.join(ctx.local_root, f"{tag}-{n}")
        self.fs_mnts, self.daemon_mnts = [], []
        self.pids = set()

    def fs(self, i):
        return os.path.join(self.base, f"node{i}", "fs")

    def mnt(self, i):
        return os.path.join(self.base, f"node{i}", "venv")

    def mount_standins(self):
        o = dict(SERVER, **self.ctx.server_over)
        opts = ",".join(f"{k}={v}" for k, v in o.items()) + f",keep_data_cache,server={self.server}"
        for i in range(self.n):
            m = self.fs(i)
            os.makedirs(m, exist_ok=True)
            bench.run([self.ctx.latfs, "-o", opts, self.ctx.shared, m])
            self.fs_mnts.append(m)
            wait_mounted(m)
            self.pids |= pids_naming(m)

    def server_stats(self):
        text = os.getxattr(self.fs(0), "user.latfs.server").decode()
        return {k: int(v) for k, v in (ln.split() for ln in text.splitlines())}

    def mount_daemon(self, i, img):
        m = self.mnt(i)
        os.makedirs(m, exist_ok=True)
        if self.strategy == "squashfuse_ll":
            cmd = ["squashfuse_ll", img, m]
        else:
            cmd = [self.ctx.sqvenvfs, img, m]
        bench.run(cmd, timeout=120)
        self.daemon_mnts.append(m)
        wait_mounted(m)
        return m

    def replay(self, root):
        # A hung mount must not hang the run: a node gets 15 minutes.
        r = bench.run([self.ctx.replay, "--check", self.ctx.hashes, self.ctx.trace, root],
                      timeout=900)
        got = dict(ln.split() for ln in r.stdout.splitlines())
        if int(got["files"]) != self.ctx.trace_files:
            raise bench.BenchError(f"replay read {got['files']} files, not {self.ctx.trace_files}")
        return int(got["bytes"])

    def cpu_s(self):
        """CPU time of the cell's daemons, stand-ins included (before they exit)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(") ", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError):
                pass
        return total / tick

    def down(self):
        for m in reversed(self.daemon_mnts):
            r = bench.run(["fusermount3", "-u", m], check=False)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
        for m in reversed(self.fs_mnts):
            r = bench.run(["fusermount3", "-u", m], check=False)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
        self.daemon_mnts, self.fs_mnts = [], []
        shutil.rmtree(self.local, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)
        try:
            os.unlink(self.server)
        except FileNotFoundError:
            pass


def wait_mounted(m, timeout=30):
    """A mount is usable once its root is another device than its parent's."""
    parent = os.stat(os.path.dirname(m)).st_dev
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.stat(m).st_dev != parent:
                return
        except OSError:
            pass
        time.sleep(0.002)
    raise bench.BenchError(f"{m}: not mounted after {timeout} s")


def parallel(fns):
    """Run fns at once; their results, or the first error raised."""
    out, errs = [None] * len(fns), []

    def one(i, fn):
        try:
            out[i] = fn()
        except Exception as e:  # reported below, with the node
            errs.append(f"node {i}: {e}")
    threads = [threading.Thread(target=one, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errs:
        raise bench.BenchError(errs[0])
    return out


def run_cell(ctx, strategy, n):
    c = Cell(ctx, strategy, n)
    res = {"strategy": strategy, "n": n}
    hot = os.path.basename(ctx.hot_img)
    try:
        c.mount_standins()
        before = c.server_stats()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        rs0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()

        def node(i, img=None):
            """One node from mount to the end of its replay; its finish time."""
            if strategy == "dir":
                c.replay(os.path.join(c.fs(i), "venv"))
                return (time.perf_counter() - t0, 0.0, 0.0)
            if strategy == "staged":
                # What the Slurm staging does: a full copy to node-local storage.
                d = os.path.join(c.local, f"node{i}")
                os.makedirs(d, exist_ok=True)
                img = os.path.join(d, hot)
                shutil.copyfile(os.path.join(c.fs(i), hot), img)
            elif img is None:
                img = os.path.join(c.fs(i), {"squashfuse_ll": "venv.sqfs", "sqvenvfs": "venv.sqfs",
                                             "sqvenvfs hot": hot}[strategy])
            ready = time.perf_counter() - t0  # copied, if staged
            m = c.mount_daemon(i, img)
            mounted = time.perf_counter() - t0
            c.pids |= pids_naming(m)
            c.replay(m)
            return (time.perf_counter() - t0, ready, mounted)

        if strategy == "broadcast":
            # sbcast: the image read once from the server, then forwarded
            # down a tree of nodes (each to FANOUT others), then mounted.
            copies = [os.path.join(c.local, f"node{i}", hot) for i in range(n)]
            for p in copies:
                os.makedirs(os.path.dirname(p), exist_ok=True)
            shutil.copyfile(os.path.join(c.fs(0), hot), copies[0])
            res["read_once_s"] = time.perf_counter() - t0
            have = 1
            while have < n:
                pairs = [(copies[src], copies[dst]) for src in range(have)
                         for dst in range(have + src * FANOUT, min(n, have + (src + 1) * FANOUT))]
                parallel([lambda s=s, d=d: shutil.copyfile(s, d) for s, d in pairs])
                have = min(n, have * (FANOUT + 1))
            res["fanout_s"] = time.perf_counter() - t0 - res["read_once_s"]
            times = parallel([lambda i=i: node(i, copies[i]) for i in range(n)])
        else:
            times = parallel([lambda i=i: node(i) for i in range(n)])
        res["t_s"] = time.perf_counter() - t0
        # Per node: when it had its image (copied), was mounted, was done.
        res["node_s"] = sorted(t for t, _, _ in times)
        res["node_ready_s"] = sorted(r for _, r, _ in times)
        res["node_mounted_s"] = sorted(m for _, _, m in times)
        after = c.server_stats()
        # Each mount's own count of the reads it served: their sum must be
        # the server's (one server shared by all the mounts).
        # A readahead the kernel started may still be in flight (the server
        # counts a read when it starts, a mount when it ends): let it land.
        deadline = time.monotonic() + 5
        while True:
            res["mount_reads_sum"] = sum(bench.latfs_reads(c.fs(i)) or 0 for i in range(n))
            after = c.server_stats()
            if res["mount_reads_sum"] == after["read_requests"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        res["server"] = {k: after[k] - before.get(k, 0) for k in after
                         if k not in ("conc", "bw_mbps")}
        if strategy.startswith("sqvenvfs"):
            res["sqvenvfs_stats"] = bench.sqv_stats(ctx.sqvenvfs, c.mnt(0))
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        rs1 = resource.getrusage(resource.RUSAGE_SELF)
        res["cpu_s"] = (c.cpu_s() + ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
                        + rs1.ru_utime + rs1.ru_stime - rs0.ru_utime - rs0.ru_stime)
        res["load_1min"] = float(open("/proc/loadavg").read().split()[0])
    except (bench.BenchError, OSError) as e:
        res["error"] = str(e)
        log(f"scale: {strategy} N={n}: {e}")
    finally:
        c.down()
    return res


# ---------------------------------------------------------------- the model

def workload(cells, strategy):
    """Per-node requests R and bytes D the server served, the time T1 of the
    smallest N alone and its CPU per node: from the smallest N measured."""
    ok = [c for c in cells if c["strategy"] == strategy and "t_s" in c]
    if not ok:
        return None
    c = min(ok, key=lambda c: c["n"])
    s = c["server"]
    w = {"s": strategy, "R": (s["meta_requests"] + s["read_requests"]) / c["n"],
         "D": s["read_bytes"] / c["n"], "per_node": True, "cpu": c["cpu_s"] / c["n"],
         "t1": c["t_s"], "n1": c["n"]}
    if strategy == "broadcast":
        # The server's load is the one read, whatever N; what follows the
        # read (forwarding, mounting the local copy, the replay) is local.
        w.update(per_node=False, R=w["R"] * c["n"], D=w["D"] * c["n"],
                 t_read=c["read_once_s"], t_local=c["t_s"] - c["read_once_s"] - c["fanout_s"])
    return w


def softmax(k, *xs):
    return sum(x ** k for x in xs) ** (1 / k)


def predict(p, w, n, S):
    """Start-up time of N simulated nodes on this machine (docs/scaling.md).

    The time of one node alone (T1) and the times the shared resources need
    for all N nodes combine in a soft maximum of exponent k: the server's
    bandwidth (N·D/B), its request throughput (N·R·L/C) and this two-core
    machine's CPU (N·cpu/cores). A broadcast reads the image once, every
    added node costs one local copy (S/B_copy: on this machine all copies
    share one memory and two cores), then the nodes mount and replay."""
    k, t1 = p["k"], w["t1"] * p["t1f"].get(w["s"], 1.0)
    cpu = n * w["cpu"] / p["cores"]
    if not w["per_node"]:
        t_local = w["t_local"] * p["t1f"].get(w["s"], 1.0)
        return w["t_read"] + (n - 1) * S / p["B_copy"] + softmax(k, t_local, cpu)
    return softmax(k, t1, n * w["D"] / p["B"], n * w["R"] * p["L"] / p["C"], cpu)


def fit(cells, S, cores):
    """Fit on the measured cells, by least squares of the relative error over
    coarse grids (no scipy needed): B (effective aggregate bandwidth), L
    (effective time per request) and k for all strategies, then the
    broadcast's B_copy, then a factor on each strategy's measured T1 (0.8
    to 1.2: one noisy N = 1 run must not skew a whole line), then B, L and
    k again."""
    ws = {s: workload(cells, s) for s in STRATEGIES}
    pts = [c for c in cells if "t_s" in c and ws.get(c["strategy"])]
    p = {"C": SERVER["server_conc"], "cores": cores, "B": SERVER["server_bw_mbps"] * 1e6,
         "L": 1e-3, "k": 2.0, "B_copy": 1e9, "t1f": {}}

    def err(q, only=None):
        return sum((predict(q, ws[c["strategy"]], c["n"], S) / c["t_s"] - 1) ** 2
                   for c in pts if only is None or c["strategy"] == only)

    def best(cands, only=None):
        return min(cands, key=lambda q: err(q, only))

    bw = SERVER["server_bw_mbps"] * 1e6
    for _ in range(2):
        p = best([dict(p, B=bw * bf, L=L, k=k)
                  for bf in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2)
                  for L in (0.6e-3, 0.8e-3, 1.0e-3, 1.2e-3, 1.4e-3, 1.7e-3, 2.0e-3, 2.5e-3, 3e-3)
                  for k in (1.0, 1.5, 2.0, 3.0, 5.0, 10.0)])
        if ws.get("broadcast"):
            p = best([dict(p, B_copy=0.1e9 * 1.15 ** i) for i in range(40)], "broadcast")
        for s in STRATEGIES:
            if ws.get(s):
                p = best([dict(p, t1f=dict(p["t1f"], **{s: f / 20})) for f in range(16, 25)], s)
    for c in pts:
        c["model_s"] = predict(p, ws[c["strategy"]], c["n"], S)
        c["model_err"] = c["model_s"] / c["t_s"] - 1
    return p, ws


# The cluster of the extrapolation: per-request time as on the stand-in,
# 256 requests in service, 100 Gb/s links, sbcast's largest fan-out (8, its
# man page) and block (8 MB).
CLUSTER = dict(L=1e-3, C=256, link_Bps=12.5e9, fanout=8, block=8e6)


def cluster_time(p, w, n, S, B, scale=1.0):
    """Start-up of N nodes of a cluster: the per-node workload (R, D) scaled
    by `scale` (the image size over this one's) on a server of bandwidth B;
    no CPU term (every node has its own cores); the alone time T1 is this
    venv's. A broadcast reads the image once at min(B, link) and sbcast
    pipelines its blocks down a tree of fan-out f: the sender's link carries
    f copies, each level adds a block's delay."""
    if w is None:
        return None
    Sx = S * scale
    if not w["per_node"]:
        f, link = CLUSTER["fanout"], CLUSTER["link_Bps"]
        depth = math.ceil(math.log(n, f) - 1e-9) if n > 1 else 0
        fan = (min(f, n - 1) * Sx / link + depth * f * CLUSTER["block"] / link) if n > 1 else 0
        return Sx / min(B, link) + fan + w["t_local"] * p["t1f"].get(w["s"], 1.0)
    t1 = w["t1"] * p["t1f"].get(w["s"], 1.0)
    return softmax(p["k"], t1, n * w["D"] * scale / B,
                   n * w["R"] * scale * CLUSTER["L"] / CLUSTER["C"])


def azure(p, ws, S):
    """The Azure case: a 23 GiB image read in full by 64 nodes took 200 s
    (default striping) and 74 s (full striping): aggregate bandwidths of
    64·23 GiB over those times. Each strategy's workload scaled to 23 GiB."""
    img = 23 * 2**30
    out = {}
    for label, t in (("default striping", 200), ("full striping", 74)):
        B = 64 * img / t
        out[label] = {"B_GBps": B / 1e9,
                      "t": {s: cluster_time(p, ws.get(s), 64, S, B, img / S) for s in STRATEGIES}}
    return out


def crossovers(p, ws, S):
    """For images of several sizes (this venv's workload scaled) and servers
    of several bandwidths: from how many nodes one strategy beats another,
    and which strategy is fastest at 16, 64 and 1,000 nodes."""
    servers = [("stand-in, fitted", p["B"]), ("Azure default", 64 * 23 * 2**30 / 200),
               ("Azure full", 64 * 23 * 2**30 / 74)]
    pairs = [("sqvenvfs hot", "dir"), ("sqvenvfs hot", "staged"), ("broadcast", "sqvenvfs hot"),
             ("broadcast", "staged"), ("staged", "dir")]
    rows = []
    for size in (S, 2e9, 23 * 2**30, 100e9):
        for label, B in servers:
            def t(s, n):
                return cluster_time(p, ws.get(s), n, S, B, size / S)
            row = {"image_bytes": size, "server": label, "B": B, "from": {}, "best": {}}
            for a, b in pairs:
                if ws.get(a) and ws.get(b):
                    row["from"][f"{a} < {b}"] = next((n for n in range(1, 4097)
                                                      if t(a, n) < t(b, n)), None)
            for n in (16, 64, 1000):
                row["best"][n] = min((s for s in STRATEGIES if ws.get(s)), key=lambda s: t(s, n))
            rows.append(row)
    return rows


# ---------------------------------------------------------------- output

def fmt(x, unit="s"):
    return bench.fmt(x, unit)


def report(res):
    out = []
    P = out.append
    p, S = res["params"], res["image_bytes"]
    P(f"Scale run: venv {res['venv_entries']:,} entries; image {S / 1e6:.0f} MB; hot-first "
      f"image's hot range {res['hot_bytes'] / 1e6:.1f} MB stored; trace {res['trace_files']:,} "
      f"files, {res['trace_bytes'] / 1e6:.0f} MB read. Server: "
      f"{res['server']['meta_delay_us']} µs per request, {res['server']['server_bw_mbps']} MB/s "
      f"aggregate, {res['server']['server_conc']} requests in service; clients cache entries, "
      f"attributes and data. Broadcast fan-out {FANOUT}.")
    P("")
    P("| strategy | N | all nodes done s | model s | error | server requests | server MB | "
      "MB per node | queued s (sum) | CPU s (machine) |")
    P("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in res["cells"]:
        if "t_s" not in c:
            P(f"| {c['strategy']} | {c['n']} | – | – | – | – | – | – | – | – |")
            continue
        s = c["server"]
        P(f"| {c['strategy']} | {c['n']} | {c['t_s']:.2f} | {fmt(c.get('model_s'))} | "
          f"{c['model_err'] * 100:+.0f} % | {s['meta_requests'] + s['read_requests']:,} | "
          f"{s['read_bytes'] / 1e6:.1f} | {s['read_bytes'] / 1e6 / c['n']:.1f} | "
          f"{s['queue_us'] / 1e6:.1f} | {c['cpu_s']:.1f} |")
    P("")
    P(f"Fitted: effective aggregate bandwidth B = {p['B'] / 1e6:.0f} MB/s (set: "
      f"{res['server']['server_bw_mbps']}), effective time per request L = {p['L'] * 1e3:.2f} ms "
      f"(set: {res['server']['meta_delay_us'] / 1000:.2f}), this machine's copy rate "
      f"B_copy = {p['B_copy'] / 1e9:.2f} GB/s, soft-maximum exponent k = {p['k']:g}, "
      "T1 factors " + ", ".join(f"{s} {f:.2f}" for s, f in p["t1f"].items())
      + f"; requests in service C = {p['C']}, cores = {p['cores']}. Largest error "
      f"{res['max_err'] * 100:.0f} %.")
    P("")
    P("Per-node workload (from the smallest N of each strategy): requests R, bytes D, "
      "alone time T1, CPU per node on this machine:")
    P("")
    P("| strategy | R | D MB | T1 s | CPU s |")
    P("|---|---:|---:|---:|---:|")
    for s, w in res["workloads"].items():
        if w:
            P(f"| {s}{'' if w['per_node'] else ' (whole run)'} | {w['R']:,.0f} | "
              f"{w['D'] / 1e6:.1f} | {w['t1']:.2f} | {w['cpu']:.2f} |")
    hb = res.get("hot_target")
    if hb:
        P("")
        P(f"Hot-set target: server bytes per node with the hot-first image and prefetch "
          f"{hb['per_node'] / 1e6:.1f} MB = {hb['ratio']:.2f}× the hot range "
          f"({'met' if hb['ratio'] <= 1.2 else '**missed**'}, goal ≤ 1.2×); a staged copy "
          f"reads {S / 1e6:.0f} MB.")
    P("")
    P(f"Extrapolated to a cluster (L = {CLUSTER['L'] * 1e3:g} ms, C = {CLUSTER['C']}, "
      f"links {CLUSTER['link_Bps'] / 1e9:g} GB/s, fan-out {CLUSTER['fanout']}), this venv, "
      "server bandwidth as fitted here and as implied by the Azure case, s:")
    P("")
    P("| strategy | " + " | ".join(f"{lab}" for lab in res["extrapolation"]["labels"])
      + " | server load at N=1000 |")
    P("|---|" + "---:|" * len(res["extrapolation"]["labels"]) + "---:|")
    for s in STRATEGIES:
        row = res["extrapolation"]["t"].get(s)
        w = res["workloads"].get(s)
        if row:
            k = 1000 if w["per_node"] else 1
            P(f"| {s} | " + " | ".join(fmt(x) for x in row)
              + f" | {k * w['R']:,.0f} req., {k * w['D'] / 1e9:,.1f} GB |")
    P("")
    P("The Azure case (23 GiB image, 64 nodes), each strategy's workload scaled to the image:")
    P("")
    P("| strategy | " + " | ".join(f"{k} ({v['B_GBps']:.1f} GB/s)" for k, v in res["azure"].items())
      + " |")
    P("|---|" + "---:|" * len(res["azure"]) + "")
    for s in STRATEGIES:
        P(f"| {s} | " + " | ".join(fmt(v["t"].get(s)) for v in res["azure"].values()) + " |")
    P("")
    P("Crossovers on a cluster: the smallest N from which the first strategy is faster "
      "(– : not up to 4,096), and the fastest strategy at 16, 64 and 1,000 nodes:")
    P("")
    xs = res["crossovers"]
    keys = list(xs[0]["from"]) if xs else []
    P("| image | server | " + " | ".join(keys) + " | best at 16 | at 64 | at 1,000 |")
    P("|---|---|" + "---:|" * len(keys) + "---|---|---|")
    for r in xs:
        P(f"| {r['image_bytes'] / 1e9:.2f} GB | {r['server']} ({r['B'] / 1e9:.2f} GB/s) | "
          + " | ".join(fmt(r["from"][k], "n") for k in keys) + " | "
          + " | ".join(r["best"][n] for n in (16, 64, 1000)) + " |")
    P("")
    v = res["versions"]
    P(f"Machine: {v['cpu']}, {v['cores']} cores; kernel {v['kernel']}; 1-minute load average at "
      f"the cells' ends: median {fmt(bench.median([c.get('load_1min') for c in res['cells']]))}; "
      f"{reclaim.describe(res.get('reclaim'))}. "
      f"sqvenvfs git {v['git']}. Total {res['total_s'] / 60:.1f} min (preparing "
      f"{res['prepare_s'] / 60:.1f} min).")
    return "\n".join(out)


def extrapolate(p, ws, S):
    ns = (64, 256, 1000)
    Bs = [("fitted B", p["B"])]
    labels = [f"N={n}, {lab}" for lab, _ in Bs for n in ns]
    za = 64 * 23 * 2**30
    for lab, t in (("Azure default", 200), ("Azure full", 74)):
        Bs.append((lab, za / t))
        labels += [f"N={n}, {lab} ({za / t / 1e9:.0f} GB/s)" for n in ns]
    t = {s: [cluster_time(p, ws.get(s), n, S, B) for _, B in Bs for n in ns]
         for s in STRATEGIES if ws.get(s)}
    return {"labels": labels, "t": t}


def curves(res):
    """The model's lines for the plot: on this machine up to the largest N
    measured, and on a cluster up to 1,000 nodes."""
    p, S, ws = res["params"], res["image_bytes"], res["workloads"]
    top = max((c["n"] for c in res["cells"]), default=1)
    fine = [1 + i * (top - 1) / 100 for i in range(101)]
    big = sorted({round(10 ** (i / 20)) for i in range(61)})
    out = {"machine": {}, "cluster": {}, "measured": {}}
    for s in STRATEGIES:
        w = ws.get(s)
        if not w:
            continue
        out["machine"][s] = [(n, predict(p, w, n, S)) for n in fine]
        out["cluster"][s] = [(n, cluster_time(p, w, n, S, p["B"])) for n in big]
        out["measured"][s] = [(c["n"], c["t_s"]) for c in res["cells"]
                              if c["strategy"] == s and "t_s" in c]
    return out


def plot(res, path):
    """The PNG, drawn by Debian's python3 (python3-matplotlib) in a child:
    the harness may run under another interpreter."""
    data = path[:-4] + ".curves.json"
    with open(data, "w") as f:
        json.dump({"curves": curves(res), "B": res["params"]["B"]}, f)
    r = bench.run([bench.SYS_PYTHON, os.path.join(bench.HERE, "scale_plot.py"), data, path],
                  check=False)
    os.unlink(data)
    if r.returncode != 0 or not os.path.exists(path) or os.path.getsize(path) == 0:
        raise bench.BenchError(f"plot: {(r.stderr or '').strip().splitlines()[-1:]}")


# ---------------------------------------------------------------- the run

def prepare(a):
    ctx = bench.Ctx()
    ctx.args = a
    ctx.plan = dict(bench.SMOKE_PLAN if a.smoke else bench.FULL_PLAN)
    ctx.work = a.work
    b = os.path.abspath(a.builddir)
    ctx.sqvenvfs = os.path.join(b, "daemon", "sqvenvfs")
    ctx.latfs = os.path.join(b, "tests", "bench", "sqvbench-latfs")
    ctx.replay = os.path.join(b, "tests", "bench", "sqvbench-replay")
    ctx.pack = os.path.join(b, "tools", "sqvenvfs-pack")
    ctx.inspect = os.path.join(b, "tools", "sqvenvfs-inspect")
    for exe in (ctx.sqvenvfs, ctx.latfs, ctx.replay, ctx.pack, ctx.inspect):
        if not os.access(exe, os.X_OK):
            raise bench.SkipBench(f"{exe}: not built (meson compile -C {a.builddir})")
    for tool in ("squashfuse_ll", "mksquashfs", "fusermount3"):
        if not shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin"):
            raise bench.SkipBench(f"{tool}: not installed (see .ci/packages/bench.txt)")
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        raise bench.SkipBench(f"/dev/fuse: {e.strerror}")
    if not a.smoke:
        bench.ensure_debs(bench.FULL_DEB)
    # The trace is of the FUSE level: a fresh mount sees every first read
    # whatever the page cache holds, so recording it needs no drop_caches
    # (which would spoil the measurements of anyone else on the machine).
    ctx.can_drop = False
    os.makedirs(ctx.work, exist_ok=True)
    bench.prepare(ctx, with_tree=False)
    ctx.runner = bench.Runner(a, ctx.work, bench.SMOKE_IMPORT if a.smoke else bench.FULL_IMPORT)
    bench.prepare_hot(ctx)
    ctx.shared = os.path.dirname(ctx.venv_img)
    ctx.trace = os.path.join(ctx.shared, "venv.trace")
    ctx.hashes = os.path.join(ctx.work, "scale-hashes")
    # The hashes every node's replay must match: the replay of the source.
    with open(ctx.hashes, "w") as out:
        bench.run([ctx.replay, "--print", ctx.trace, ctx.venv], stdout=out)
    with open(ctx.hashes) as f:
        tail = dict(ln.split() for ln in f if " " in ln)
    ctx.trace_files, ctx.trace_bytes = int(tail["files"]), int(tail["bytes"])
    return ctx


def mem_available():
    with open("/proc/meminfo") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("MemAvailable:"))


def hot_bytes(cells):
    for c in cells:
        st = c.get("sqvenvfs_stats") or {}
        if c["strategy"] == "sqvenvfs hot" and st.get("hot_bytes"):
            return st["hot_bytes"]
    return None


def do_scale(a):
    t_start = time.perf_counter()
    ctx = prepare(a)
    # Before the cells: the commit and load measured are those at the start,
    # and editing the tree during a long run does not make it "-dirty".
    versions = bench.tool_versions(ctx)
    ctx.server_over = {k: v for k, v in (("server_bw_mbps", a.server_bw_mbps),
                                         ("server_conc", a.server_conc)) if v}
    ctx.scale_dir = os.path.join(ctx.work, "mnt", "scale")
    t_prepared = time.perf_counter()
    S = os.path.getsize(ctx.hot_img)
    ns = [int(x) for x in a.ns.split(",")] if a.ns else (SMOKE_NS if a.smoke else FULL_NS)
    strategies = a.strategies.split(",") if a.strategies else STRATEGIES
    cells = []
    ctx.local_root = tempfile.mkdtemp(prefix="sqvbench-scale-local-", dir="/dev/shm")
    try:
        # Every strategy at one N, then the next N: strategies measured side
        # by side see the same machine, and a run out of time loses its
        # largest N, not a whole strategy.
        for n in ns:
            for s in strategies:
                # The node-local copies live in /dev/shm, that is in memory.
                need = S * n if s in ("staged", "broadcast") else 0
                shm = os.statvfs("/dev/shm")
                skip = None
                if need > min(shm.f_bavail * shm.f_frsize, mem_available()) * 0.6:
                    skip = f"{need / 1e9:.1f} GB of node-local copies do not fit in memory"
                elif time.perf_counter() - t_start > a.budget_min * 60:
                    skip = f"the run's budget of {a.budget_min} minutes is spent"
                if skip:
                    cells.append({"strategy": s, "n": n, "error": f"skipped: {skip}"})
                    log(f"scale: {s}, N={n}: skipped: {skip}")
                    continue
                log(f"scale: {s}, N={n}")
                cells.append(run_cell(ctx, s, n))
                if "t_s" in cells[-1]:
                    log(f"scale: {s}, N={n}: {cells[-1]['t_s']:.2f} s")
    finally:
        shutil.rmtree(ctx.local_root, ignore_errors=True)
    cells.sort(key=lambda c: (STRATEGIES.index(c["strategy"]), c["n"]))
    refusals = server_refusals(ctx) if a.smoke else []
    res = {"cells": cells, "image_bytes": S, "venv_entries": ctx.venv_info["venv"]["entries"],
           "trace_files": ctx.trace_files, "trace_bytes": ctx.trace_bytes,
           "server": dict(SERVER, **ctx.server_over), "fanout": FANOUT,
           "versions": versions, "smoke": a.smoke, "command": " ".join(sys.argv)}
    res["hot_bytes"] = hot_bytes(cells) or 0
    res["refusals"] = refusals
    params, ws = fit(cells, S, os.cpu_count())
    res["params"], res["workloads"] = params, ws
    res["max_err"] = max((abs(c["model_err"]) for c in cells if "model_err" in c), default=0)
    hot = [c for c in cells if c["strategy"] == "sqvenvfs hot" and "t_s" in c]
    if hot and res["hot_bytes"]:
        per = max(c["server"]["read_bytes"] / c["n"] for c in hot)
        res["hot_target"] = {"per_node": per, "ratio": per / res["hot_bytes"]}
    res["extrapolation"] = extrapolate(params, ws, S)
    res["azure"] = azure(params, ws, S)
    res["crossovers"] = crossovers(params, ws, S)
    res["prepare_s"] = t_prepared - t_start
    res["total_s"] = time.perf_counter() - t_start
    return res


def server_refusals(ctx):
    """Bad server files are refused with one line each: another mount's
    settings, a file that is not a server. Returns the problems found."""
    problems = []
    base = os.path.join(ctx.work, "mnt", "refuse")
    server = f"/dev/shm/sqvbench-scale-{os.getpid()}-refuse"
    m1, m2 = os.path.join(base, "a"), os.path.join(base, "b")
    for m in (m1, m2):
        os.makedirs(m, exist_ok=True)
    try:
        bench.run([ctx.latfs, "-o", f"server={server},server_conc=4", ctx.shared, m1])
        wait_mounted(m1)
        cases = [(f"server={server},server_conc=5", "made with server_conc=4"),
                 (f"server={ctx.trace}", "not a server file")]
        for opts, want in cases:
            r = bench.run([ctx.latfs, "-o", opts, ctx.shared, m2], check=False)
            err = r.stderr.strip()
            if r.returncode == 0 or want not in err or len(err.splitlines()) != 1:
                problems.append(f"latfs -o {opts}: exit {r.returncode}, {err!r}: "
                                f"want one line with {want!r}")
                bench.run(["fusermount3", "-u", m2], check=False)
    finally:
        bench.run(["fusermount3", "-u", m1], check=False)
        shutil.rmtree(base, ignore_errors=True)
        if os.path.exists(server):
            os.unlink(server)
    return problems


def check_complete(res, ns):
    problems = list(res.get("refusals", []))
    for s in STRATEGIES:
        for n in ns:
            c = next((c for c in res["cells"] if c["strategy"] == s and c["n"] == n), None)
            if c is None:
                problems.append(f"{s} N={n}: cell missing")
                continue
            if "error" in c:
                problems.append(f"{s} N={n}: {c['error']}")
                continue
            for k in ("t_s", "cpu_s", "model_s"):
                if c.get(k) is None:
                    problems.append(f"{s} N={n}: {k} missing")
            sv = c.get("server") or {}
            if not sv.get("read_bytes") or not sv.get("read_requests"):
                problems.append(f"{s} N={n}: the server counted no reads ({sv})")
                continue
            if c.get("mount_reads_sum") != sv["read_requests"]:
                problems.append(f"{s} N={n}: the mounts served {c.get('mount_reads_sum')} reads, "
                                f"the server counted {sv['read_requests']}: not shared")
            # The bandwidth budget is a virtual clock: no load can make the
            # server serve its bytes faster than they fit in it.
            floor = sv["read_bytes"] / (res["server"]["server_bw_mbps"] * 1e6)
            if c["t_s"] < floor:
                problems.append(f"{s} N={n}: {sv['read_bytes']:,} bytes served in "
                                f"{c['t_s']:.3f} s, faster than the server's budget ({floor:.3f} s)")
    if not res.get("hot_bytes"):
        problems.append("sqvenvfs hot: no hot range reported")
    return problems


def main(argv):
    p = argparse.ArgumentParser(prog="bench.py scale", description=__doc__.split("\n\n")[0])
    p.add_argument("-C", "--builddir", default="build")
    p.add_argument("--workdir")
    p.add_argument("--smoke", action="store_true", help="tiny venv, N = 1 and 2")
    p.add_argument("--ns", help="node counts, comma-separated (default 1,2,4,8,16,32)")
    p.add_argument("--strategies", help="comma-separated, of: " + ", ".join(STRATEGIES))
    p.add_argument("--server-bw-mbps", type=int)
    p.add_argument("--server-conc", type=int)
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--budget-min", type=float, default=17,
                   help="start no cell after this many minutes (default 17: the whole "
                        "run must take under 20)")
    a = p.parse_args(argv)
    for s in (a.strategies or "").split(",") if a.strategies else ():
        if s not in STRATEGIES:
            print(f"bench.py scale: --strategies: {s}: not one of {', '.join(STRATEGIES)}",
                  file=sys.stderr)
            return 2
    if a.ns and not all(x.isdigit() and int(x) > 0 for x in a.ns.split(",")):
        print(f"bench.py scale: --ns {a.ns}: not a list of node counts like 1,2,4",
              file=sys.stderr)
        return 2

    def on_signal(sig, frame):
        raise KeyboardInterrupt  # unwinds through every cell's unmounts
    # SIGHUP too (a dropped session): the run's finally clauses restore
    # what it paused and unmount what it mounted.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    temp_work = a.smoke and not a.workdir
    a.work = (tempfile.mkdtemp(prefix="sqvbench-scale-smoke-", dir="/var/tmp") if temp_work
              else os.path.abspath(a.workdir or "/var/tmp/sqvbench-scale"))
    try:
        with reclaim.paused(bench.is_root() and not a.smoke, log) as note:
            res = do_scale(a)
        res["reclaim"] = note
        text = report(res)
        print(text)
        if not temp_work:
            stem = os.path.join(a.work, "results-scale-%s" % time.strftime("%Y%m%dT%H%M%S"))
            with open(stem + ".json", "w") as f:
                json.dump(res, f, indent=1)
            with open(stem + ".md", "w") as f:
                f.write(text + "\n")
            plot(res, stem + ".png")
            log(f"results in {stem}.{{json,md,png}}")
        else:
            plot(res, os.path.join(a.work, "plot.png"))
            if os.path.getsize(os.path.join(a.work, "plot.png")) == 0:
                raise bench.BenchError("plot: empty")
    except bench.SkipBench as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1 if os.environ.get("SQVENVFS_TEST_NO_SKIP") == "1" or not a.smoke else 77
    except bench.BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        bench.unmount_all()
        if temp_work:
            shutil.rmtree(a.work, ignore_errors=True)
    if a.smoke:
        return bench.smoke_verdict("scale smoke", check_complete(res, SMOKE_NS),
                                   "every cell measured, model fitted, plot written")
    return 0
