#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""A digest table that is sound in itself (its own digest right, every
entry's digest right) but does not match the image: it lists a metadata
block as raw bytes, as a data or fragment block, or with another length.

Each such table makes every read of that block fail its lookup; before
the check at open, the index build skipped what it could not read and
`sqvenvfs` and `sqvenvfs-inspect info` exited 0 on an empty tree. Now:
- the mount is refused (also with -f): exit 1, one line naming the image,
  the offset and "the digest table does not match the image"; nothing
  mounted, no daemon left;
- `sqvenvfs-inspect info` refuses it the same way, and `verify` fails;
- the same table written back unchanged (through the same helper) still
  mounts and serves the whole tree, so the helper is not what is refused.

The tables are written by the C helper digest-table ($SQV_DIGEST_TABLE),
which recomputes the table's own digest (and an entry's, given "-")."""

import os
import shutil
import struct
import subprocess
import sys

import sqvtest as t

INSPECT = os.environ.get("SQVENVFS_INSPECT", "sqvenvfs-inspect")
HELPER = os.environ.get("SQV_DIGEST_TABLE", "digest-table")
META, RAW, DATA, FRAGMENT = 3, 4, 1, 2


def make_tree(src):
    """Enough entries for several inode and directory blocks, small files
    (a fragment block), two owners (two ids) and xattrs when the file
    system here takes user xattrs."""
    os.makedirs(os.path.join(src, "pkg", "sub"))
    for i in range(700):
        d = os.path.join(src, "pkg" if i % 2 else os.path.join("pkg", "sub"))
        p = os.path.join(d, f"module_with_a_rather_long_name_{i:04d}.py")
        with open(p, "w") as f:
            f.write(f"x = {i}\n")
    os.chown(os.path.join(src, "pkg", "sub"), 1000, 1000)
    try:
        os.setxattr(os.path.join(src, "pkg"), "user.sqvtest", b"layout")
        return True
    except OSError:
        return False


def read_table(img):
    out = subprocess.run([HELPER, img], capture_output=True, text=True,
                         check=True).stdout
    return [[int(f[0]), int(f[1]), int(f[2]), f[3]]
            for f in (line.split() for line in out.splitlines())]


def write_table(img, entries):
    text = "".join(f"{p} {n} {k} {h}\n" for p, n, k, h in entries)
    subprocess.run([HELPER, img, "-"], input=text, text=True, check=True)


def superblock(img):
    with open(img, "rb") as f:
        sb = f.read(96)
        (ids, xattr_ids, inodes, dirs, frags,
         exports) = struct.unpack_from("<6Q", sb, 48)
        flags = struct.unpack_from("<H", sb, 24)[0]

        def u64(pos):
            f.seek(pos)
            return struct.unpack("<Q", f.read(8))[0]
        return {"inode": inodes, "dir": dirs, "id_index": ids,
                "frag_index": frags,
                "id_block": u64(ids), "frag_block": u64(frags),
                "xattr": u64(xattr_ids) if xattr_ids != 2**64 - 1 else None,
                "comp_opts": bool(flags & 0x0400),
                "starts": sorted({ids, xattr_ids, frags, exports, dirs})}


def metadata_blocks(entries, start, sb):
    """The metadata entries from start up to the next table's start."""
    end = min([s for s in sb["starts"] if s > start] + [2**64])
    return [e for e in entries if start <= e[0] < end and e[2] == META]


