#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Many threads in several processes read random ranges of random files at
once through a mount with a small block cache, and every byte is checked
against the source."""

import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool

import sqvtest as t

PROCS = 4
THREADS = 8
READS_PER_THREAD = 150


def worker(args):
    src, mnt, files, seed = args
    rng = random.Random(seed)
    bad = []

    def one(tseed):
        r = random.Random(tseed)
        for _ in range(READS_PER_THREAD):
            rel = r.choice(files)
            size = os.path.getsize(os.path.join(src, rel))
            off = r.randint(0, max(0, size - 1))
            n = r.choice([1, 100, 4096, 65536, 200_000, 1 << 20])
            with open(os.path.join(mnt, rel), "rb") as f:
                got = os.pread(f.fileno(), n, off)
            with open(os.path.join(src, rel), "rb") as f:
                want = os.pread(f.fileno(), n, off)
            if got != want:
                bad.append((rel, off, n))
        return True

    with ThreadPoolExecutor(THREADS) as ex:
        list(ex.map(one, [rng.random() for _ in range(THREADS)]))
    return bad


def main():
    t.require_mount_capability()
    with t.tempdir() as d:
        src = os.path.join(d, "src")
        files = t.random_tree(src, seed=7, nfiles=250, ndirs=20, max_depth=3)
        rels = [os.path.relpath(p, src) for p in files]
        img = t.mksquashfs(src, os.path.join(d, "img.sqfs"), "zstd",
                           extra=["-b", "64K"])
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        with t.mounted([img], mnt, opts=["-o", "threads=8,cache_size=1M"]):
            bad = []
            for rnd in range(3):
                if os.geteuid() == 0:
                    # Drop the kernel's page cache so reads reach the daemon.
                    t.drop_caches(1)
                with Pool(PROCS) as pool:
                    for b in pool.map(worker, [(src, mnt, rels, rnd * 100 + i)
                                               for i in range(PROCS)]):
                        bad.extend(b)
            t.check(not bad, f"{PROCS * THREADS * READS_PER_THREAD * 3} "
                    f"concurrent reads return the stored bytes ({bad[:3]})")
            s = t.stats(mnt)
            print({k: s[k] for k in ("read", "cache_hits", "cache_misses",
                                     "cache_evictions", "backing_reads")})
            t.check(s["read"] > 100, "the reads reached the daemon")
            t.check(s["cache_evictions"] > 0,
                    "the 1 MiB cache was under pressure (evictions happened)")
            t.check(s["cache_bytes"] <= 1 << 20,
                    "the cache stays within its configured size")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
