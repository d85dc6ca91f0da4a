#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""The sqvenvfs benchmark: one run, every row side by side, one table.

    bench.py [run] [--smoke] [-C BUILDDIR] [--workdir DIR] ...
    bench.py make-venv DEST [--packages P ...]
    bench.py make-tree DEST [--entries N]
    bench.py scale [--smoke] [-C BUILDDIR] ...   (bench_scale.py: N nodes)

`run` builds (or reuses) a venv made from Debian's python3-* packages, packs it
with mksquashfs, and times `python -c 'import ...'` from it as a plain
directory, a kernel squashfs mount, squashfuse, squashfuse_ll and sqvenvfs,
then again with the venv directory and the image on sqvbench-latfs, a FUSE
passthrough that makes every metadata request and read slow (a stand-in for a
loaded parallel file system). A synthetic 400,000-entry tree measures mount
time, daemon memory and a stat-everything walk at scale.

Numbers are medians of the runs of this one invocation; ratios compare rows of
the same run. FUSE requests are counted by the kernel's own fuse tracepoint
(fuse:fuse_request_send, filtered on the mount's connection), so every daemon
is counted the same way; sqvenvfs's --stats is recorded beside it.

--smoke builds a tiny venv and runs each row that needs no root-only setup
once; it exits 1 if a row or a measurement is missing or failed. It is the
meson test 'bench-smoke' (suite bench).
"""

import argparse
import glob
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import bench_edit
import bench_pack
import reclaim

HERE = os.path.dirname(os.path.abspath(__file__))
# The tests' library (tests/lib): meson sets PYTHONPATH, but the benchmark
# is also run by hand (docs/performance.md).
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from sqvtest import cache_drops, peak_rss_kib, pids_naming  # noqa: E402
# The metadata blocks an image holds, counted from its own block headers
# (the same count integration-metadata checks the daemon against).
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from test_metadata import metadata_blocks  # noqa: E402
DIST = "/usr/lib/python3/dist-packages"
SYS_PYTHON = "/usr/bin/python3"
PYVER = "python3.11"

FULL_PACKAGES = ["python3-numpy", "python3-scipy", "python3-pandas", "python3-sklearn",
                 "python3-matplotlib", "python3-sympy", "python3-torch"]
FULL_IMPORT = "import numpy, scipy.stats, pandas, sklearn.ensemble, torch, matplotlib.pyplot, sympy"
SMOKE_PACKAGES = ["python3-numpy"]
SMOKE_IMPORT = "import numpy"
# Another workload on the same venv, for the rows that check that a hot-first
# image recorded with the import above costs nothing to a different one.
FULL_OTHER_IMPORT = ("import scipy.optimize, scipy.signal, scipy.sparse.linalg, "
                     "sympy.physics.mechanics, pandas.plotting")
SMOKE_OTHER_IMPORT = "import numpy.polynomial, numpy.fft, numpy.random"
# Packages the full run installs itself (CI installs only .ci/packages/bench.txt).
FULL_DEB = FULL_PACKAGES + ["python3-venv", "squashfuse", "squashfs-tools", "fuse3", "patchelf"]

TRACEFS = "/sys/kernel/tracing"

# How many times each measurement runs; chosen so the full run fits in 20
# minutes on 2 cores (docs/performance.md, "Duration", gives each part's
# time in the latest run). Each row has a kind:
#   full     the local rows the targets compare (plain directory, sqvenvfs):
#            cold, warm, 32 procs (about two and a half minutes each);
#   light    local rows for comparison only: cold and warm;
#   standin  the stand-in rows, in both cache settings: cold only. A warm
#            import, or several at once on a warm mount, does not reach the
#            stand-in: it measures what the local rows measure;
#   slow     the plain directory on the stand-in: about two minutes per
#            import, so one cold run;
#   cold     rows that only the cold import matters for (the hot-set rows);
#   mount    rows that only the mount time matters for: no import at all.
# Every row with cold runs but the slow one first makes one more, not
# counted (prime; see measure_storage).
# The stand-in and hot-set rows make 3 counted cold runs, the local rows 2:
# the hot-set target (squashfuse_ll / hot-first >= 3x) sits close to what
# this VM allows (a cold import from the local directory is about a third
# of squashfuse_ll's on the stand-in), and the median of 2 is their mean,
# so one slow run decided it (results-20261203T165107: 3.44 and 5.21 s).
# The median of 3 stands one slow run in each row.
# The tree's reference rows (everything but sqvenvfs, whose mount time is a
# target) walk it after one mount.
FULL_PLAN = dict(prime=True, warm_runs=3, cold_runs=2, conc=(32,), conc_runs=1,
                 light_warm_runs=2, standin_cold_runs=3,
                 slow_cold_runs=1, hot_cold_runs=3,
                 tree_entries=400_000, tree_mounts=2, tree_ref_mounts=1,
                 mount_samples=5)
SMOKE_PLAN = dict(prime=False, warm_runs=2, cold_runs=1, conc=(32,), conc_runs=1,
                  light_warm_runs=1, standin_cold_runs=2,
                  slow_cold_runs=1, hot_cold_runs=2,
                  tree_entries=3_000, tree_mounts=1, tree_ref_mounts=1,
                  mount_samples=1)
# Rows whose mount time is a target get plan["mount_samples"] more cold
# mounts (no import) on top of those of their cold runs.
MOUNT_SAMPLED = ("sqvenvfs", "sqvenvfs hot", "sqvenvfs verified")
# The stand-in in its two settings: like a Lustre or NFS client that keeps
# file data in its page cache, and (direct_io) one that keeps nothing.
STANDINS = (("stand-in", False), ("stand-in cached", True))


def row_counts(plan, kind):
    """(cold runs, warm runs, concurrent process counts) for a row kind."""
    return {
        "full": (plan["cold_runs"], plan["warm_runs"], plan["conc"]),
        "light": (plan["cold_runs"], plan["light_warm_runs"], ()),
        "standin": (plan["standin_cold_runs"], 0, ()),
        "slow": (plan["slow_cold_runs"], 0, ()),
        "cold": (plan["hot_cold_runs"], 0, ()),
        "mount": (0, 0, ()),
    }[kind]


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def run(cmd, check=True, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    r = subprocess.run(cmd, **kw)
    if check and r.returncode != 0:
        err = (r.stderr or "").strip().splitlines()
        raise BenchError(f"{' '.join(map(str, cmd))}: exit {r.returncode}: "
                         f"{err[-1] if err else ''}")
    return r


def is_root():
    return os.geteuid() == 0


# ---------------------------------------------------------------- the venv

def deb_installed(pkg):
    r = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False)
    return r.returncode == 0 and r.stdout.strip() == "install ok installed"


def deb_version(pkg):
    r = run(["dpkg-query", "-W", "-f=${Version}", pkg], check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def deb_files(pkg):
    return run(["dpkg", "-L", pkg]).stdout.splitlines()


def python_closure(roots):
    """roots and the python3-* packages they depend on that ship modules."""
    seen, order, todo = set(), [], list(roots)
    while todo:
        pkg = todo.pop(0)
        if pkg in seen:
            continue
        seen.add(pkg)
        r = run(["dpkg-query", "-W", "-f=${Status}\t${Depends}, ${Pre-Depends}", pkg], check=False)
        if r.returncode != 0 or not r.stdout.startswith("install ok installed"):
            if pkg in roots:
                raise BenchError(f"{pkg}: Debian package not installed")
            continue  # a virtual package or an alternative not chosen
        if any(f.startswith(DIST + "/") for f in deb_files(pkg)):
            order.append(pkg)
        deps = r.stdout.split("\t", 1)[1]
        for dep in deps.split(","):
            for alt in dep.split("|"):
                name = alt.strip().split(" ")[0].split(":")[0]
                if name.startswith("python3-"):
                    todo.append(name)
    return order


def copy_entry(src, dst, stats):
    """Copy one dist-packages entry; links that leave dist-packages are
    replaced by what they point to, as pip would have installed it."""
    if os.path.islink(src):
        real = os.path.realpath(src)
        if not os.path.exists(real):
            stats["dangling"].append(src)
            return
        if real.startswith(DIST + "/"):
            if not os.path.lexists(dst):
                os.symlink(os.path.relpath(real, os.path.dirname(src)), dst)
            return
        stats["dereferenced"].append((src, dst))
        if os.path.isdir(real):
            shutil.copytree(real, dst, symlinks=False, dirs_exist_ok=True)
        else:
            shutil.copy2(real, dst)
        return
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
        return
    shutil.copy2(src, dst)


def make_venv(dest, packages):
    """python3 -m venv DEST, then the files of packages (and their python3-*
    dependencies) copied into its site-packages; returns a summary."""
    if os.path.lexists(dest):
        shutil.rmtree(dest)
    run([SYS_PYTHON, "-m", "venv", dest])
    site = os.path.join(dest, "lib", PYVER, "site-packages")
    closure = python_closure(packages)
    stats = {"dangling": [], "dereferenced": []}
    pys = []
    for pkg in closure:
        for f in deb_files(pkg):
            if not f.startswith(DIST + "/"):
                continue
            rel = f[len(DIST) + 1:]
            dst = os.path.join(site, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            copy_entry(f, dst, stats)
            if f.endswith(".py") and os.path.isfile(dst):
                pys.append(rel)
    # Debian's torch/lib holds links to /usr/lib/x86_64-linux-gnu/libtorch*.so.1.13
    # and its extension modules ask for those sonames. A pip-installed torch
    # has the libraries themselves in torch/lib, found through RUNPATH
    # $ORIGIN: give each copied library its soname beside it and that RUNPATH,
    # so the dynamic loader maps them from the venv and not from /usr/lib.
    for _, dst in stats["dereferenced"]:
        if not os.path.isfile(dst):
            continue
        with open(dst, "rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
        if not shutil.which("patchelf"):
            raise BenchError("patchelf: not installed (needed to relocate copied libraries)")
        soname = run(["patchelf", "--print-soname", dst]).stdout.strip()
        link = os.path.join(os.path.dirname(dst), soname)
        if soname and soname != os.path.basename(dst) and not os.path.lexists(link):
            os.symlink(os.path.basename(dst), link)
        run(["patchelf", "--set-rpath", "$ORIGIN", dst])
    # Debian compiles its .pyc at install time; copy them (their source
    # mtimes are kept by copy2, so they stay valid) and compile the rest.
    for rel in pys:
        d, base = os.path.split(rel)
        stem = base[:-3]
        cache = os.path.join(DIST, d, "__pycache__")
        for tag in ("", ".opt-1", ".opt-2"):
            pyc = os.path.join(cache, f"{stem}.cpython-311{tag}.pyc")
            if os.path.isfile(pyc):
                out = os.path.join(site, d, "__pycache__")
                os.makedirs(out, exist_ok=True)
                shutil.copy2(pyc, out)
    run([SYS_PYTHON, "-m", "compileall", "-q", "-j", "0", site], check=False)
    # Directory mtimes changed while we filled them; that is harmless.
    entries, size = 0, 0
    for root, dirs, files in os.walk(dest):
        entries += len(dirs) + len(files)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                size += os.lstat(p).st_size
    return {"packages": {p: deb_version(p) for p in closure}, "entries": entries,
            "bytes": size, "dangling_links_dropped": len(stats["dangling"]),
            "links_dereferenced": len(stats["dereferenced"])}


# ---------------------------------------------------------------- the big tree

WORDS = ("import def return self class if else for in while None True False from as "
         "with try except raise lambda yield numpy array value index data result").split()


def make_tree(dest, entries, seed=4):
    """A deterministic tree of `entries` entries shaped like a conda
    installation: many packages, nested module directories, mostly small
    text files, some symlinks."""
    if os.path.lexists(dest):
        shutil.rmtree(dest)
    rng = random.Random(seed)
    text = " ".join(rng.choice(WORDS) for _ in range(40000)).encode() * 2
    parents = [os.path.join(dest, "pkgs"), os.path.join(dest, "lib", "python3.11", "site-packages")]
    for d in parents:
        os.makedirs(d)
    made = 4
    pkg = 0
    while made < entries:
        top = os.path.join(parents[0] if pkg % 3 else parents[1], f"pkg{pkg:05d}")
        os.mkdir(top)
        made += 1
        dirs = [top]
        budget = min(entries - made, rng.randint(20, 400))
        while budget > 0:
            parent = rng.choice(dirs)
            r = rng.random()
            if r < 0.10 and parent.count("/") - top.count("/") < 5:
                d = os.path.join(parent, f"sub{len(dirs)}")
                os.mkdir(d)
                dirs.append(d)
            elif r < 0.14:
                os.symlink(f"mod{rng.randint(0, 50)}.py", os.path.join(parent, f"link{budget}"))
            else:
                size = rng.randint(0, 1024) if rng.random() < 0.85 else rng.randint(1024, 8192)
                off = rng.randint(0, len(text) // 2)
                name = os.path.join(parent, f"mod{budget}.py")
                with open(name, "wb") as f:
                    f.write(text[off:off + size])
            budget -= 1
            made += 1
        pkg += 1
    count = sum(len(d) + len(f) for _, d, f in os.walk(dest))
    return {"entries": count}


# ---------------------------------------------------------------- mounts

def mounted_dev(path):
    return os.stat(path).st_dev != os.stat(os.path.dirname(path.rstrip("/"))).st_dev






class Mount:
    """One way of presenting a tree at a path; up() returns the seconds from
    starting the mount command to the first successful stat of `probe`."""
    kind = "none"
    fuse = False

    def __init__(self, mnt=None):
        self.mnt = mnt
        self.pid = None
        self.is_up = False

    @property
    def root(self):
        return self.mnt

    def up(self, probe):
        return None

    def down(self):
        pass

    def wait_usable(self, t0, probe):
        deadline = t0 + 60
        while time.monotonic() < deadline:
            try:
                if mounted_dev(self.mnt) and os.path.lexists(os.path.join(self.mnt, probe)):
                    return time.perf_counter()
            except OSError:
                pass
            time.sleep(0.0005)
        raise BenchError(f"{self.mnt}: mount not usable after 60 s")


class DirMount(Mount):
    kind = "dir"

    def __init__(self, path):
        super().__init__(path)
        self.is_up = True


class CmdMount(Mount):
    """A mount made by a command: the kernel's squashfs or a FUSE daemon."""

    def __init__(self, kind, cmd, mnt, unmount_cmd, fuse=True, daemon_name=None):
        super().__init__(mnt)
        self.kind = kind
        self.cmd = cmd
        self.unmount_cmd = unmount_cmd
        self.fuse = fuse
        self.daemon_name = daemon_name

    def up(self, probe):
        os.makedirs(self.mnt, exist_ok=True)
        t0 = time.perf_counter()
        r = subprocess.run(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise BenchError(f"{self.kind}: {' '.join(self.cmd)}: exit {r.returncode}: "
                             f"{r.stderr.strip()}")
        self.is_up = True
        MOUNTED.append(self)
        t1 = self.wait_usable(time.monotonic(), probe)
        if self.fuse:
            self.pid = min(pids_naming(self.mnt), default=None)
            if self.pid is None:
                raise BenchError(f"{self.kind}: no daemon process found for {self.mnt}")
        return t1 - t0

    def down(self):
        if not self.is_up:
            return
        r = subprocess.run(self.unmount_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        if r.returncode != 0:
            # Busy or broken: detach it lazily and go on, but say so.
            log(f"{self.kind}: unmount failed ({r.stderr.strip()}); lazy unmount")
            subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
        self.is_up = False
        if self in MOUNTED:
            MOUNTED.remove(self)
        if self.pid:
            deadline = time.monotonic() + 20
            while os.path.exists(f"/proc/{self.pid}") and time.monotonic() < deadline:
                try:
                    with open(f"/proc/{self.pid}/stat") as f:
                        if f.read().split(") ")[1].startswith("Z"):
                            break
                except OSError:
                    break
                time.sleep(0.005)
            if os.path.exists(f"/proc/{self.pid}"):
                try:
                    with open(f"/proc/{self.pid}/stat") as f:
                        zombie = f.read().split(") ")[1].startswith("Z")
                except OSError:
                    zombie = True
                if not zombie:
                    log(f"{self.kind}: daemon {self.pid} still running; killing it")
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = None


MOUNTED = []


def unmount_all():
    for m in reversed(list(MOUNTED)):
        try:
            m.down()
        except Exception as e:  # cleanup must go on
            log(f"cleanup: {m.mnt}: {e}")


# ---------------------------------------------------------------- tracing

class FuseTrace:
    """Counts the requests the kernel sends to one FUSE connection, through
    the fuse:fuse_request_send tracepoint in a private tracefs instance."""

    def __init__(self):
        self.mounted_tracefs = False
        self.inst = None
        self.why = None
        if not is_root():
            self.why = "not root"
            return
        if not os.path.isdir(os.path.join(TRACEFS, "events")):
            r = subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS],
                               stderr=subprocess.DEVNULL)
            self.mounted_tracefs = r.returncode == 0
        if not os.path.isdir(os.path.join(TRACEFS, "events", "fuse", "fuse_request_send")):
            self.why = "kernel has no fuse:fuse_request_send tracepoint"
            return
        self.inst = os.path.join(TRACEFS, "instances", f"sqvbench-{os.getpid()}")
        os.mkdir(self.inst)
        self._w("buffer_size_kb", "16384")

    def _w(self, rel, val):
        with open(os.path.join(self.inst, rel), "w") as f:
            f.write(val)

    def start(self, path):
        st = os.stat(path)
        conn = (os.major(st.st_dev) << 20) | os.minor(st.st_dev)
        ev = "events/fuse/fuse_request_send/"
        self._w(ev + "enable", "0")
        self._w("trace", "")
        self._w(ev + "filter", f"connection == {conn}")
        self._w(ev + "enable", "1")

    def stop(self):
        self._w("events/fuse/fuse_request_send/enable", "0")
        counts = {}
        with open(os.path.join(self.inst, "trace")) as f:
            for line in f:
                if line.startswith("#") or "opcode" not in line:
                    continue
                op = line.split("(FUSE_", 1)[1].split(")", 1)[0].lower()
                counts[op] = counts.get(op, 0) + 1
        for cpu in os.listdir(os.path.join(self.inst, "per_cpu")):
            with open(os.path.join(self.inst, "per_cpu", cpu, "stats")) as f:
                for line in f:
                    if line.startswith("overrun:") and int(line.split()[1]) != 0:
                        raise BenchError("trace buffer overran; counts would be low")
        self._w("trace", "")
        return counts

    def close(self):
        if self.inst:
            try:
                self._w("events/fuse/fuse_request_send/enable", "0")
                os.rmdir(self.inst)
            except OSError as e:
                log(f"tracefs instance {self.inst}: {e}")
            self.inst = None
        if self.mounted_tracefs:
            subprocess.run(["umount", TRACEFS], stderr=subprocess.DEVNULL)
            self.mounted_tracefs = False


# ---------------------------------------------------------------- measuring

OWN_DROPS = [0]


def drop_caches(enabled):
    if not enabled:
        return
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    OWN_DROPS[0] += 1




FOREIGN = {"discarded": 0}
SPOILED = []  # the measurement of the last warm_only call was spoiled


WARM_TRIES = [4]  # 1 in the smoke run, which only checks the table is complete
CONC_TRIES = [4]


def warm_only(what, fn, tries=None):
    """Run a warm measurement again when someone else dropped the caches
    meanwhile (other tests on a shared machine do): such a run was partly
    cold and says nothing about warm. After `tries`, keep the last and say so."""
    tries = tries or WARM_TRIES[0]
    SPOILED.clear()
    for i in range(tries):
        before, own = cache_drops(), OWN_DROPS[0]
        t = fn()
        if cache_drops() - before == OWN_DROPS[0] - own:
            return t
        FOREIGN["discarded"] += 1
        log(f"{what}: caches dropped by another process during the run; "
            + ("again" if i + 1 < tries else "kept anyway"))
    FOREIGN["kept_contaminated"] = FOREIGN.get("kept_contaminated", 0) + 1
    SPOILED.append(what)
    return t


class Runner:
    def __init__(self, args, work, import_stmt):
        self.args = args
        self.work = work
        self.import_stmt = import_stmt
        self.rundir = os.path.join(work, "run")
        os.makedirs(self.rundir, exist_ok=True)

    def env(self, row):
        mpl = os.path.join(self.work, "mplconfig", row)
        os.makedirs(mpl, exist_ok=True)
        return {"PATH": "/usr/bin:/bin", "HOME": self.rundir, "LANG": "C.UTF-8",
                "MPLBACKEND": "Agg", "MPLCONFIGDIR": mpl,
                # The trees are read-only or must stay identical to the image.
                "PYTHONDONTWRITEBYTECODE": "1"}

    def cmd(self, root, stmt=None):
        return [os.path.join(root, "bin", "python3"), "-c", stmt or self.import_stmt]

    def one(self, row, root, stmt=None):
        t0 = time.perf_counter()
        r = subprocess.run(self.cmd(root, stmt), env=self.env(row), cwd=self.rundir,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t = time.perf_counter() - t0
        if r.returncode != 0:
            tail = r.stderr.strip().splitlines()[-1:] or ["?"]
            raise BenchError(f"import failed (exit {r.returncode}): {tail[0]}")
        return t

    def many(self, row, root, n):
        t0 = time.perf_counter()
        procs = []
        bad = []
        try:
            for _ in range(n):
                procs.append(subprocess.Popen(self.cmd(root), env=self.env(row), cwd=self.rundir,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                              text=True))
            for p in procs:
                _, err = p.communicate()
                if p.returncode != 0:
                    bad.append(err.strip().splitlines()[-1:] or ["?"])
        finally:
            # Interrupted: leave no importer behind (they would keep the mount busy).
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        t = time.perf_counter() - t0
        if bad:
            raise BenchError(f"{len(bad)} of {n} concurrent imports failed: {bad[0][0]}")
        return t


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def parse_size(text):
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}
    text = text.strip().upper()
    num = text.rstrip("KMG")
    return int(num) * units[text[len(num):]]


def sqv_cache_size(exe, opts):
    """The block cache the daemon was given: -o cache_size=, else its default
    as --help states it."""
    for o in opts:
        # "-ocache_size=16M" as one argument, or "cache_size=16M" after "-o"
        for kv in o.removeprefix("-o").split(","):
            if kv.startswith("cache_size="):
                return parse_size(kv.split("=", 1)[1])
    # --help wraps an option's text onto lines indented deeper than the
    # option's own, so its "(default ...)" may be on one of those.
    r = run([exe, "--help"], check=False)
    lines = r.stdout.splitlines()
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("cache_size="):
            continue
        indent = len(line) - len(line.lstrip())
        text = line
        for more in lines[i + 1:]:
            if not more.strip() or len(more) - len(more.lstrip()) <= indent:
                break
            text += " " + more.strip()
        if "(default " in text:
            return parse_size(text.split("(default ", 1)[1].split(")", 1)[0])
    return None


def sqv_stats(exe, mnt):
    r = run([exe, "--stats", mnt], check=False)
    if r.returncode != 0:
        return None
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def latfs_reads(mnt):
    """Reads the stand-in has served since it was mounted (its own count)."""
    try:
        text = os.getxattr(mnt, "user.latfs.stats").decode()
    except OSError:
        return None
    return int(dict(ln.split() for ln in text.splitlines())["reads"])


def note_mount_phases(res, mount_s, stats):
    """Keep where one sqvenvfs mount's time went: the daemon's own start-up
    clocks (--stats mount_index_us, mount_ready_us) beside the bench's."""
    if stats and stats.get("mount_ready_us"):
        res.setdefault("mount_phases", []).append(
            {"mount_s": mount_s, "index_s": stats["mount_index_us"] / 1e6,
             "ready_s": stats["mount_ready_us"] / 1e6})


def cold_mount(ctx, res, mount, probe, mounts):
    """Unmount, drop caches, mount; the mount's time goes to mounts. For
    sqvenvfs, returns its --stats just after the mount (what building the
    index read) and keeps where the mount's time went in res."""
    mount.down()
    drop_caches(ctx.can_drop)
    mt = mount.up(probe)
    if mt is None:
        return None
    mounts.append(mt)
    if mount.kind != "sqvenvfs":
        return None
    st = sqv_stats(ctx.sqvenvfs, mount.mnt)
    note_mount_phases(res, mt, st)
    return st


def sample_mounts(ctx, res, mount, probe, mounts):
    """plan["mount_samples"] cold mounts of a sqvenvfs row, without a
    workload."""
    for _ in range(ctx.plan["mount_samples"]):
        cold_mount(ctx, res, mount, probe, mounts)


def mount_phases_note(r):
    """'index X ms, start-up Y ms, ...' from a row's mount phases (medians)."""
    ph = r.get("mount_phases") or []
    if not ph:
        return ""
    idx = median([p["index_s"] for p in ph])
    ready = median([p["ready_s"] for p in ph])
    rest = median([p["mount_s"] - p["ready_s"] for p in ph])
    return (f"the daemon's clocks (medians of {len(ph)}): index build {fmt(idx, 'ms')} ms, "
            f"main() to usable {fmt(ready, 'ms')} ms; the rest ({fmt(rest, 'ms')} ms) is "
            "starting the process, before main(), and the first stat")


class ImportRow:
    """One import row, measured in steps so that measure_storage can
    interleave the rows of one storage: cold runs (each: unmount, drop
    caches, mount, import), then on the last mount a warm-up, warm runs,
    one traced warm run, concurrent runs and the daemon's peak RSS."""

    def __init__(self, ctx, name, storage, mount, kind, stmt):
        self.ctx, self.mount, self.stmt = ctx, mount, stmt
        self.name = name
        self.cold_runs, self.warm_runs, self.conc = row_counts(ctx.plan, kind)
        self.res = {"row": name, "storage": storage, "errors": {}, "kind": kind}
        if stmt:
            self.res["import"] = stmt
        self.colds, self.mounts, self.warms = [], [], []
        self.elapsed_s = 0.0
        self.done = False  # unmounted: finished, or failed to mount

    def _step(self, name, fn):
        try:
            return fn()
        except BenchError as e:
            self.res["errors"][name] = str(e)
            log(f"{self.name}: {name}: {e}")
            return None

    def _timed(self, what, fn):
        """fn(), unless the row is done; a failed mount ends the row."""
        if self.done:
            return
        log(f"import: {self.name} ({self.res['storage']}), {what}")
        t0 = time.perf_counter()
        try:
            fn()
        except BenchError as e:
            self.res["errors"]["mount"] = str(e)
            log(f"{self.name}: {e}")
            self.mount.down()
            self.done = True
        finally:
            self.elapsed_s += time.perf_counter() - t0

    def _note_run(self, kind):
        """The order of the runs, for check_interleaved."""
        self.ctx.run_seq += 1
        self.res.setdefault(f"{kind}_seq", []).append(self.ctx.run_seq)

    def _one(self):
        return self.ctx.runner.one(self.name, self.mount.root, self.stmt)

    def prime(self):
        """One cold run that is kept apart (prime_s), not counted."""
        if not self.cold_runs or self.res["kind"] == "slow":
            return  # the slow row's import takes two minutes, and it is in no target

        def one():
            cold_mount(self.ctx, {}, self.mount, PROBE, [])
            self.res.setdefault("prime_s", []).append(self._step("prime", self._one))
            self.mount.down()
        self._timed("priming run (not counted)", one)

    def cold(self, i):
        self._timed(f"cold run {i + 1} of {self.cold_runs}", lambda: self._cold(i))
        if i < self.cold_runs - 1 and not self.done:
            # Other rows' runs come next, some on the same mount point.
            self.mount.down()

    def _cold(self, i):
        ctx, mount, res = self.ctx, self.mount, self.res
        last = i == self.cold_runs - 1
        if last:
            self._sample_mounts()
        st = cold_mount(ctx, res, mount, PROBE, self.mounts)
        if st is not None:
            res.setdefault("sqvenvfs_stats_mount", st)
        # On the stand-in, the last cold run also counts the requests that
        # reach the shared file system (the metadata server's load).
        on_standin = res["storage"].startswith("stand-in")
        traced = on_standin and ctx.trace.inst and last
        if traced:
            ctx.trace.start(ctx.shared_mnt)
        reads0 = latfs_reads(ctx.shared_mnt) if on_standin else None
        try:
            self.colds.append(self._step("cold", self._one))
            self._note_run("cold")
        finally:
            if traced:
                counts = ctx.trace.stop()
                res["standin_requests_by_op"] = counts
                res["standin_requests"] = sum(counts.values())
        if reads0 is not None and last:
            # Read requests of the stand-in during the import; for
            # sqvenvfs, what it read while mounting comes on top.
            reads1 = latfs_reads(ctx.shared_mnt)
            res["standin_reads_import"] = reads1 - reads0 if reads1 is not None else None
        if mount.kind == "sqvenvfs" and last:
            # What the last cold mount and import read, prefetch included.
            res["sqvenvfs_stats_cold"] = sqv_stats(ctx.sqvenvfs, mount.mnt)

    def _sample_mounts(self):
        """Mount times are targets for some rows, and two mounts were too
        few to tell 10 ms apart: more mounts, before the last cold run (or,
        for a row without one, before its mount) so that the daemon kept
        for the peak RSS is the one that served the import."""
        if (self.mount.kind == "sqvenvfs" and self.name in MOUNT_SAMPLED
                and not self.stmt):
            sample_mounts(self.ctx, self.res, self.mount, PROBE, self.mounts)

    def end_cold(self):
        """After the last cold run: the mount stays up for the warm runs;
        a row without any finishes now, freeing its mount point."""
        def end():
            mount, res = self.mount, self.res
            if self.cold_runs == 0:
                self._sample_mounts()
            if not mount.is_up:
                mt = mount.up(PROBE)
                if mt is not None:
                    self.mounts.append(mt)
            res["cold_s"] = median(self.colds)
            res["cold_all"] = self.colds
            res["mount_s"] = median(self.mounts)
        self._timed("mounted", end)
        if not self.warm_runs and not self.conc:
            self.finish()

    def warm_up(self):
        if self.warm_runs:
            self._timed("warm-up", lambda: self._step("warmup", self._one))

    def warm(self, i):
        def one():
            self.warms.append(self._step("warm", lambda: warm_only(f"{self.name} warm",
                                                                   self._one)))
            if SPOILED:
                self.res.setdefault("spoiled", []).append("warm_s")
            self._note_run("warm")
        self._timed(f"warm run {i + 1} of {self.warm_runs}", one)

    def finish(self):
        self._timed("the rest", self._finish)
        if not self.done:
            self.mount.down()
            self.done = True
        self.res["elapsed_s"] = self.elapsed_s

    def _finish(self):
        ctx, mount, res, stmt = self.ctx, self.mount, self.res, self.stmt
        res["warm_s"] = median(self.warms)
        res["warm_all"] = self.warms
        if mount.fuse and self.warm_runs:
            res["requests"] = None
            if ctx.trace.inst:
                def traced():
                    def one_traced():
                        before = (sqv_stats(ctx.sqvenvfs, mount.mnt)
                                  if mount.kind == "sqvenvfs" else None)
                        ctx.trace.start(mount.mnt)
                        try:
                            self._one()
                        finally:
                            res["requests_by_op"] = ctx.trace.stop()
                        after = sqv_stats(ctx.sqvenvfs, mount.mnt) if before else None
                        if after:
                            res["sqvenvfs_stats_delta"] = {k: after[k] - before.get(k, 0)
                                                           for k in after}
                    warm_only(f"{self.name} traced", one_traced)
                    res["requests"] = sum(res["requests_by_op"].values())
                self._step("requests", traced)
            else:
                res["requests_na"] = ctx.trace.why
        for n in self.conc:
            ts = [self._step(f"conc{n}", lambda: warm_only(
                f"{self.name} {n} procs", lambda: ctx.runner.many(self.name, mount.root, n),
                tries=CONC_TRIES[0]))
                  for _ in range(ctx.plan["conc_runs"])]
            if SPOILED:
                res.setdefault("spoiled", []).append(f"conc{n}_s")
            res[f"conc{n}_s"] = median(ts)
        if mount.pid and self.cold_runs:
            res["rss_kib"] = peak_rss_kib(mount.pid)
        if mount.kind == "sqvenvfs":
            res["sqvenvfs_stats"] = sqv_stats(ctx.sqvenvfs, mount.mnt)


# What a mount must show before it counts as mounted (the venv's).
PROBE = "pyvenv.cfg"


def measure_storage(ctx, rows):
    """The import rows of one storage, their runs interleaved: every row's
    first cold run, then every row's second, and so on; then, on the mounts
    the last cold runs left up, every row's warm-up, then its first warm
    run, every row's second, ...; then each row's traced and concurrent
    runs. A row with fewer runs makes them in the last rounds. This host's
    speed drifts by a quarter or more from one minute to the next (a
    single-threaded loop, on an idle machine, takes 0.15 to 0.36 s), and
    the targets are ratios of rows of one storage: interleaved, a slow
    minute falls on all of them alike, not on one row's every run.
    Returns the rows' results in the order of rows."""
    rows = [ImportRow(ctx, name, storage, factory(), kind, stmt)
            for name, storage, factory, kind, stmt in rows]
    # A first round, not counted: in run results-20261203T143748 the first
    # cold run of the stand-in rows was the slower in 8 of 10 sqvenvfs rows,
    # also in rows whose image an earlier row of the round had read
    # already, so the cost was below the daemons, not the row's. In
    # results-20261203T165107 (reclaim paused, see reclaim.py) it was not
    # (docs/performance.md, "Measurements"): the round is kept while runs
    # tell. Its times are kept (prime_s) and shown in the table's notes.
    if ctx.plan["prime"]:
        for r in rows:
            r.prime()
    in_rounds(rows, lambda r: r.cold_runs, lambda r, i: r.cold(i), lambda r: r.end_cold())
    for r in rows:
        r.warm_up()
    in_rounds(rows, lambda r: r.warm_runs, lambda r, i: r.warm(i))
    for r in rows:
        r.finish()
    return [r.res for r in rows]


def in_rounds(rows, count, run, last_round=None):
    """run(row, i) for each row's runs 0 .. count(row) - 1, round by round:
    every row's first, then every row's second, ...; a row with fewer runs
    makes them in the last rounds. last_round(row) after each row's part of
    the last round (every row has one, even with no runs)."""
    rounds = max([count(r) for r in rows] + [1])
    for p in range(rounds):
        for r in rows:
            first = rounds - count(r)
            if p >= first:
                run(r, p - first)
            if last_round and p == rounds - 1:
                last_round(r)


def measure_tree_row(ctx, name, mount, probe, expect):
    res = {"row": name, "errors": {}}
    mounts, colds, warms = [], [], []
    n_mounts = ctx.plan["tree_mounts" if name == "sqvenvfs" else "tree_ref_mounts"]
    try:
        if mount.kind == "sqvenvfs":
            # The mount time is a target: more mounts, without the walks
            # (as measure_import_row does).
            sample_mounts(ctx, res, mount, probe, mounts)
        for _ in range(n_mounts):
            cold_mount(ctx, res, mount, probe, mounts)
            for lst in (colds, warms):
                def walk():
                    t0 = time.perf_counter()
                    r = run([ctx.walk, mount.root])
                    return time.perf_counter() - t0, r
                t, r = walk() if lst is colds else warm_only(f"tree {name} warm walk", walk)
                lst.append(t)
                n = int(r.stdout.split()[0])
                if n != expect + 1:  # nftw counts the root too
                    raise BenchError(f"walk saw {n - 1} entries, expected {expect}")
        res["mount_s"] = median(mounts)
        res["walk_cold_s"] = median(colds)
        res["walk_warm_s"] = median(warms)
        if mount.pid:
            res["rss_kib"] = peak_rss_kib(mount.pid)
        if mount.kind == "sqvenvfs":
            res["sqvenvfs_stats"] = sqv_stats(ctx.sqvenvfs, mount.mnt)
    except BenchError as e:
        res["errors"]["tree"] = str(e)
        log(f"{name}: {e}")
    finally:
        mount.down()
    return res


def measure_unsquashfs_list(ctx):
    """`unsquashfs -l` of the tree's image, as cold as the mounts (page
    cache dropped first): it reads and decompresses every inode and
    directory, the floor for a mount that reads all metadata."""
    times = []
    for _ in range(ctx.plan["tree_mounts"] + ctx.plan["mount_samples"]):
        drop_caches(ctx.can_drop)
        t0 = time.perf_counter()
        run(["unsquashfs", "-l", ctx.tree_img], stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return median(times)


def image_metadata_blocks(img):
    """Metadata blocks of an image (None if its tables do not chain up)."""
    ok = []
    n = metadata_blocks(img, check=lambda cond, what: ok.append(cond))
    return n if all(ok) else None


# ---------------------------------------------------------------- the run

class Ctx:
    pass


def tool_versions(ctx):
    v = {"kernel": platform.release(), "python": run([SYS_PYTHON, "--version"]).stdout.strip()}
    for pkg in ("squashfuse", "squashfs-tools", "fuse3", "libfuse3-3", "python3-torch",
                "python3-numpy", "libsquashfuse0"):
        v[pkg] = deb_version(pkg)
    r = run([ctx.sqvenvfs, "--version"], check=False)
    v["sqvenvfs"] = (r.stdout or r.stderr).strip().splitlines()[0] if r.returncode == 0 else None
    r = run(["git", "-C", HERE, "describe", "--always", "--dirty"], check=False)
    v["git"] = r.stdout.strip() or None
    v["cpu"] = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name")), "?")
    v["cores"] = os.cpu_count()
    v["mem_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    v["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
    return v


def ensure_debs(pkgs):
    missing = [p for p in pkgs if not deb_installed(p)]
    if not missing:
        return
    if not is_root():
        raise BenchError(f"missing Debian packages {' '.join(missing)}; run as root")
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "-o", "DPkg::Lock::Timeout=900", "install", "-y", "-q",
         "--no-install-recommends"] + missing, env=env, stdout=subprocess.DEVNULL)


def mksquashfs(src, img):
    # What CSCS documents for squashfs-packed environments.
    run(["mksquashfs", src, img, "-comp", "zstd", "-Xcompression-level", "3",
         "-no-recovery", "-noappend", "-quiet", "-no-progress"])


def prepare(ctx, with_tree=True):
    """The venv and its images; the big tree too unless with_tree=False."""
    a = ctx.args
    data = os.path.join(ctx.work, "data")
    os.makedirs(data, exist_ok=True)
    packages = SMOKE_PACKAGES if a.smoke else FULL_PACKAGES
    venv = os.path.join(data, "venv")
    stamp_file = os.path.join(ctx.work, "venv.json")
    want = {"packages": {p: deb_version(p) for p in packages}, "builder": 2,
            "python": run([SYS_PYTHON, "--version"]).stdout.strip()}
    info = None
    if os.path.exists(stamp_file) and os.path.isdir(venv) and not a.rebuild:
        with open(stamp_file) as f:
            old = json.load(f)
        if old.get("want") == want:
            info = old
    if info is None:
        log(f"building the venv in {venv}")
        t0 = time.perf_counter()
        built = make_venv(venv, packages)
        t1 = time.perf_counter()
        img = os.path.join(data, "venv.sqfs")
        mksquashfs(venv, img)
        t2 = time.perf_counter()
        info = {"want": want, "venv": built, "build_s": t1 - t0, "mksquashfs_s": t2 - t1,
                "image_bytes": os.path.getsize(img)}
        with open(stamp_file, "w") as f:
            json.dump(info, f, indent=1)
    ctx.venv, ctx.venv_img, ctx.venv_info = venv, os.path.join(data, "venv.sqfs"), info
    # The same image with its block digest table (docs/digests.md), for the
    # cost of verification: made afresh each run, it is cheap.
    ctx.venv_sealed = os.path.join(data, "venv.sealed.sqfs")
    shutil.copyfile(ctx.venv_img, ctx.venv_sealed)
    run([ctx.inspect, "seal", ctx.venv_sealed])
    log(f"venv: {info['venv']['entries']} entries, {info['venv']['bytes'] / 1e6:.0f} MB, "
        f"image {info['image_bytes'] / 1e6:.0f} MB")
    if not with_tree:
        return

    tree_root = os.path.join(ctx.work, "tree")
    tree = os.path.join(tree_root, "tree")
    tstamp = os.path.join(ctx.work, "tree.json")
    twant = {"entries": ctx.plan["tree_entries"], "generator": 1}
    tinfo = None
    if os.path.exists(tstamp) and os.path.isdir(tree) and not a.rebuild:
        with open(tstamp) as f:
            old = json.load(f)
        if old.get("want") == twant:
            tinfo = old
    if tinfo is None:
        log(f"generating the {twant['entries']}-entry tree in {tree}")
        os.makedirs(tree_root, exist_ok=True)
        t0 = time.perf_counter()
        made = make_tree(tree, twant["entries"])
        t1 = time.perf_counter()
        mksquashfs(tree, os.path.join(tree_root, "tree.sqfs"))
        t2 = time.perf_counter()
        tinfo = {"want": twant, "tree": made, "build_s": t1 - t0, "mksquashfs_s": t2 - t1,
                 "image_bytes": os.path.getsize(os.path.join(tree_root, "tree.sqfs"))}
        with open(tstamp, "w") as f:
            json.dump(tinfo, f, indent=1)
    ctx.tree, ctx.tree_img, ctx.tree_info = tree, os.path.join(tree_root, "tree.sqfs"), tinfo


def fuse_mount(ctx, kind, img, mnt):
    if kind == "squashfuse":
        return CmdMount(kind, ["squashfuse", img, mnt], mnt, ["fusermount3", "-u", mnt])
    if kind == "squashfuse_ll":
        return CmdMount(kind, ["squashfuse_ll", img, mnt], mnt, ["fusermount3", "-u", mnt])
    if kind == "sqvenvfs":
        return CmdMount(kind, [ctx.sqvenvfs] + ctx.args.sqvenvfs_opt + [img, mnt], mnt,
                        [ctx.sqvenvfs, "--unmount", mnt])
    if kind == "ksquashfs":
        return CmdMount(kind, ["mount", "-t", "squashfs", "-o", "loop,ro", img, mnt], mnt,
                        ["umount", mnt], fuse=False)
    raise ValueError(kind)


def latfs_mount(ctx, backing, mnt, cache=False):
    a = ctx.args
    opts = (f"meta_delay_us={a.meta_delay_us},read_delay_us={a.read_delay_us},"
            f"read_bw_mbps={a.read_bw_mbps}" + (",keep_data_cache" if cache else ""))
    return CmdMount("latfs", [ctx.latfs, "-o", opts, backing, mnt], mnt,
                    ["fusermount3", "-u", mnt])


def import_rows(ctx):
    """(name, storage, mount factory, kind, import statement or None) for
    every import row; the stand-in rows once per stand-in setting."""
    m = os.path.join(ctx.work, "mnt")
    rows = [("dir", "local", lambda: DirMount(ctx.venv), "full", None)]
    if ctx.root_rows:
        rows.append(("kernel squashfs", "local",
                     lambda: fuse_mount(ctx, "ksquashfs", ctx.venv_img, f"{m}/ksquashfs"),
                     "light", None))
    for k, kind in (("squashfuse", "light"), ("squashfuse_ll", "light"), ("sqvenvfs", "full")):
        rows.append((k, "local", lambda k=k: fuse_mount(ctx, k, ctx.venv_img, f"{m}/{k}"),
                     kind, None))
    if ctx.root_rows:
        # The reference of the hot-set target: the hot image on local disk.
        rows.append(("kernel squashfs hot", "local",
                     lambda: fuse_mount(ctx, "ksquashfs", ctx.hot_img, f"{m}/ksquashfs-hot"),
                     "cold", None))
    rows.append(("sqvenvfs verified", "local",
                 lambda: fuse_mount(ctx, "sqvenvfs", ctx.venv_sealed, f"{m}/sqvenvfs-verified"),
                 "cold", None))
    s = ctx.shared_mnt
    hot = os.path.basename(ctx.hot_img)
    for storage, _ in STANDINS:
        rows.append(("dir", storage, lambda: DirMount(os.path.join(s, "venv")), "slow", None))
        if ctx.root_rows and ctx.args.standin_ksquashfs:
            rows.append(("kernel squashfs", storage,
                         lambda: fuse_mount(ctx, "ksquashfs", f"{s}/venv.sqfs", f"{m}/s-ksquashfs"),
                         "standin", None))
        for k in ("squashfuse_ll", "sqvenvfs"):
            rows.append((k, storage,
                         lambda k=k: fuse_mount(ctx, k, f"{s}/venv.sqfs", f"{m}/s-{k}"),
                         "standin", None))
        rows.append(("sqvenvfs hot", storage,
                     lambda: fuse_mount(ctx, "sqvenvfs", f"{s}/{hot}", f"{m}/s-sqvenvfs-hot"),
                     "standin", None))
        # The hot-first image carries a digest table, as everything
        # sqvenvfs-pack writes; the unsorted image, made by mksquashfs, does
        # not. The mount-time target compares the hot range's cost alone:
        # against the same unsorted image with a digest table.
        sealed = os.path.basename(ctx.venv_sealed)
        rows.append(("sqvenvfs verified", storage,
                     lambda: fuse_mount(ctx, "sqvenvfs", f"{s}/{sealed}",
                                        f"{m}/s-sqvenvfs-verified"),
                     "mount", None))
        # Another workload: the hot-first image must cost it nothing.
        rows.append(("sqvenvfs other", storage,
                     lambda: fuse_mount(ctx, "sqvenvfs", f"{s}/venv.sqfs", f"{m}/s-sqvenvfs"),
                     "cold", ctx.other_import))
        rows.append(("sqvenvfs hot other", storage,
                     lambda: fuse_mount(ctx, "sqvenvfs", f"{s}/{hot}", f"{m}/s-sqvenvfs-hot"),
                     "cold", ctx.other_import))
    return rows


def prepare_hot(ctx):
    """The hot-first image of the venv: record a cold import from the local
    image (-o record=), then sqvenvfs-pack --hot TRACE venv.sqfs venv-hot.sqfs.
    Kept for the next run while the image and the tools are the same."""
    data = os.path.dirname(ctx.venv_img)
    trace = os.path.join(data, "venv.trace")
    hot = os.path.join(data, "venv-hot.sqfs")
    stamp_file = os.path.join(ctx.work, "hot.json")
    st = os.stat(ctx.venv_img)
    # the tools: the script and its package (a change to a module alone
    # leaves the script's mtime as it was)
    tools = [ctx.pack] + glob.glob(os.path.join(os.path.dirname(ctx.pack),
                                                "sqvenvfs_tools", "*.py"))
    want = {"image": [st.st_size, st.st_mtime_ns], "import": ctx.runner.import_stmt,
            "pack": max(os.stat(f).st_mtime_ns for f in tools), "format": 1}
    if os.path.exists(stamp_file) and os.path.exists(hot) and not ctx.args.rebuild:
        with open(stamp_file) as f:
            old = json.load(f)
        if old.get("want") == want:
            ctx.hot_img, ctx.hot_info = hot, old
            return
    log("recording the import and packing the hot-first image")
    mnt = os.path.join(ctx.work, "mnt", "record")
    if os.path.exists(trace):
        os.unlink(trace)
    t0 = time.perf_counter()
    m = CmdMount("sqvenvfs", [ctx.sqvenvfs, "-o", f"record={trace}", ctx.venv_img, mnt], mnt,
                 [ctx.sqvenvfs, "--unmount", mnt])
    drop_caches(ctx.can_drop)
    m.up(PROBE)
    try:
        ctx.runner.one("record", mnt)
    finally:
        m.down()
    deadline = time.monotonic() + 120
    while not os.path.exists(trace) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not os.path.exists(trace):
        raise BenchError(f"{trace}: not written at unmount")
    t1 = time.perf_counter()
    r = run([ctx.pack, "-f", "--hot", trace, ctx.venv_img, hot])
    t2 = time.perf_counter()
    with open(trace) as f:
        files = sum(1 for ln in f if "\t" in ln)
    info = {"want": want, "record_s": t1 - t0, "pack_s": t2 - t1, "trace_files": files,
            "image_bytes": os.path.getsize(hot), "pack_summary": r.stdout.strip().splitlines()}
    with open(stamp_file, "w") as f:
        json.dump(info, f, indent=1)
    ctx.hot_img, ctx.hot_info = hot, info


def do_run(a):
    ctx = Ctx()
    ctx.args = a
    ctx.plan = dict(SMOKE_PLAN if a.smoke else FULL_PLAN)
    ctx.run_seq = 0  # cold and warm runs made so far (ImportRow)
    if a.warm_runs:
        ctx.plan["warm_runs"] = a.warm_runs
    if a.cold_runs:
        ctx.plan["cold_runs"] = a.cold_runs
    if a.tree_entries:
        ctx.plan["tree_entries"] = a.tree_entries
    if a.tree_mounts:
        ctx.plan["tree_mounts"] = a.tree_mounts
    ctx.work = a.work
    b = os.path.abspath(a.builddir)
    ctx.sqvenvfs = a.sqvenvfs or os.path.join(b, "daemon", "sqvenvfs")
    ctx.latfs = os.path.join(b, "tests", "bench", "sqvbench-latfs")
    ctx.walk = os.path.join(b, "tests", "bench", "sqvbench-walk")
    ctx.pack = os.path.join(b, "tools", "sqvenvfs-pack")
    ctx.other_import = SMOKE_OTHER_IMPORT if a.smoke else FULL_OTHER_IMPORT
    ctx.inspect = os.path.join(b, "tools", "sqvenvfs-inspect")
    for exe in (ctx.sqvenvfs, ctx.latfs, ctx.walk, ctx.pack, ctx.inspect):
        if not os.access(exe, os.X_OK):
            raise SkipBench(f"{exe}: not built (meson compile -C {a.builddir})")
    if not a.smoke:
        ensure_debs(FULL_DEB)
    for tool in ("squashfuse", "squashfuse_ll", "mksquashfs", "unsquashfs", "fusermount3"):
        if not shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin"):
            raise SkipBench(f"{tool}: not installed (see .ci/packages/bench.txt)")
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        raise SkipBench(f"/dev/fuse: {e.strerror}")
    ctx.can_drop = is_root() and not a.no_drop_caches
    WARM_TRIES[0] = 1 if a.smoke else a.warm_tries
    CONC_TRIES[0] = 1 if a.smoke else a.conc_tries
    ctx.root_rows = is_root() and not a.smoke
    os.makedirs(ctx.work, exist_ok=True)
    t_start = time.perf_counter()
    versions = tool_versions(ctx)
    prepare(ctx)
    ctx.runner = Runner(a, ctx.work, SMOKE_IMPORT if a.smoke else FULL_IMPORT)
    prepare_hot(ctx)
    t_prepared = time.perf_counter()
    # Other work on the machine skews everything: sample the load to report it.
    loads, stop = [], threading.Event()

    def sample():
        while not stop.wait(5):
            loads.append(float(open("/proc/loadavg").read().split()[0]))
    threading.Thread(target=sample, daemon=True).start()
    ctx.trace = FuseTrace()
    if ctx.trace.why:
        log(f"FUSE requests not counted: {ctx.trace.why}")
    results = {"versions": versions, "plan": ctx.plan, "smoke": a.smoke,
               "import": ctx.runner.import_stmt, "venv": ctx.venv_info, "tree": ctx.tree_info,
               "cold_cache": "dropped" if ctx.can_drop else "not dropped (remount only)",
               "standin": {"meta_delay_us": a.meta_delay_us, "read_delay_us": a.read_delay_us,
                           "read_bw_mbps": a.read_bw_mbps},
               "other_import": ctx.other_import, "hot": ctx.hot_info,
               "rows": [], "tree_rows": [], "command": " ".join(sys.argv),
               "metadata_blocks": {"venv": image_metadata_blocks(ctx.venv_img),
                                   "tree": image_metadata_blocks(ctx.tree_img)},
               "sqvenvfs_cache_size": sqv_cache_size(ctx.sqvenvfs, a.sqvenvfs_opt),
               "trace_available": ctx.trace.inst is not None}
    try:
        ctx.shared = os.path.join(ctx.work, "data")
        ctx.shared_mnt = os.path.join(ctx.work, "mnt", "standin")
        standins = {st: latfs_mount(ctx, ctx.shared, ctx.shared_mnt, cache)
                    for st, cache in STANDINS}
        rows = [r for r in import_rows(ctx) if not a.only or r[0] in a.only]
        for storage in dict.fromkeys(r[1] for r in rows):
            for st, sm in standins.items():
                if st != storage and sm.is_up:
                    sm.down()
            if storage in standins and not standins[storage].is_up:
                standins[storage].up("venv.sqfs")
            results["rows"] += measure_storage(ctx, [r for r in rows if r[1] == storage])
        for sm in standins.values():
            sm.down()
        t_tree = time.perf_counter()
        if not a.skip_tree:
            m = os.path.join(ctx.work, "mnt")
            trows = [("dir", lambda: DirMount(ctx.tree))]
            if ctx.root_rows:
                trows.append(("kernel squashfs",
                              lambda: fuse_mount(ctx, "ksquashfs", ctx.tree_img, f"{m}/t-ksquashfs")))
            for k in ("squashfuse_ll", "sqvenvfs"):
                trows.append((k, lambda k=k: fuse_mount(ctx, k, ctx.tree_img, f"{m}/t-{k}")))
            probe = "pkgs"
            for name, factory in trows:
                if a.only and name not in a.only:
                    continue
                log(f"tree: {name}")
                t0 = time.perf_counter()
                r = measure_tree_row(ctx, name, factory(), probe, ctx.tree_info["tree"]["entries"])
                r["elapsed_s"] = time.perf_counter() - t0
                results["tree_rows"].append(r)
            if not a.only or "unsquashfs" in a.only:
                log("tree: unsquashfs -l")
                try:
                    results["tree_unsquashfs_list_s"] = measure_unsquashfs_list(ctx)
                except BenchError as e:
                    log(f"unsquashfs -l: {e}")
        t_edit = time.perf_counter()
        if not a.only or "edit" in a.only:
            results["edit_row"] = bench_edit.edit_row(b, ctx.venv, ctx.work, SYS_PYTHON,
                                                      mksquashfs, log)
        t_pack = time.perf_counter()
        if not a.only or "pack" in a.only:
            results["pack_row"] = bench_pack.pack_row(b, ctx.venv, ctx.work, mksquashfs, log)
        parts = results["parts_s"] = {}
        for r in results["rows"]:
            parts[f"{r['storage']} rows"] = parts.get(f"{r['storage']} rows", 0) + r["elapsed_s"]
        parts["tree"] = t_edit - t_tree
        parts["edit"] = t_pack - t_edit
        parts["pack"] = time.perf_counter() - t_pack
    finally:
        unmount_all()
        ctx.trace.close()
    stop.set()
    results["versions"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    results["versions"]["load_1min_samples"] = loads
    results["foreign_cache_drops"] = dict(FOREIGN)
    results["prepare_s"] = t_prepared - t_start
    results["total_s"] = time.perf_counter() - t_start
    return results


class SkipBench(Exception):
    pass


# ---------------------------------------------------------------- the table

def fmt(x, unit="s"):
    if x is None:
        return "–"
    if unit == "s":
        return f"{x:.2f}"
    if unit == "ms":
        return f"{x * 1000:.0f}"
    if unit == "x":
        return f"{x:.2f}×"
    if unit == "n":
        return f"{x:,}"
    return str(x)


def ratio(a, b):
    return a / b if a is not None and b else None


def find_row(rows, name, storage):
    return next((r for r in rows if r["row"] == name and r.get("storage") == storage), None)


def targets(res):
    rows = res["rows"]
    L = lambda n: find_row(rows, n, "local") or {}
    S = lambda n: find_row(rows, n, "stand-in") or {}
    t = []
    sq, d, k, ll = L("sqvenvfs"), L("dir"), L("kernel squashfs"), L("squashfuse_ll")

    def add(what, val, goal, ok, note=""):
        t.append({"target": what, "measured": val, "goal": goal,
                  "met": None if ok is None else bool(ok), "note": note})

    w = ratio(sq.get("warm_s"), d.get("warm_s"))
    add("warm import vs plain dir", fmt(w, "x"), "≤ 1.05×", w and w <= 1.05,
        f"squashfuse_ll {fmt(ratio(ll.get('warm_s'), d.get('warm_s')), 'x')}, "
        f"squashfuse {fmt(ratio(L('squashfuse').get('warm_s'), d.get('warm_s')), 'x')}")
    c = ratio(sq.get("cold_s"), k.get("cold_s"))
    add("cold import vs kernel squashfs (local image)", fmt(c, "x"), "≤ 1.10×", c and c <= 1.10,
        f"squashfuse_ll {fmt(ratio(ll.get('cold_s'), k.get('cold_s')), 'x')}")
    cv = ratio(L("sqvenvfs verified").get("cold_s"), sq.get("cold_s"))
    add("cold import, image with digest table vs without", fmt(cv, "x"), "≤ 1.03×",
        cv and cv <= 1.03, "every data block checked against its XXH3-128")
    c32 = ratio(sq.get("conc32_s"), d.get("conc32_s"))
    add("32 concurrent importers vs plain dir", fmt(c32, "x"), "≤ 1.10×", c32 and c32 <= 1.10,
        f"{fmt(sq.get('conc32_s'))} s against {fmt(d.get('conc32_s'))} s")
    ops = sq.get("requests_by_op")
    if ops is not None:
        other = {k2: v for k2, v in ops.items() if k2 != "ioctl"}
        add("warm run: FUSE requests other than ioctl", fmt(sum(other.values()), "n"), "0",
            sum(other.values()) == 0,
            f"ioctl {ops.get('ioctl', 0):,}; squashfuse_ll {fmt(ll.get('requests'), 'n')} in all"
            + (f"; others: {', '.join(f'{k2} {v}' for k2, v in sorted(other.items()))}"
               if other else ""))
    else:
        add("warm run: FUSE requests other than ioctl", "–", "0", None,
            sq.get("requests_na") or "not measured")
    sd, sll, ssq = S("dir"), S("squashfuse_ll"), S("sqvenvfs")
    def with_mount(r):
        return (r.get("cold_s") or 0) + (r.get("mount_s") or 0) if r.get("cold_s") else None
    f1 = ratio(sd.get("cold_s"), ssq.get("cold_s"))
    add("stand-in cold import: plain dir / sqvenvfs", fmt(f1, "x"), "≥ 10×", f1 and f1 >= 10,
        f"counting the mount too: {fmt(ratio(sd.get('cold_s'), with_mount(ssq)), 'x')}")
    f2 = ratio(sll.get("cold_s"), ssq.get("cold_s"))
    add("stand-in cold import: squashfuse_ll / sqvenvfs", fmt(f2, "x"), "≥ 1.5×", f2 and f2 >= 1.5,
        f"counting the mount too: {fmt(ratio(with_mount(sll), with_mount(ssq)), 'x')}")
    kh = L("kernel squashfs hot")
    for st, _ in STANDINS:
        def R(n, st=st):
            return find_row(rows, n, st) or {}
        h, hl, u = R("sqvenvfs hot"), R("squashfuse_ll"), R("sqvenvfs")
        x = ratio(hl.get("cold_s"), h.get("cold_s"))
        add(f"{st} cold import: squashfuse_ll (unsorted) / sqvenvfs hot-first + prefetch",
            fmt(x, "x"), "≥ 3×", x and x >= 3,
            f"sqvenvfs unsorted: {fmt(ratio(hl.get('cold_s'), u.get('cold_s')), 'x')}")
        x = ratio(h.get("cold_s"), kh.get("cold_s"))
        add(f"{st} cold import: sqvenvfs hot-first + prefetch / local kernel squashfs "
            "(same image)", fmt(x, "x"), "≤ 1.3×", x and x <= 1.3)
        hs = h.get("sqvenvfs_stats_cold") or {}
        if hs.get("hot_bytes") is not None:
            limit = 50 + hs["hot_bytes"] / 2**22
            add(f"{st}: reads of the image, mount and cold import (hot-first)",
                fmt(hs.get("backing_reads"), "n"), f"≤ 50 + hot bytes / 4 MiB = {limit:.0f}",
                hs.get("backing_reads") is not None and hs["backing_reads"] <= limit,
                f"the stand-in served {fmt(h.get('standin_reads_import'), 'n')} read requests "
                "during the import (FUSE splits a read into requests of at most 1 MiB); "
                f"unsorted image: {fmt((u.get('sqvenvfs_stats_cold') or {}).get('backing_reads'), 'n')} reads")
        x = ratio(R("sqvenvfs hot other").get("cold_s"), R("sqvenvfs other").get("cold_s"))
        add(f"{st}: another workload, hot-first image / unsorted image (cold)", fmt(x, "x"),
            "≤ 1.05×", x and x <= 1.05, f"`{res.get('other_import')}`")
        v = R("sqvenvfs verified")
        dm = (h.get("mount_s") - v.get("mount_s")
              if h.get("mount_s") is not None and v.get("mount_s") is not None else None)
        add(f"{st}: mount time, hot range − none (both with a digest table)",
            f"{fmt(dm, 'ms')} ms", "≤ 10 ms", dm is not None and dm <= 0.010,
            f"{fmt(h.get('mount_s'), 'ms')} ms vs {fmt(v.get('mount_s'), 'ms')} ms; "
            f"the unsorted image without a digest table: {fmt(u.get('mount_s'), 'ms')} ms")
    mt = sq.get("mount_s")
    ent = res["venv"]["venv"]["entries"]
    add(f"mount, {ent:,}-entry venv", f"{fmt(mt, 'ms')} ms", "≤ 30 ms", mt and mt <= 0.030,
        mount_phases_note(sq))
    tr = next((r for r in res["tree_rows"] if r["row"] == "sqvenvfs"), {})
    tent = res["tree"]["tree"]["entries"]
    ul = res.get("tree_unsquashfs_list_s")
    tm = ratio(tr.get("mount_s"), ul)
    add(f"mount, {tent:,}-entry tree, vs `unsquashfs -l` of its image", fmt(tm, "x"),
        "≤ 0.8×", tm and tm <= 0.8,
        f"mount {fmt(tr.get('mount_s'), 'ms')} ms, unsquashfs -l {fmt(ul, 'ms')} ms; "
        + mount_phases_note(tr))
    blocks = res.get("metadata_blocks") or {}
    for label, st in (("venv", sq.get("sqvenvfs_stats_mount")),
                      ("tree", tr.get("sqvenvfs_stats"))):
        got = (st or {}).get("metadata_blocks_decompressed")
        want = blocks.get(label)
        add(f"metadata blocks decompressed per mount, {label}", fmt(got, "n"),
            f"= {fmt(want, 'n')} (the image's)", None if got is None or want is None
            else got == want)
    cache = res.get("sqvenvfs_cache_size")
    for label, r, n in (("venv", sq, ent), ("tree", tr, tent)):
        rss = r.get("rss_kib")
        st = r.get("sqvenvfs_stats") or {}
        if not rss or cache is None:
            add(f"daemon peak RSS, {label}", "–", "≤ 200 B/entry + block cache + 4 MiB",
                None, "not measured")
            continue
        rss_b = rss * 1024
        limit = 200 * n + cache + 4 * 2**20
        cb = st.get("cache_bytes")
        add(f"daemon peak RSS, {label} ({n:,} entries)", f"{rss_b / 2**20:.1f} MiB",
            f"≤ {limit / 2**20:.1f} MiB (200 B/entry + {cache / 2**20:.0f} MiB cache + 4 MiB)",
            rss_b <= limit,
            (f"without the {cb / 2**20:.1f} MiB of cached blocks: "
             f"{(rss_b - cb) / n:.0f} B/entry; " if cb is not None else "")
            + (f"index {st['index_bytes'] / n:.0f} B/entry" if st.get("index_bytes") else ""))
    bench_edit.edit_targets(res.get("edit_row"), add, fmt)
    bench_pack.pack_targets(res.get("pack_row"), add, fmt)
    return t


def table(res):
    out = []
    P = out.append
    rows = res["rows"]
    v = res["versions"]
    P(f"Import: `{res['import']}`; venv {res['venv']['venv']['entries']:,} entries, "
      f"{res['venv']['venv']['bytes'] / 1e6:.0f} MB, image {res['venv']['image_bytes'] / 1e6:.0f} MB. "
      f"Cold = page cache {res['cold_cache']}, file system remounted. "
      f"Stand-in: {res['standin']['meta_delay_us']} µs per metadata request, "
      f"{res['standin']['read_delay_us']} µs + {res['standin']['read_bw_mbps']} MB/s per read.")
    P("")
    procs = sorted({n for r in rows for n in row_counts(res["plan"], r.get("kind", "full"))[2]})
    P("| storage | row | mount ms | warm s | cold s | "
      + "".join(f"{n} procs s | " for n in procs)
      + "FUSE req. warm run | stand-in req. cold run | daemon peak RSS MiB |")
    P("|---|---|---:|---:|---:|" + "---:|" * len(procs) + "---:|---:|---:|")
    for r in rows:
        req = fmt(r.get("requests"), "n") if "requests" in r else ("n/a" if r.get("requests_na") else "–")
        sp = r.get("spoiled", [])

        def m(k):
            return fmt(r.get(k)) + (" †" if k in sp else "")
        P(f"| {r['storage']} | {r['row']} | {fmt(r.get('mount_s'), 'ms')} | {m('warm_s')} | "
          f"{fmt(r.get('cold_s'))} | " + "".join(f"{m(f'conc{n}_s')} | " for n in procs)
          + f"{req} | "
          f"{fmt(r.get('standin_requests'), 'n')} | "
          f"{fmt(r['rss_kib'] / 1024, 's') if r.get('rss_kib') else '–'} |")
    if any(r.get("spoiled") for r in rows):
        P("")
        P("† another process dropped the page cache during (one of) these runs, "
          "after every retry: partly cold, an upper bound.")
    colds = [r for r in rows if r.get("cold_all")]
    if colds:
        P("")
        P("Every cold import, in order (s); in brackets the first round's, made before "
          "the counted ones and not counted: " + "; ".join(
              f"{r['storage']} {r['row']}: "
              + "".join(f"[{fmt(t)}] " for t in r.get("prime_s", []))
              + ", ".join(fmt(t) for t in r["cold_all"]) for r in colds) + ".")
    P("")
    P("Ratios (time of the row / time of the reference on the same storage; lower is better):")
    P("")
    P("| storage | row | warm/dir | cold/dir | 32 procs/dir | warm/sqfuse_ll | cold/sqfuse_ll |")
    P("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        d = find_row(rows, "dir", r["storage"]) or {}
        ll = find_row(rows, "squashfuse_ll", r["storage"]) or {}
        cells = [fmt(ratio(r.get(k), ref.get(k)), "x") for ref, keys in
                 ((d, ("warm_s", "cold_s", "conc32_s")), (ll, ("warm_s", "cold_s")))
                 for k in keys]
        P(f"| {r['storage']} | {r['row']} | " + " | ".join(cells) + " |")
    if res["tree_rows"]:
        P("")
        P(f"Synthetic tree: {res['tree']['tree']['entries']:,} entries, image "
          f"{res['tree']['image_bytes'] / 1e6:.0f} MB; walk = nftw lstat of every entry.")
        P("")
        P("| row | mount ms | walk cold s | walk warm s | daemon peak RSS MiB | RSS bytes/entry |")
        P("|---|---:|---:|---:|---:|---:|")
        for r in res["tree_rows"]:
            rss = r.get("rss_kib")
            P(f"| {r['row']} | {fmt(r.get('mount_s'), 'ms')} | {fmt(r.get('walk_cold_s'))} | "
              f"{fmt(r.get('walk_warm_s'))} | {fmt(rss / 1024) if rss else '–'} | "
              f"{rss * 1024 // res['tree']['tree']['entries'] if rss else '–'} |")
        if res.get("tree_unsquashfs_list_s") is not None:
            P(f"| `unsquashfs -l` (cold, lists every entry) | "
              f"{fmt(res['tree_unsquashfs_list_s'], 'ms')} | – | – | – | – |")
    hot_rows = [r for r in rows if r["row"].startswith("sqvenvfs hot")]
    if hot_rows:
        hi = res.get("hot") or {}
        P("")
        P(f"Hot set: a trace of the import above ({fmt(hi.get('trace_files'), 'n')} files, "
          f"recorded in {fmt(hi.get('record_s'))} s), `sqvenvfs-pack --hot` re-laid the image "
          f"out in {fmt(hi.get('pack_s'))} s ({(hi.get('image_bytes') or 0) / 1e6:.0f} MB). "
          "Counters of the last cold mount and import; used = prefetched blocks the "
          "workload then asked for (stored bytes).")
        P("")
        P("| storage | row | hot range MiB | prefetch reads | prefetch MiB | used | "
          "image reads (mount + import) | stand-in read req. (import) |")
        P("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in hot_rows + [r for r in rows if r["row"] in ("sqvenvfs", "sqvenvfs other")
                             and r["storage"].startswith("stand-in")]:
            st = r.get("sqvenvfs_stats_cold") or {}
            pb = st.get("prefetch_bytes")
            used = (f"{100 * st.get('prefetch_used_bytes', 0) / pb:.0f} %" if pb else "–")
            P(f"| {r['storage']} | {r['row']} | "
              f"{fmt(st['hot_bytes'] / 2**20) if st.get('hot_bytes') is not None else '–'} | "
              f"{fmt(st.get('prefetch_reads'), 'n')} | "
              f"{fmt(pb / 2**20) if pb is not None else '–'} | {used} | "
              f"{fmt(st.get('backing_reads'), 'n')} | {fmt(r.get('standin_reads_import'), 'n')} |")
    bench_pack.pack_table(res.get("pack_row"), P, fmt)
    P("")
    P("Targets for sqvenvfs (ratios from this run):")
    P("")
    P("| target | goal | measured | met | note |")
    P("|---|---|---|---|---|")
    for t in targets(res):
        met = {True: "met", False: "**missed**", None: "see note"}[t["met"]]
        P(f"| {t['target']} | {t['goal']} | {t['measured']} | {met} | {t['note']} |")
    errs = [(r["row"], r.get("storage", "tree"), k, e)
            for r in rows + res["tree_rows"] + [res.get("edit_row") or {"row": "edit"},
                                                res.get("pack_row") or {"row": "pack"}]
            for k, e in r.get("errors", {}).items()]
    if errs:
        P("")
        P("Errors:")
        for row, st, k, e in errs:
            P(f"- {st} {row}: {k}: {e}")
    P("")
    P(f"Machine: {v['cpu']}, {v['cores']} cores, {v['mem_gib']} GiB; kernel {v['kernel']}; "
      f"1-minute load average during the run: median "
      f"{fmt(median(v.get('load_1min_samples') or [None]))}, max "
      f"{fmt(max(v.get('load_1min_samples') or [0]))} (2 cores); warm runs repeated because "
      f"another process dropped the caches meanwhile: {res.get('foreign_cache_drops', {}).get('discarded', 0)}"
      f"{', ' + str(res['foreign_cache_drops']['kept_contaminated']) + ' kept anyway' if res.get('foreign_cache_drops', {}).get('kept_contaminated') else ''}; "
      f"{reclaim.describe(res.get('reclaim'))}. "
      f"Versions: sqvenvfs {v['sqvenvfs']} (git {v['git']}), squashfuse {v['squashfuse']}, "
      f"libfuse {v['libfuse3-3']}, squashfs-tools {v['squashfs-tools']}, {v['python']}, "
      f"torch {v['python3-torch']}, numpy {v['python3-numpy']}. "
      f"Total {res['total_s'] / 60:.1f} min (preparing {res['prepare_s'] / 60:.1f} min"
      + "".join(f"; {k} {t / 60:.1f}" for k, t in (res.get("parts_s") or {}).items())
      + ").")
    return "\n".join(out)


def check_interleaved(rows):
    """measure_storage's promise: on each storage, no row makes its last
    cold (or warm) run before every row has made all but its last."""
    problems = []
    for storage in dict.fromkeys(r["storage"] for r in rows):
        for kind in ("cold", "warm"):
            seqs = [(r["row"], r.get(f"{kind}_seq") or []) for r in rows
                    if r["storage"] == storage]
            early = [s[:-1] for _, s in seqs if len(s) > 1]
            if not early:
                continue
            last_early = max(max(s) for s in early)
            for name, s in seqs:
                if s and s[-1] < last_early:
                    problems.append(f"{storage} {name}: last {kind} run made before the "
                                    f"other rows' earlier ones (not interleaved)")
    return problems


def check_complete(res, want_rows):
    """The smoke test's verdict: every expected row with every measurement."""
    problems = []
    for storage, name in want_rows:
        r = find_row(res["rows"], name, storage)
        if r is None:
            problems.append(f"{storage} {name}: row missing")
            continue
        for k, e in r.get("errors", {}).items():
            problems.append(f"{storage} {name}: {k}: {e}")
        cold_runs, warm_runs, conc = row_counts(res["plan"], r.get("kind", "full"))
        need = (["cold_s"] if cold_runs else []) + [f"conc{n}_s" for n in conc]
        if warm_runs:
            need.append("warm_s")
        if not name.startswith(("dir", "kernel squashfs")):
            need += ["mount_s"] + (["rss_kib"] if cold_runs else [])
            need += ["requests"] if "requests_na" not in r and warm_runs else []
        if storage.startswith("stand-in") and res.get("trace_available") and cold_runs:
            need.append("standin_requests")
        if name.startswith("sqvenvfs hot"):
            st = r.get("sqvenvfs_stats_cold") or {}
            if not st.get("hot_bytes") or not st.get("prefetch_reads"):
                problems.append(f"{storage} {name}: no hot range prefetched ({st})")
        for k in need:
            if r.get(k) is None:
                problems.append(f"{storage} {name}: {k} missing")
        for what, want in (("cold", cold_runs), ("warm", warm_runs)):
            got = len(r.get(f"{what}_all") or [])
            if got != want:
                problems.append(f"{storage} {name}: {got} {what} runs, not {want}")
    problems += check_interleaved(res["rows"])
    if res.get("sqvenvfs_cache_size") is None:
        problems.append("sqvenvfs cache_size: not found (the memory targets need it)")
    problems += bench_edit.edit_check(res.get("edit_row"))
    problems += bench_pack.pack_check(res.get("pack_row"))
    for name in ("dir", "squashfuse_ll", "sqvenvfs"):
        r = next((t for t in res["tree_rows"] if t["row"] == name), None)
        if r is None:
            problems.append(f"tree {name}: row missing")
            continue
        for k, e in r.get("errors", {}).items():
            problems.append(f"tree {name}: {k}: {e}")
        for k in ["walk_cold_s", "walk_warm_s"] + (["mount_s", "rss_kib"] if name != "dir" else []):
            if r.get(k) is None:
                problems.append(f"tree {name}: {k} missing")
        if name == "sqvenvfs" and (r.get("sqvenvfs_stats") or {}).get(
                "metadata_blocks_decompressed") is None:
            problems.append("tree sqvenvfs: metadata_blocks_decompressed missing")
    if res.get("tree_unsquashfs_list_s") is None:
        problems.append("tree: unsquashfs -l missing")
    for label in ("venv", "tree"):
        if (res.get("metadata_blocks") or {}).get(label) is None:
            problems.append(f"{label}: the image's metadata blocks not counted")
    return problems


SMOKE_ROWS = [("local", "dir"), ("local", "squashfuse"), ("local", "squashfuse_ll"),
              ("local", "sqvenvfs"), ("local", "sqvenvfs verified")] + [
    (st, name) for st, _ in STANDINS
    for name in ("dir", "squashfuse_ll", "sqvenvfs", "sqvenvfs hot", "sqvenvfs verified",
                 "sqvenvfs other", "sqvenvfs hot other")]


def main():
    if sys.argv[1:2] == ["scale"]:
        import bench_scale  # it imports this module: not at the top
        return bench_scale.main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", nargs="?", default="run", choices=["run", "make-venv", "make-tree"])
    p.add_argument("dest", nargs="?", help="for make-venv and make-tree")
    p.add_argument("--packages", nargs="+", default=FULL_PACKAGES)
    p.add_argument("--entries", type=int, default=400_000)
    p.add_argument("-C", "--builddir", default="build")
    p.add_argument("--workdir")
    p.add_argument("--smoke", action="store_true", help="tiny venv, one run of each non-root row")
    p.add_argument("--sqvenvfs", help="daemon to measure (default BUILDDIR/daemon/sqvenvfs)")
    p.add_argument("--sqvenvfs-opt", action="append", default=[],
                   help="extra argument for sqvenvfs (repeat)")
    p.add_argument("--meta-delay-us", type=int, default=1000)
    p.add_argument("--read-delay-us", type=int, default=1000)
    p.add_argument("--read-bw-mbps", type=int, default=1000)
    p.add_argument("--warm-runs", type=int)
    p.add_argument("--cold-runs", type=int)
    p.add_argument("--tree-entries", type=int)
    p.add_argument("--tree-mounts", type=int)
    p.add_argument("--warm-tries", type=int, default=4,
                   help="runs of a warm measurement spoiled by another process's drop_caches")
    p.add_argument("--conc-tries", type=int, default=4)
    p.add_argument("--skip-tree", action="store_true")
    p.add_argument("--standin-ksquashfs", action="store_true",
                   help="also a kernel squashfs mount of the image on the stand-in")
    p.add_argument("--only", action="append", help="only rows of this name (repeat)")
    p.add_argument("--no-drop-caches", action="store_true")
    p.add_argument("--keep-reclaim", action="store_true",
                   help="leave the machine's proactive reclaim (DAMON page-out) running")
    p.add_argument("--rebuild", action="store_true", help="rebuild the venv and the tree")
    p.add_argument("--json", help="write all results here")
    a = p.parse_args()

    if a.command == "make-venv":
        print(json.dumps(make_venv(os.path.abspath(a.dest), a.packages), indent=1))
        return 0
    if a.command == "make-tree":
        print(json.dumps(make_tree(os.path.abspath(a.dest), a.entries)))
        return 0

    def on_signal(sig, frame):
        raise KeyboardInterrupt
    # SIGHUP too (a dropped session): the run's finally clauses restore
    # what it paused and unmount what it mounted.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    # The smoke run works in a temporary directory it removes; the full run
    # keeps its venv, tree and results in /var/tmp/sqvbench for the next run.
    temp_work = a.smoke and not a.workdir
    if temp_work:
        a.work = tempfile.mkdtemp(prefix="sqvbench-smoke-", dir="/var/tmp")
    else:
        a.work = os.path.abspath(a.workdir or "/var/tmp/sqvbench")
    try:
        # Not in the smoke run: a test has no business pausing the machine's
        # memory policy, and its table is not a result.
        with reclaim.paused(is_root() and not a.smoke and not a.keep_reclaim, log) as note:
            res = do_run(a)
        res["reclaim"] = note
    except SkipBench as e:
        print(f"bench: {e}", file=sys.stderr)
        if a.smoke and os.environ.get("SQVENVFS_TEST_NO_SKIP") == "1":
            return 1
        return 77 if a.smoke else 1
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        if temp_work:
            shutil.rmtree(a.work, ignore_errors=True)
    text = table(res)
    print(text)
    if not temp_work or a.json:
        out = a.json or os.path.join(a.work, "results-%s.json" % time.strftime("%Y%m%dT%H%M%S"))
        with open(out, "w") as f:
            json.dump(res, f, indent=1)
        with open(out[:-5] + ".md" if out.endswith(".json") else out + ".md", "w") as f:
            f.write(text + "\n")
        log(f"results in {out}")
    if a.smoke:
        return smoke_verdict("smoke", check_complete(res, SMOKE_ROWS),
                             "complete table, every row measured")
    return 0


def smoke_verdict(what, problems, ok):
    """A smoke run's exit status: 1 and each problem on stderr, or 0."""
    for pr in problems:
        print(f"bench: {what}: {pr}", file=sys.stderr)
    if problems:
        print(f"bench: {what}: FAILED: the table is incomplete", file=sys.stderr)
        return 1
    print(f"bench: {what}: {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
