#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Each metadata block of an image is decompressed exactly once per mount.

A generated tree (thousands of entries over many directories, symlinks, a
hard link, fragments, xattrs with a shared value) is packed with each
compression the daemon reads and mounted. The daemon's --stats counter
metadata_blocks_decompressed must equal the number of metadata blocks the
image holds in its inode, directory, fragment, id and xattr tables, counted
here independently by walking the image's block headers and table indexes;
and a full walk of the mount afterwards must not decompress one more (the
index answers everything). A stack of two images with no name in common
counts the blocks of both. (In a stack, the entries an upper layer hides are
never read: then the count is lower than the images' blocks.)
"""

import math
import os
import struct
import sys

import sqvtest as t

# The hostile-image maker's superblock reader and block-header walk.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "hardening"))
from make_hostile import md_blocks, sb as superblock  # noqa: E402

COMPRESSIONS = ["zstd", "gzip", "xz", "lz4", "lzo"]
INVALID = 0xFFFFFFFFFFFFFFFF
MD_SIZE = 8192


def walk_headers(data, start, end, label, check=t.check):
    """Count the metadata blocks from start, header by header, to end."""
    blocks = md_blocks(data, start, end)
    stop = blocks[-1][0] + 2 + blocks[-1][2] if blocks else start
    check(stop == end, f"{label}: the block headers end where the next "
          f"table starts ({stop} == {end})")
    return len(blocks)


def table_blocks(data, index_pos, count, each):
    """The image offsets of a lookup table's blocks, from its index."""
    n = math.ceil(count * each / MD_SIZE)
    return list(struct.unpack_from(f"<{n}Q", data, index_pos)) if n else []


def metadata_blocks(path, check=t.check):
    """The metadata blocks of the image's inode, directory, fragment, id and
    xattr tables (the export table, which the daemon never reads, aside).
    check(cond, what) is told whether the tables' headers chain up."""
    data = open(path, "rb").read()
    sb = superblock(data)
    frags = table_blocks(data, sb["fragment_table_start"], sb["fragments"], 16)
    ids = table_blocks(data, sb["id_table_start"], sb["no_ids"], 4)
    exports = []
    if sb["lookup_table_start"] != INVALID:
        exports = table_blocks(data, sb["lookup_table_start"], sb["inodes"], 8)
    xattr_ids, xattr_start = [], None
    if sb["xattr_id_table_start"] != INVALID:
        xattr_start, nxids = struct.unpack_from("<QI", data,
                                                sb["xattr_id_table_start"])
        xattr_ids = table_blocks(data, sb["xattr_id_table_start"] + 16,
                                 nxids, 16)
    # The directory table runs up to whatever comes next.
    after = [p for p in frags + exports + ids + xattr_ids +
             [xattr_start or INVALID, sb["fragment_table_start"],
              sb["lookup_table_start"], sb["id_table_start"],
              sb["xattr_id_table_start"], sb["bytes_used"]]
             if p > sb["directory_table_start"]]
    n = walk_headers(data, sb["inode_table_start"],
                     sb["directory_table_start"], "inode table", check)
    n += walk_headers(data, sb["directory_table_start"], min(after),
                      "directory table", check)
    n += len(set(frags)) + len(set(ids)) + len(set(xattr_ids))
    if xattr_start is not None:
        n += walk_headers(data, xattr_start, min(xattr_ids), "xattr table",
                          check)
    return n


def set_xattr(path, name, value):
    """user.* where the source file system takes it, else trusted.*."""
    for ns in ("user.", "trusted."):
        try:
            os.setxattr(path, ns + name, value)
            return True
        except OSError:
            continue
    return False


def make_tree(src):
    shared = bytes(range(256)) * 4
    xattrs = 0
    for d in range(60):
        sub = os.path.join(src, f"pkg{d:02d}", "sub")
        os.makedirs(sub)
        for i in range(50):
            p = os.path.join(sub if i % 2 else os.path.dirname(sub),
                             f"module_{d}_{i}_with_a_longer_name.py")
            with open(p, "w") as f:
                f.write(f"# {d} {i}\n" * (i * 7 % 300))
            if i % 10 == 0:
                os.symlink(os.path.basename(p), p + ".link")
            if i % 17 == 0:
                xattrs += set_xattr(p, "shared", shared)
                xattrs += set_xattr(p, "own", f"{d}.{i}".encode())
    os.link(os.path.join(src, "pkg00", "module_0_0_with_a_longer_name.py"),
            os.path.join(src, "hardlink"))
    with open(os.path.join(src, "big.bin"), "wb") as f:
        f.write(os.urandom(300_000))
    return xattrs


def counted(images, mnt, label):
    expected = sum(metadata_blocks(i) for i in images)
    with t.mounted(images, mnt):
        at_mount = t.stats(mnt).get("metadata_blocks_decompressed")
        n = 0
        for root, dirs, files in os.walk(mnt):
            for name in dirs + files:
                os.lstat(os.path.join(root, name))
                n += 1
        after_walk = t.stats(mnt).get("metadata_blocks_decompressed")
    t.check(expected > 10, f"{label}: the image has many metadata blocks "
            f"({expected})")
    t.check(at_mount == expected, f"{label}: metadata_blocks_decompressed "
            f"{at_mount} == {expected} metadata blocks in the image")
    t.check(after_walk == at_mount, f"{label}: a walk of {n} entries "
            f"decompresses no more ({after_walk})")


def main():
    t.require_mount_capability()
    with t.tempdir() as d:
        os.chmod(d, 0o755)
        src = os.path.join(d, "src")
        os.mkdir(src)
        t.check(make_tree(src) > 0, "the source holds xattrs")
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        images = []
        for comp in COMPRESSIONS:
            img = t.mksquashfs(src, os.path.join(d, f"m-{comp}.sqfs"), comp)
            counted([img], mnt, comp)
            images.append(img)
        # A second image whose names do not collide with the first's, so
        # that no entry of either is hidden and every block is needed.
        other = t.mksquashfs(os.path.join(src, "pkg07"),
                             os.path.join(d, "other.sqfs"), "gzip")
        counted([images[0], other], mnt, "a stack of two")
    t.finish()


if __name__ == "__main__":
    main()
