#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""I/O faults under a mounted image.

A fault-injecting layer under the image (faultinject.c, preloaded into the
daemon) makes reads of chosen bytes of the image fail with EIO or come back
short, switched on and off while the daemon runs; the image file is also
truncated, overwritten, replaced and deleted under a running daemon. In
every case the reader of a damaged file gets EIO (never wrong bytes), every
other file still reads, the daemon keeps serving and exits 0, and each
fault is logged once, however many requests meet it.
"""

import errno
import os
import random
import shutil
import sys

import sqvtest as t


def image_layout(img):
    """(data end, first table start) from the superblock: the data blocks
    of the files lie in [96, inode_table_start)."""
    raw = open(img, "rb").read(96)
    import struct
    inode_table = struct.unpack_from("<Q", raw, 64)[0]
    return inode_table


def read_or_errno(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        return e.errno


def main():
    t.require_mount_capability()
    lib = os.environ.get("SQV_FAULT_LIB")
    if not lib or not os.path.exists(lib):
        t.skip("the fault-injecting library was not built")
    with t.tempdir() as d:
        src = os.path.join(d, "src")
        os.mkdir(src)
        rng = random.Random(6)
        # "big" sorts first, so its blocks come first in the data area;
        # the small files' tails share a fragment block stored after it.
        # Compressible, so that its blocks are stored compressed: squashfs
        # has no checksums, only a block that fails to decompress shows
        # damage (an uncompressed block overwritten reads as what it holds).
        big = b"".join(f"{rng.random()} {i}\n".encode() for i in range(150000))
        with open(os.path.join(src, "a-big.bin"), "wb") as f:
            f.write(big)
        small = {f"small{i}": f"small file {i}\n".encode() * 10
                 for i in range(20)}
        for k, v in small.items():
            with open(os.path.join(src, k), "wb") as f:
                f.write(v)
        img = t.mksquashfs(src, os.path.join(d, "img.sqfs"), comp="zstd")
        data_end = image_layout(img)
        control = os.path.join(d, "fault")
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        env = dict(os.environ, LD_PRELOAD=lib, SQV_FAULT_CONTROL=control,
                   SQV_FAULT_FILE=os.path.realpath(img))
        if "ASAN_OPTIONS" in env:
            env["ASAN_OPTIONS"] += ":verify_asan_link_order=0"

        def set_fault(mode, start, end):
            with open(control + ".tmp", "w") as f:
                f.write(f"{mode} {start} {end}\n")
            os.rename(control + ".tmp", control)

        def clear_fault():
            if os.path.exists(control):
                os.unlink(control)

        def smalls_ok():
            return all(read_or_errno(os.path.join(mnt, k)) == v
                       for k, v in small.items())

        # ---- EIO from the layer under the image, switched on and off ----
        # No block cache: every read of the file goes to the image.
        nocache = ["-o", "cache_size=0"]
        with t.foreground([img], mnt, nocache, env=env) as fg:
            t.check(fg.mounted(), "mounted over the fault layer")
            t.check(read_or_errno(os.path.join(mnt, "a-big.bin")) == big,
                    "no fault: the big file reads")
            # the first half of the big file's blocks
            set_fault("eio", 96 + (200 << 10), 96 + (300 << 10))
            t.drop_caches()
            results = []
            for _ in range(5):
                results.append(read_or_errno(os.path.join(mnt, "a-big.bin")))
                t.drop_caches()
            t.check(all(r == errno.EIO for r in results),
                    f"EIO under the image: the reader gets EIO every time "
                    f"({[r if isinstance(r, int) else len(r) for r in results]})")
            t.check(smalls_ok(), "EIO under the image: every other file reads")
            lines_after_5 = len(fg.stderr().strip().splitlines())
            for _ in range(5):
                read_or_errno(os.path.join(mnt, "a-big.bin"))
                t.drop_caches()
            lines_after_10 = len(fg.stderr().strip().splitlines())
            t.check(lines_after_5 >= 1 and lines_after_10 == lines_after_5,
                    f"EIO: logged once per fault, not per request "
                    f"({lines_after_5} lines after 5 reads, {lines_after_10} after 10)")
            clear_fault()
            t.drop_caches()
            t.check(read_or_errno(os.path.join(mnt, "a-big.bin")) == big,
                    "fault gone: the big file reads again (failures are not cached)")

            # ---- short reads: handled, or EIO, never wrong bytes ----
            set_fault("short", 0, 1 << 40)
            t.drop_caches()
            r = read_or_errno(os.path.join(mnt, "a-big.bin"))
            t.check(r == big or r == errno.EIO,
                    f"short reads: right bytes or EIO, never wrong bytes "
                    f"({'right' if r == big else r})")
            r = [read_or_errno(os.path.join(mnt, k)) for k in small]
            t.check(all(x == small[k] or x == errno.EIO
                        for x, k in zip(r, small)),
                    "short reads: small files right or EIO")
            clear_fault()
            t.drop_caches()
            t.check(read_or_errno(os.path.join(mnt, "a-big.bin")) == big and
                    smalls_ok(), "after short reads: everything reads again")
            t.check(fg.alive(), "the daemon kept serving through the faults")
            t.check(fg.stop() == 0, "the daemon exits 0 after the faults")

        # ---- EIO while the index is built: a clear refusal ----
        set_fault("eio", data_end, 1 << 40)
        with t.foreground([img], mnt, env=env) as fg:
            up = fg.mounted()
            rc = fg.proc.wait(timeout=t.DEADLINE) if not up else None
            lines = fg.stderr().strip().splitlines()
            t.check(not up and rc == 1 and len(lines) == 1 and
                    "img.sqfs" in lines[0],
                    f"EIO on the tables at mount: refused with one line "
                    f"({rc}, {lines})")
        clear_fault()
        t.check(not t.is_mounted(mnt), "nothing left mounted")

        # ---- the image truncated under a running daemon ----
        work = os.path.join(d, "work.sqfs")
        shutil.copy(img, work)
        with t.foreground([work], mnt, nocache) as fg:
            t.check(fg.mounted(), "truncate: mounted")
            os.truncate(work, 96 + (300 << 10))
            t.drop_caches()
            results = [read_or_errno(os.path.join(mnt, "a-big.bin"))
                       for _ in range(3) if not t.drop_caches()]
            t.check(all(r == errno.EIO for r in results),
                    f"truncated: the file past the cut gives EIO ({results[:1]})")
            st = os.stat(os.path.join(mnt, "small3"))
            t.check(st.st_size == len(small["small3"]),
                    "truncated: metadata is still served from the index")
            t.check(fg.alive(), "truncated: the daemon keeps serving")
            t.check(fg.stop() == 0, "truncated: the daemon exits 0")
            lines = fg.stderr().strip().splitlines()
            t.check(1 <= len(lines) <= 4,
                    f"truncated: a few log lines, not one per request ({len(lines)})")

        # ---- overwritten in place: damaged blocks give EIO ----
        shutil.copy(img, work)
        with t.foreground([work], mnt, nocache) as fg:
            t.check(fg.mounted(), "overwrite: mounted")
            with open(work, "r+b") as f:
                f.seek(96 + (100 << 10))
                f.write(b"\xff" * (100 << 10))
            t.drop_caches()
            r = read_or_errno(os.path.join(mnt, "a-big.bin"))
            t.check(r == errno.EIO, f"overwritten: the damaged file gives EIO ({r if isinstance(r, int) else 'data'})")
            t.check(fg.stop() == 0, "overwritten: the daemon exits 0")

        # ---- replaced or deleted: the open image goes on being served ----
        shutil.copy(img, work)
        with t.foreground([work], mnt) as fg:
            t.check(fg.mounted(), "replace: mounted")
            other = os.path.join(d, "other.sqfs")
            os.mkdir(os.path.join(d, "src2"))
            with open(os.path.join(d, "src2", "a-big.bin"), "w") as f:
                f.write("another image\n")
            t.mksquashfs(os.path.join(d, "src2"), other)
            os.rename(other, work)
            t.drop_caches()
            t.check(read_or_errno(os.path.join(mnt, "a-big.bin")) == big,
                    "replaced by rename: the image opened at mount is still served")
            os.unlink(work)
            t.drop_caches()
            t.check(read_or_errno(os.path.join(mnt, "a-big.bin")) == big and
                    smalls_ok(), "deleted: still served from the open file")
            t.check(fg.stop() == 0 and not fg.stderr().strip(),
                    "replaced and deleted: exit 0, nothing logged")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
