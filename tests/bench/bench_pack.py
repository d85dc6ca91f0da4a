# SPDX-License-Identifier: BSD-2-Clause
"""The benchmark's pack-speed rows (issue 16): sqvenvfs-pack against
mksquashfs on the bench venv, in the same run, on one working copy of it.

  a. plain mksquashfs of the venv, compiled as pip leaves it (the
     reference);
  b. a full sqvenvfs-pack of that compiled venv (goal: <= 2x a);
  d. a delta over b's image after adding one small package (a few dozen
     modules, compiled as pip would) (goal: <= 0.3x b);
  c. a pack of the venv with every pyc removed, which must compile
     everything, against compileall + mksquashfs done by hand on the same
     tree (goal: <= 1.2x).

Times are wall-clock seconds with a warm page cache (the copy was just
made): a and b are run in turn, PAIRS times each, and their medians
compared (in two runs of the same code, single runs of each put the ratio
at 1.84 and 2.25); the others are one run each. The modules each pack
compiled (from its summary) are recorded beside them: counts that load on
the machine does not change."""

import os
import re
import shutil
import statistics
import subprocess
import time

from bench_edit import run_checked, tool_env, write_modules

PAIRS = 3


def _timed(cmd):
    t0 = time.perf_counter()
    r = run_checked(cmd, env=tool_env())
    return time.perf_counter() - t0, r


def _compiled(summary):
    """(modules compiled, modules whose valid pycs were kept), from a
    pack's summary line."""
    m = re.search(r"(\d+) modules compiled, (\d+) with valid pycs kept",
                  summary)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def _drop_pycs(root):
    for dirpath, dirnames, _ in os.walk(root):
        if "__pycache__" in dirnames:
            shutil.rmtree(os.path.join(dirpath, "__pycache__"))
            dirnames.remove("__pycache__")


def _small_package(venv):
    """One small package in site-packages, as pip installs it (pycs
    included): returns its module count."""
    lib = os.path.join(venv, "lib")
    site = os.path.join(lib, next(d for d in sorted(os.listdir(lib))
                                  if d.startswith("python")), "site-packages")
    pkg = os.path.join(site, "sqvbench_small")
    os.makedirs(pkg)
    n = write_modules(pkg)
    run_checked([os.path.join(venv, "bin", "python"), "-m", "compileall",
                 "-q", pkg], env=tool_env())
    return n


def pack_row(builddir, venv, work, mksquashfs, log):
    pack = os.path.join(builddir, "tools", "sqvenvfs-pack")
    d = os.path.join(work, "pack")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    tree = os.path.join(d, "venv")
    img = lambda n: os.path.join(d, n + ".sqfs")
    row = {"row": "sqvenvfs-pack speed", "errors": {}}
    try:
        # the venv as pip leaves it: timestamp pycs beside every module
        run_checked(["cp", "-a", venv, tree])
        run_checked([os.path.join(tree, "bin", "python"), "-m", "compileall",
                     "-q", "-j0", tree], env=tool_env())

        plain, full = [], []
        for i in range(1, PAIRS + 1):
            log(f"pack: plain mksquashfs of the compiled venv ({i} of "
                f"{PAIRS})")
            t0 = time.perf_counter()
            mksquashfs(tree, img("plain"))
            plain.append(time.perf_counter() - t0)

            log(f"pack: full sqvenvfs-pack of the compiled venv ({i} of "
                f"{PAIRS})")
            if os.path.exists(img("full")):
                os.unlink(img("full"))
            t, r = _timed([pack, tree, img("full")])
            full.append(t)
        row["mksquashfs_runs"], row["full_runs"] = plain, full
        row["mksquashfs_s"] = statistics.median(plain)
        row["full_s"] = statistics.median(full)
        row["full_compiled"], row["full_kept"] = _compiled(r.stdout)

        log("pack: delta after adding one small package")
        row["small_modules"] = _small_package(tree)
        row["delta_s"], r = _timed([pack, "--base", img("full"), tree,
                                    img("delta")])
        row["delta_compiled"], row["delta_kept"] = _compiled(r.stdout)
        os.unlink(img("delta"))

        log("pack: sqvenvfs-pack that compiles every module")
        _drop_pycs(tree)
        row["compile_all_s"], r = _timed([pack, tree, img("nopyc")])
        row["compile_all_compiled"], _ = _compiled(r.stdout)
        for n in ("plain", "full", "nopyc"):
            os.unlink(img(n))

        log("pack: compileall + mksquashfs by hand")
        t0 = time.perf_counter()
        run_checked([os.path.join(tree, "bin", "python"), "-m", "compileall",
                     "-q", "-j0", "--invalidation-mode", "unchecked-hash",
                     tree], env=tool_env())
        mksquashfs(tree, img("byhand"))
        row["by_hand_s"] = time.perf_counter() - t0

        row["full_ratio"] = row["full_s"] / row["mksquashfs_s"]
        row["compile_ratio"] = row["compile_all_s"] / row["by_hand_s"]
        row["delta_ratio"] = row["delta_s"] / row["full_s"]
    except (RuntimeError, OSError, StopIteration) as e:
        row["errors"]["pack"] = str(e)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return row


