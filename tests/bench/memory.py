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
            st = os.lstat(p)
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


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("images", nargs="+")
    p.add_argument("-C", dest="builddir", default="build")
    p.add_argument("-o", dest="opts", default="")
    p.add_argument("--readers", type=int, default=16)
    a = p.parse_args()
    exe = os.path.join(os.path.abspath(a.builddir), "daemon", "sqvenvfs")
    mnt = tempfile.mkdtemp(prefix="sqvmem-")
    cmd = [exe, "-f", *(["-o", a.opts] if a.opts else []),
           *[os.path.abspath(i) for i in a.images], mnt]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 60
        while os.stat(mnt).st_dev == os.stat(os.path.dirname(mnt)).st_dev:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"memory.py: {exe} did not mount")
            time.sleep(0.001)
        print(f"mount usable after {(time.perf_counter() - t0) * 1000:.0f} ms "
              f"(guidance only; bench.py measures mount times)")
        snapshot("after the mount", proc.pid, exe, mnt)
        files = walk(mnt)
        snapshot(f"after a walk of every entry ({len(files):,} files)",
                 proc.pid, exe, mnt)
        read_all(files, a.readers)
        snapshot(f"after {a.readers} readers read every file", proc.pid,
                 exe, mnt)
    finally:
        subprocess.run([exe, "--unmount", mnt], capture_output=True)
        proc.wait(timeout=30)
        os.rmdir(mnt)


if __name__ == "__main__":
    main()