def cases(entries, sb, has_xattrs):
    """(label, position, new entries) for each mismatching table."""
    inode = metadata_blocks(entries, sb["inode"], sb)
    dirs = metadata_blocks(entries, sb["dir"], sb)
    t.check(len(inode) >= 2 and len(dirs) >= 2,
            f"the image has several inode and directory blocks "
            f"({len(inode)}, {len(dirs)})")

    def with_kind(pos, kind):
        return [[p, n, kind if p == pos else k, h] for p, n, k, h in entries]

    def merged(pos):
        """The block at pos and the entry after it as one metadata block,
        its digest right."""
        out = []
        for e in entries:
            # the one entry after pos, not every one (the raw bytes after
            # the metadata would then be listed as metadata too)
            if out and out[-1][0] == pos and out[-1][3] == "-" and \
                    out[-1][1] == next(x[1] for x in entries if x[0] == pos):
                out[-1][1] += e[1]
            elif e[0] == pos:
                out.append([e[0], e[1], META, "-"])
            else:
                out.append(list(e))
        return out

    mid = dirs[len(dirs) // 2][0]
    out = [
        ("a directory block listed as raw bytes", mid, with_kind(mid, RAW)),
        ("the first directory block listed as a data block", dirs[0][0],
         with_kind(dirs[0][0], DATA)),
        ("a directory block with another length", dirs[0][0],
         merged(dirs[0][0])),
        ("an inode block listed as raw bytes", inode[-1][0],
         with_kind(inode[-1][0], RAW)),
        ("the id table's block listed as raw bytes", sb["id_block"],
         with_kind(sb["id_block"], RAW)),
        ("the fragment table's block listed as a fragment block",
         sb["frag_block"], with_kind(sb["frag_block"], FRAGMENT)),
        # Indexes are read at open and hashed only as raw bytes.
        ("the id table's index listed as a data block", sb["id_index"],
         with_kind(sb["id_index"], DATA)),
        ("the fragment table's index listed as a metadata block",
         sb["frag_index"], with_kind(sb["frag_index"], META)),
        ("the superblock listed as a data block", 0, with_kind(0, DATA)),
        ("the id table's index left out of the table", sb["id_index"],
         [e for e in entries if e[0] != sb["id_index"]]),
    ]
    for label, pos, table in out[-4:]:
        t.check(table != entries, f"{label}: the table is changed there")
    t.check(sb["comp_opts"] and any(e[0] == 96 and e[2] == META for e in entries),
            "the image has compressor options, listed as a metadata block")
    out.append(("the compressor options' block listed as raw bytes", 96,
                with_kind(96, RAW)))
    if has_xattrs:
        out.append(("the xattr block listed as raw bytes", sb["xattr"],
                    with_kind(sb["xattr"], RAW)))
    else:
        print("note: no user xattrs here; the xattr case is left out")
    return out


def main():
    t.require_mount_capability()
    with t.tempdir() as d:
        src = os.path.join(d, "src")
        has_xattrs = make_tree(src)
        # A level other than the default: mksquashfs then writes
        # compressor options, a metadata block after the superblock.
        img = t.mksquashfs(src, os.path.join(d, "sealed.sqfs"),
                           extra=["-Xcompression-level", "3"])
        r = subprocess.run([INSPECT, "seal", img], capture_output=True, text=True)
        t.check(r.returncode == 0, f"seal ({r.stderr.strip()})")
        entries = read_table(img)
        sb = superblock(img)
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        expected = t.dump_tree(src)

        # The table written back unchanged: served whole.
        same = os.path.join(d, "same.sqfs")
        shutil.copy(img, same)
        write_table(same, entries)
        t.check(read_table(same) == entries, "the helper writes a table back as it was")
        with t.mounted([same], mnt):
            t.compare_trees(expected, t.dump_tree(mnt), "the table written back unchanged")
        r = subprocess.run([INSPECT, "verify", same], capture_output=True, text=True)
        t.check(r.returncode == 0, f"verify: the table written back unchanged is fine "
                f"({r.stderr.strip()})")

        for label, pos, table in cases(entries, sb, has_xattrs):
            bad = os.path.join(d, "bad.sqfs")
            shutil.copy(img, bad)
            write_table(bad, table)
            want = [bad, f"offset {pos}:",
                    "the digest table does not match the image"]
            t.refuse_image(label, bad, mnt, want)
        t.check(not t.is_mounted(mnt), "nothing left mounted")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