def pack_targets(row, add, fmt):
    if not row:
        return
    add("pack: full sqvenvfs-pack of a compiled venv vs mksquashfs",
        fmt(row.get("full_ratio"), "x"), "≤ 2×",
        row.get("full_ratio") is not None and row["full_ratio"] <= 2,
        f"medians of {len(row.get('full_runs') or [])}: "
        f"{fmt(row.get('full_s'))} s vs {fmt(row.get('mksquashfs_s'))} s; "
        f"{fmt(row.get('full_compiled'), 'n')} modules compiled")
    add("pack: compiling every module vs compileall + mksquashfs by hand",
        fmt(row.get("compile_ratio"), "x"), "≤ 1.2×",
        row.get("compile_ratio") is not None and row["compile_ratio"] <= 1.2,
        f"{fmt(row.get('compile_all_s'))} s vs {fmt(row.get('by_hand_s'))} s;"
        f" {fmt(row.get('compile_all_compiled'), 'n')} modules compiled")
    add("pack: delta after adding one small package vs a full pack",
        fmt(row.get("delta_ratio"), "x"), "≤ 0.3×",
        row.get("delta_ratio") is not None and row["delta_ratio"] <= 0.3,
        f"{fmt(row.get('delta_s'))} s vs {fmt(row.get('full_s'))} s; "
        f"{fmt(row.get('delta_compiled'), 'n')} modules compiled (the "
        f"package's {fmt(row.get('small_modules'), 'n')} come with pycs)")


def pack_table(row, P, fmt):
    """The rows' own table: each time, and what the pack compiled."""
    if not row:
        return
    P("")
    runs = lambda k: ", ".join(fmt(t) for t in row.get(k) or [])
    P(f"Pack speed, on a copy of the venv (warm page cache; a and b: the "
      f"median of {len(row.get('full_runs') or [])} runs in turn, a "
      f"{runs('mksquashfs_runs')} s, b {runs('full_runs')} s; the others "
      f"one run each):")
    P("")
    P("| what | s | modules compiled | valid pycs kept |")
    P("|---|---:|---:|---:|")
    for what, k, c in (
            ("a. mksquashfs of the compiled venv", "mksquashfs_s", None),
            ("b. sqvenvfs-pack of the compiled venv", "full_s", "full"),
            ("d. sqvenvfs-pack --base b: one small package added",
             "delta_s", "delta"),
            ("c. sqvenvfs-pack of the venv without pycs", "compile_all_s",
             "compile_all"),
            ("c'. compileall + mksquashfs by hand", "by_hand_s", None)):
        n = [fmt(row.get(f"{c}_{x}"), "n") if c else "–"
             for x in ("compiled", "kept")]
        P(f"| {what} | {fmt(row.get(k))} | {n[0]} | {n[1]} |")


def pack_check(row):
    """The smoke's verdict on the rows: there, and every value measured."""
    if row is None:
        return ["pack: row missing"]
    problems = [f"pack: {k}: {e}" for k, e in row.get("errors", {}).items()]
    for k in ("mksquashfs_s", "full_s", "delta_s", "compile_all_s",
              "by_hand_s", "full_ratio", "compile_ratio", "delta_ratio",
              "full_compiled", "delta_compiled", "compile_all_compiled"):
        if row.get(k) is None:
            problems.append(f"pack: {k} missing")
    return problems
