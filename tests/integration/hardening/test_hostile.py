#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Hostile images through real mounts.

Every image of the committed hostile set (tests/fuzz/hostile/, see
make_hostile.py) is given to the daemon. Each must either be refused (exit
1, one line 'sqvenvfs: <image>: <reason>', nothing mounted, no daemon left)
or be mounted and served: a walk that lists, stats and reads everything
gets only EIO for what is damaged, never a served '.', '..', or a name with
'/', the daemon stays up, logs a bounded number of lines, stays within a
bounded peak RSS, and exits 0 at unmount. Then three real images that are
large in an unusual way: a million entries in one directory, a tree 1000
directories deep, and xattrs stored out of line (shared values).
"""

import os
import shutil
import sys

import sqvtest as t

HOSTILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "..", "fuzz", "hostile")
# Peak RSS allowed for a tiny hostile image: the daemon's own baseline plus
# the default block cache is far below this; an allocation sized from an
# image field is far above.
RSS_LIMIT_KIB = 256 * 1024
# A damaged image logs at most this many lines (lib/index.c logs 10 damaged
# entries one by one, then a count).
LOG_LINES_MAX = 16


def one_image(path, mnt):
    name = os.path.basename(path)
    with t.foreground([path], mnt) as fg:
        up = fg.mounted(timeout=60)
        if not up:
            rc = fg.proc.wait(timeout=60)
            lines = fg.stderr().strip().splitlines()
            ok = (rc == 1 and len(lines) == 1 and
                  lines[0].startswith("sqvenvfs: ") and name in lines[0])
            t.check(ok, f"{name}: refused with one line ({rc}, {lines})")
            t.check(not t.is_mounted(mnt), f"{name}: nothing mounted")
            return "refused"
        n, errors, problems = t.walk_all(mnt)
        rss = fg.rss_peak_kib()
        alive = fg.alive() and os.path.isdir(mnt)
        rc = fg.stop()
        lines = fg.stderr().strip().splitlines()
    t.check(not problems, f"{name}: only EIO while walking ({problems[:3]})")
    t.check(alive, f"{name}: the daemon serves to the end")
    t.check(rc == 0, f"{name}: the daemon exits 0 ({rc})")
    t.check(rss is not None and rss < RSS_LIMIT_KIB,
            f"{name}: peak RSS {rss} KiB < {RSS_LIMIT_KIB}")
    t.check(all(line.startswith("sqvenvfs: ") for line in lines),
            f"{name}: every log line is one whole line ({lines[:3]})")
    t.check(len(lines) <= LOG_LINES_MAX,
            f"{name}: at most {LOG_LINES_MAX} log lines ({len(lines)})")
    return f"served {n} paths, errors {errors}" if errors else "served"


def wide(d, mnt, count):
    src = os.path.join(d, "wide")
    os.mkdir(src)
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    for i in range(count):
        os.symlink("t", f"e{i:07d}", dir_fd=fd)
    os.close(fd)
    img = t.mksquashfs(src, os.path.join(d, "wide.sqfs"), comp="lz4")
    shutil.rmtree(src)
    with t.foreground([img], mnt) as fg:
        t.check(fg.mounted(timeout=300), f"{count} entries: mounted")
        names = os.listdir(mnt)
        t.check(len(names) == count, f"{count} entries listed ({len(names)})")
        t.check(os.readlink(os.path.join(mnt, f"e{count - 1:07d}")) == "t",
                "the last entry resolves")
        t.check(not os.path.lexists(os.path.join(mnt, f"e{count:07d}")),
                "one past the last does not exist")
        rss = fg.rss_peak_kib()
        t.check(rss is not None and rss < 1024 * 1024,
                f"{count} entries: peak RSS {rss} KiB < 1 GiB")
        t.check(fg.stop() == 0, f"{count} entries: the daemon exits 0")
    os.unlink(img)


def deep(d, mnt):
    img = os.path.join(HOSTILE, "deep")
    with t.foreground([img], mnt) as fg:
        t.check(fg.mounted(), "deep: mounted")
        fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
        depth = 0
        while True:
            try:
                nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                break
            os.close(fd)
            fd = nfd
            depth += 1
        rfd = os.open("bottom", os.O_RDONLY, dir_fd=fd)
        data = os.read(rfd, 100)
        os.close(rfd)
        os.close(fd)
        t.check(depth == 1000, f"deep: 1000 levels ({depth})")
        t.check(data == b"bottom\n", "deep: the file at the bottom reads")
        t.check(fg.stop() == 0, "deep: the daemon exits 0")


def shared_xattrs(d, mnt):
    """mksquashfs stores a value shared by several inodes once and refers
    to it out of line: the one case of the xattr walk that follows a
    second reference."""
    src = os.path.join(d, "xsrc")
    os.mkdir(src)
    value = bytes(range(256)) * 8
    for i in range(4):
        p = os.path.join(src, f"f{i}")
        with open(p, "w") as f:
            f.write(str(i))
        os.setxattr(p, "user.shared", value)
        os.setxattr(p, "user.own", str(i).encode())
    img = t.mksquashfs(src, os.path.join(d, "x.sqfs"))
    with t.mounted([img], mnt):
        ok = all(os.getxattr(os.path.join(mnt, f"f{i}"), "user.shared") == value
                 and os.getxattr(os.path.join(mnt, f"f{i}"), "user.own") ==
                 str(i).encode() for i in range(4))
        t.check(ok, "xattrs with a shared (out-of-line) value read back")


def main():
    t.require_mount_capability()
    images = sorted(f for f in os.listdir(HOSTILE) if not f.startswith("."))
    if len(images) < 100:
        print(f"only {len(images)} hostile images in {HOSTILE}")
        sys.exit(1)
    if "ASAN_OPTIONS" in os.environ:
        # fuzz-replay-image already runs every one of them through the
        # sanitized lib/; through sanitized mounts, every fourth is enough
        # to keep the CI's second pass short.
        images = images[::4]
    counts = {}
    with t.tempdir() as d:
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        for name in images:
            if name == "deep":
                continue
            what = one_image(os.path.join(HOSTILE, name), mnt)
            kind = what.split()[0]
            counts[kind] = counts.get(kind, 0) + 1
            print(f"  {name}: {what}", flush=True)
        print(f"hostile images: {counts}")
        deep(d, mnt)
        shared_xattrs(d, mnt)
        # A million in the plain build; a sanitized daemon is several
        # times slower and larger, so the sanitizer pass lists 200,000.
        sanitized = "ASAN_OPTIONS" in os.environ
        wide(d, mnt, int(os.environ.get(
            "SQV_WIDE_ENTRIES", "200000" if sanitized else "1000000")))
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
