#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""An image damaged before it was sealed: its digest table is right about
every byte, but a directory entry's inode reference leads outside the
blocks the table lists as metadata (past the image's end, or into the
middle of a directory block).

The open checks every block the table lists; the index build then needs
one it does not list. Before this was refused, the build skipped the entry
with a warning and the mount exited 0, serving part of a tree whose table
calls it whole. Now:
- the mount (also -f) is refused: exit 1, one line naming the image, the
  offset and "the digest table does not vouch for", nothing mounted, no
  daemon left; `sqvenvfs-inspect info` and `verify` refuse it too;
- the same damage without a table is served as before: exit 0, the entry
  skipped with one warning, the rest of the tree whole.

`sqvenvfs-inspect seal` refuses such an image (one line, the file left
as it was); the sealed ones here are sealed first, then damaged, and their
table rewritten to match (the digest-table helper), as a tool that seals
without reading the tree would.

The images have plain metadata (-noI -noD -noF -noX), so the reference is
edited in place."""

import os
import shutil
import struct
import subprocess
import sys

import sqvtest as t

INSPECT = os.environ.get("SQVENVFS_INSPECT", "sqvenvfs-inspect")
HELPER = os.environ.get("SQV_DIGEST_TABLE", "digest-table")
VICTIM = b"VICTIMxNAME"


def make_tree(src):
    os.makedirs(os.path.join(src, "pkg", "lonely"))
    for i in range(20):
        with open(os.path.join(src, "pkg", f"mod{i}.py"), "w") as f:
            f.write(f"x = {i}\n")
    with open(os.path.join(src, "pkg", "lonely", VICTIM.decode()), "w") as f:
        f.write("victim\n")


def superblock(img):
    with open(img, "rb") as f:
        sb = f.read(96)
    return struct.unpack_from("<2Q", sb, 64)  # inode, directory table


def victim_header(img):
    """Offset of the directory header before the only entry of
    pkg/lonely: plain metadata stores it verbatim, the 12-byte header
    (count - 1, start block, inode number), then the 8-byte entry and its
    name."""
    with open(img, "rb") as f:
        data = f.read()
    at = data.index(VICTIM) - 8 - 12
    count = struct.unpack_from("<I", data, at)[0]
    size = struct.unpack_from("<H", data, at + 12 + 6)[0]
    t.check(data.count(VICTIM) == 1 and count == 0 and size + 1 == len(VICTIM),
            "the victim's directory header found in the plain metadata")
    return at


def damage(img, start_block):
    """Set the victim's inode block (relative to the inode table) to
    start_block, in img."""
    at = victim_header(img)
    with open(img, "r+b") as f:
        f.seek(at + 4)
        f.write(struct.pack("<I", start_block))


def damaged_copy(plain, out, start_block):
    shutil.copy(plain, out)
    damage(out, start_block)
    return out


def rewrite_table(img):
    """img's digest table, its entries kept, every digest recomputed from
    the image as it is now: a table right about every byte."""
    table = subprocess.run([HELPER, img], capture_output=True, text=True,
                           check=True).stdout
    subprocess.run([HELPER, img, "-"], check=True, text=True,
                   input="".join(" ".join(ln.split()[:3] + ["-"]) + "\n"
                                 for ln in table.splitlines()))


def stacked(d, mnt):
    """The damaged image below another: the build first meets the damage
    quietly (the lower half of a directory both layers have), then at an
    entry with an invalid name in a later directory of the same image.
    Still one line."""
    lower, upper = os.path.join(d, "lower"), os.path.join(d, "upper")
    for root, name in ((lower, "l.py"), (upper, "u.py")):
        os.makedirs(os.path.join(root, "pkg", "lonely", VICTIM.decode()))
        with open(os.path.join(root, "pkg", "lonely", VICTIM.decode(), name),
                  "w") as f:
            f.write("x = 1\n")
    os.makedirs(os.path.join(lower, "pkg", "zother"))
    with open(os.path.join(lower, "pkg", "zother", "badXname"), "w") as f:
        f.write("x = 2\n")
    low = t.mksquashfs(lower, os.path.join(d, "stack-lower.sqfs"),
                       extra=["-noI", "-noD", "-noF", "-noX"])
    up = t.mksquashfs(upper, os.path.join(d, "stack-upper.sqfs"))
    t.inspect("seal", low)
    damage(low, 0x7fffffff)
    with open(low, "r+b") as f:
        data = f.read()
        t.check(data.count(b"badXname") == 1, "the invalid name's place found")
        f.seek(data.index(b"badXname") + 3)
        f.write(b"/")
    rewrite_table(low)
    want = [low, "the digest table does not vouch for"]
    t.refuse("a stack, the damaged image below", [low, up, mnt], want, mnt=mnt)


def seal_out_of_space(d):
    """seal on a full file system: one line, and the image as it was (an
    image made with -nopad ends before the table's place; the failed
    write used to leave it lengthened to there)."""
    src = os.path.join(d, "small")
    os.makedirs(src)
    with open(os.path.join(src, "a.py"), "w") as f:
        f.write("x = 1\n" * 3000)
    img = t.mksquashfs(src, os.path.join(d, "small.sqfs"), extra=["-nopad"])
    size = os.path.getsize(img)
    t.check(size % 4096 != 0, "a -nopad image ends off a page", size)
    full = os.path.join(d, "full")
    os.mkdir(full)
    # room for the image's pages and not one more
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={(size + 4095) // 4096 * 4096}",
                    "tmpfs", full], check=True)
    try:
        there = shutil.copy(img, full)
        with open(there, "rb") as f:
            before = f.read()
        r = subprocess.run([INSPECT, "seal", there], capture_output=True, text=True)
        t.check_error("seal on a full file system", r,
                      [there, "cannot write the digest table"],
                      prefix="sqvenvfs-inspect: ")
        with open(there, "rb") as f:
            t.check(f.read() == before, "seal on a full file system left it as it was")
    finally:
        subprocess.run(["umount", full], check=False)


def main():
    t.require_mount_capability()
    with t.tempdir() as d:
        src = os.path.join(d, "src")
        make_tree(src)
        plain = t.mksquashfs(src, os.path.join(d, "plain.sqfs"),
                             extra=["-noI", "-noD", "-noF", "-noX"])
        inodes, dirs = superblock(plain)
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        expected = t.dump_tree(src)
        without_victim = {k: v for k, v in expected.items()
                          if VICTIM.decode() not in k}

        cases = [
            ("a reference past the image's end", 0x7fffffff,
             inodes + 0x7fffffff),
            ("a reference into the middle of a directory block",
             dirs + 3 - inodes, dirs + 3),
        ]
        for label, start_block, offset in cases:
            # Without a table: served as before, the entry skipped.
            bad = damaged_copy(plain, os.path.join(d, "unsealed.sqfs"),
                               start_block)
            with t.foreground([bad], mnt) as fg:
                t.check(fg.mounted(), f"{label}, no table: mounted")
                got = t.dump_tree(mnt)
                fg.stop()
                log = [ln for ln in fg.stderr().splitlines() if ln.strip()]
            t.compare_trees(without_victim, got,
                            f"{label}, no table: the rest of the tree")
            t.check(fg.returncode == 0 and len(log) == 1 and bad in log[0] and
                    "skipping" in log[0],
                    f"{label}, no table: exit 0, one warning", (fg.returncode, log))

            # Sealed: refused.
            # seal refuses it: one line, the image as it was.
            with open(bad, "rb") as f:
                before = f.read()
            r = subprocess.run([INSPECT, "seal", bad], capture_output=True,
                               text=True)
            t.check_error(f"{label}: seal of the damaged image", r,
                          [bad, "skipping", "not sealed"],
                          prefix="sqvenvfs-inspect: ")
            with open(bad, "rb") as f:
                t.check(f.read() == before, f"{label}: seal left it as it was")

            # Sealed by another tool after the damage (or by seal before
            # it refused damage): the table is right about every byte.
            sealed = shutil.copy(plain, os.path.join(d, "sealed.sqfs"))
            t.inspect("seal", sealed)
            damage(sealed, start_block)
            rewrite_table(sealed)
            # Sealing it again is refused too, and its table stays.
            with open(sealed, "rb") as f:
                before = f.read()
            r = subprocess.run([INSPECT, "seal", sealed], capture_output=True,
                               text=True)
            t.check_error(f"{label}: seal of the damaged sealed image", r,
                          [sealed, "not sealed"], prefix="sqvenvfs-inspect: ")
            with open(sealed, "rb") as f:
                t.check(f.read() == before,
                        f"{label}: seal left it as it was, its table too")
            want = [sealed, f"offset {offset}:",
                    "the digest table does not vouch for"]
            t.refuse_image(label, sealed, mnt, want)
        stacked(d, mnt)
        seal_out_of_space(d)
        t.check(not t.is_mounted(mnt), "nothing left mounted")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
