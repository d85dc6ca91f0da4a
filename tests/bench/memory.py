#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Where the sqvenvfs daemon's memory goes: a breakdown of its resident set.

    memory.py [-C BUILDDIR] [-o OPTS] [--readers N] IMAGE [IMAGE...]

Mounts the images in the foreground (so the daemon's pid is ours), reads
/proc/PID/status and /proc/PID/smaps three times: just after the mount,
after a walk that stats every entry, and after N parallel readers have read
every regular file (so that every FUSE worker thread has run), and prints,
for each moment, the resident set split by what holds it:

  heap (main arena)     brk heap: the index, the build's leftovers, small
                        allocations of the main thread
  thread arenas         glibc's per-thread malloc arenas (64 MiB reserved
                        each, resident as used)
  thread stacks         anonymous 8 MiB mappings with a guard page
  big allocations       other anonymous mappings: cached blocks, per-thread
                        I/O buffers, libfuse's request buffers
  main stack, binary, libfuse3, libzstd, libc, other libraries

with VmHWM (the peak the bench reports) and the daemon's --stats
(index_bytes, cache_bytes, metadata_blocks_decompressed). Also the time from
starting the daemon to the mount being usable, for guidance only (timings
belong to bench.py's runs). Needs root or fusermount3 and /dev/fuse.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

KIB = 1024


def smaps(pid):
    """[(start, end, perms, path, rss_kib)] of the process's mappings."""
    maps, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                cur = [lo, hi, head[1], head[5] if len(head) > 5 else "", 0]
                maps.append(cur)
            elif head[0] == "Rss:":
                cur[4] = int(head[1])
    return maps


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                out[k] = int(v.split()[0])
    out["threads"] = len(os.listdir(f"/proc/{pid}/task"))
    return out


def classify(maps):
    """Resident KiB by holder (see the module's docstring)."""
    out = {}

    def add(k, v):
        out[k] = out.get(k, 0) + v
    for i, (lo, hi, perms, path, rss) in enumerate(maps):
        size = (hi - lo) // KIB
        if path == "[heap]":
            add("heap (main arena)", rss)
        elif path == "[stack]":
            add("main stack", rss)
        elif path.startswith("["):
            add("kernel ([vdso], [vvar])", rss)
        elif path:
            name = os.path.basename(path)
            for lib in ("libfuse3", "libzstd", "libc.", "libsquashfuse",
                        "libz.", "liblzma", "liblz4", "liblzo2"):
                if name.startswith(lib):
                    add(lib.rstrip("."), rss)
                    break
            else:
                add("binary" if name.startswith("sqvenvfs") else
                    "other libraries", rss)
        else:
            prev = maps[i - 1] if i else None
            guarded = prev and prev[1] == lo and prev[2] == "---p" and not prev[3]
            if perms == "---p":
                continue
            if guarded and size == 8192:
                add("thread stacks", rss)
            elif guarded and prev and (size + (prev[1] - prev[0]) // KIB) % 65536 == 0:
                add("thread arenas", rss)
            elif lo % (64 << 20) == 0 and size < 65536:
                add("thread arenas", rss)
            else:
                add("big allocations", rss)
    return out


def sqv_stats(exe, mnt):
    r = subprocess.run([exe, "--stats", mnt], capture_output=True, text=True)
    out = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().isdigit():
            out[k] = int(v)
    return out


def snapshot(label, pid, exe, mnt):
    st = status(pid)
    parts = classify(smaps(pid))
    s = sqv_stats(exe, mnt)
    print(f"\n## {label}: VmRSS {st['VmRSS'] / KIB:.1f} MiB, VmHWM "
          f"{st['VmHWM'] / KIB:.1f} MiB, {st['threads']} threads")
    for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {k:28s} {v / KIB:7.2f} MiB")
    print(f"  (--stats: index_bytes {s.get('index_bytes', 0) / 2**20:.2f} MiB, "
          f"cache_bytes {s.get('cache_bytes', 0) / 2**20:.2f} MiB, "
          f"entries {s.get('entries', 0):,}, metadata_blocks_decompressed "
          f"{s.get('metadata_blocks_decompressed', '-')})")
    return {"status": st, "parts": parts, "stats": s}


def walk(mnt):
    files = []
    for root, dirs, names in os.walk(mnt):
        for n in dirs + names:
            p = os.path.join(root, n)
            os.lstat(p)  # what a walk asks the daemon for
            if os.path.isfile(p) and not os.path.islink(p):
                files.append(p)
    return files


def read_all(files, readers):
    def one(part):
        for p in part:
            with open(p, "rb") as f:
                while f.read(1 << 20):
                    pass
    ts = [threading.Thread(target=one, args=(files[i::readers],))
          for i in range(readers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def measure(exe, images, opts, readers, quiet=False):
    """One mount: snapshots after the mount, a walk and the reads."""
    mnt = tempfile.mkdtemp(prefix="sqvmem-")
    cmd = [exe, "-f", *(["-o", opts] if opts else []),
           *[os.path.abspath(i) for i in images], mnt]
    out = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 60
        while os.stat(mnt).st_dev == os.stat(os.path.dirname(mnt)).st_dev:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"memory.py: {exe} did not mount")
            time.sleep(0.001)
        out["mount_ms"] = (time.perf_counter() - t0) * 1000
        show = (lambda *a: None) if quiet else snapshot
        out["mount"] = (show or snapshot)("after the mount", proc.pid, exe, mnt) \
            if not quiet else {"status": status(proc.pid)}
        files = walk(mnt)
        if not quiet:
            snapshot(f"after a walk of every entry ({len(files):,} files)",
                     proc.pid, exe, mnt)
        read_all(files, readers)
        out["end"] = (snapshot(f"after {readers} readers read every file",
                               proc.pid, exe, mnt) if not quiet else
                      {"status": status(proc.pid), "stats": sqv_stats(exe, mnt),
                       "parts": classify(smaps(proc.pid))})
    finally:
        subprocess.run([exe, "--unmount", mnt], capture_output=True)
        proc.wait(timeout=30)
        os.rmdir(mnt)
    return out


def sweep(exe, images, readers):
    """The same workload three times: default options, no cache, and no
    cache with one thread. The cache is the default peak less what the
    daemon holds without one; a thread is the difference the other threads
    make, at the end of the reads (not the peak, which without a cache is
    the index build's)."""
    runs = {k: measure(exe, images, o, readers, quiet=True)
            for k, o in (("default", ""), ("cache_size=0", "cache_size=0"),
                         ("cache_size=0,threads=1", "cache_size=0,threads=1"))}
    mib = lambda kib: kib / KIB
    d = runs["default"]["end"]
    st = d["stats"]
    peak = runs["default"]["end"]["status"]["VmHWM"]
    nocache = runs["cache_size=0"]["end"]["status"]["VmRSS"]
    one = runs["cache_size=0,threads=1"]["end"]["status"]["VmRSS"]
    build = runs["cache_size=0"]["mount"]["status"]["VmHWM"]
    files = d["status"].get("RssFile", 0)
    # Besides the FUSE workers: the main thread (which only waits for them
    # to end) and the thread that waits for the stop signal (162fa73).
    # With threads=1 the main thread serves, so the workers of the default
    # mount add nthreads - 1 threads' worth to that one's resident set.
    nthreads = d["status"]["threads"] - 2
    entries = st.get("entries", 0)
    per_thread = (nocache - one) / max(nthreads - 1, 1)
    index = st.get("index_bytes", 0) / KIB
    rest = nocache - files - index - per_thread * nthreads
    lines = []
    P = lines.append
    P(f"## peak RSS (VmHWM) by holder, default options ({entries:,} "
      f"entries, {nthreads} FUSE worker threads)")
    P(f"  peak in all                  {mib(peak):7.2f} MiB")
    P(f"  block cache                  {mib(peak - nocache):7.2f} MiB "
      f"(cache_bytes {st.get('cache_bytes', 0) / 2**20:.2f} MiB)")
    P(f"  index (index_bytes)          {mib(index):7.2f} MiB "
      f"({index * KIB / max(entries, 1):.0f} B/entry)")
    P(f"  per worker thread            {mib(per_thread):7.2f} MiB "
      f"x {nthreads} = {mib(per_thread * nthreads):.2f} MiB")
    P(f"  shared libraries and binary  {mib(files):7.2f} MiB (RssFile)")
    P(f"  the rest (main thread, heap) {mib(rest):7.2f} MiB")
    P(f"  besides the cache            {mib(nocache):7.2f} MiB "
      f"= {nocache * KIB / max(entries, 1):.0f} B/entry")
    P(f"  peak while the index is built {mib(build):6.2f} MiB (no cache yet)")
    P(f"  mount, for guidance only     {runs['default']['mount_ms']:.0f} ms")
    print("\n" + "\n".join(lines))
    data = {"entries": entries, "threads": nthreads, "peak_kib": peak,
            "cache_kib": peak - nocache, "cache_bytes": st.get("cache_bytes", 0),
            "index_kib": index, "per_thread_kib": per_thread, "files_kib": files,
            "rest_kib": rest, "besides_cache_kib": nocache, "build_peak_kib": build,
            "mount_ms": runs["default"]["mount_ms"], "runs": runs}
    return lines, data


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def write_results(where, exe, images, lines, data):
    """The sweep as a named run: JSON with the versions, and its table."""
    git = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)),
                          "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    version = subprocess.run([exe, "--version"], capture_output=True,
                             text=True).stdout.strip()
    stem = os.path.join(where, "results-memory-%s" % time.strftime("%Y%m%dT%H%M%S"))
    images = [os.path.abspath(i) for i in images]
    head = (f"memory.py --sweep of {', '.join(images)} "
            f"({sum(os.path.getsize(i) for i in images):,} bytes); {version} (git {git}); "
            f"1-minute load average at the end {loadavg()}")
    with open(stem + ".json", "w") as f:
        json.dump({"git": git, "version": version, "images": images, **data}, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(head + "\n\n" + "\n".join(lines) + "\n")
    print(f"memory.py: results in {stem}.{{json,md}}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("images", nargs="+")
    p.add_argument("-C", dest="builddir", default="build")
    p.add_argument("-o", dest="opts", default="")
    p.add_argument("--readers", type=int, default=16)
    p.add_argument("--sweep", action="store_true",
                   help="three mounts (default, cache_size=0, and "
                        "cache_size=0,threads=1): the peak split by holder")
    p.add_argument("--results", metavar="DIR",
                   help="with --sweep: also write DIR/results-memory-TIMESTAMP.{json,md}, "
                        "the named run docs/performance.md cites")
    a = p.parse_args()
    if a.results and not a.sweep:
        p.error("--results goes with --sweep")
    if a.results and not os.access(a.results, os.W_OK | os.X_OK):
        p.error(f"--results {a.results}: not a directory this user can write")
    exe = os.path.join(os.path.abspath(a.builddir), "daemon", "sqvenvfs")
    if a.sweep:
        lines, data = sweep(exe, a.images, a.readers)
        if a.results:
            write_results(a.results, exe, a.images, lines, data)
        return
    out = measure(exe, a.images, a.opts, a.readers)
    print(f"\nmount usable after {out['mount_ms']:.0f} ms (guidance only; "
          f"bench.py measures mount times)")


if __name__ == "__main__":
    main()
