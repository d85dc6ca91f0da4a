#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Make the set of hostile squashfs images that every test run replays.

Usage: make_hostile.py OUTDIR [--big]

Starts from small real images made by mksquashfs (one with plain, uncompressed
metadata so that structures can be edited in place, one zstd) and writes
variants, each named for what it breaks:
  trunc-*     the image cut at many points, including every table boundary
  flip-*      one bit flipped in the superblock, each table, the inodes, the
              directories and the data (deterministic, seeded)
  sb-*        absurd superblock fields: sizes, counts, table offsets
  name-*      directory entry names with '/', NUL, '.', '..', longer than
              255 bytes, empty
  ref-*       inode references out of range, directory loops (an entry that
              points at the root or at its own parent)
  size-*      absurd sizes and counts in inodes and directory headers
  deep        a tree nested 1000 directories deep (a real image)
With --big it also writes wide-1m: one directory of a million entries (made
from a pseudo file, not committed: the hostile test makes it at run time).

Every image must be refused with a clear error, or mounted and served with
EIO for what is damaged: never a crash, a hang or unbounded memory. The set
is committed in tests/fuzz/hostile/ and replayed by fuzz-replay-image (and,
through real mounts, by tests/integration/hardening/test_hostile.py).
"""

import os
import random
import re
import struct
import subprocess
import sys
import tempfile

SB = struct.Struct("<IIIIIHHHHHHQQQQQQQQ")
SB_FIELDS = ["magic", "inodes", "mkfs_time", "block_size", "fragments",
             "compression", "block_log", "flags", "no_ids", "s_major",
             "s_minor", "root_inode", "bytes_used", "id_table_start",
             "xattr_id_table_start", "inode_table_start",
             "directory_table_start", "fragment_table_start",
             "lookup_table_start"]
SB_OFF = {}
_o = 0
for _name, _fmt in zip(SB_FIELDS, "IIIIIHHHHHHQQQQQQQQ"):
    SB_OFF[_name] = (_o, _fmt)
    _o += struct.calcsize(_fmt)

EPOCH = "1700000000"


def sb(img):
    return dict(zip(SB_FIELDS, SB.unpack_from(img, 0)))


def set_field(img, name, value):
    off, fmt = SB_OFF[name]
    b = bytearray(img)
    struct.pack_into("<" + fmt, b, off, value)
    return bytes(b)


def mksquashfs(src, out, *extra):
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    subprocess.run(["mksquashfs", src, out, "-noappend", "-quiet",
                    "-no-progress", "-nopad", "-b", "4096", "-all-root",
                    *extra], check=True, stdout=subprocess.DEVNULL, env=env)
    return open(out, "rb").read()


def make_tree(d):
    os.makedirs(os.path.join(d, "pkg", "sub"))
    os.makedirs(os.path.join(d, "loopdir", "inner"))
    with open(os.path.join(d, "pkg", "mod.py"), "w") as f:
        f.write("import os\n" * 400)
    with open(os.path.join(d, "pkg", "sub", "data.bin"), "wb") as f:
        f.write(random.Random(1).randbytes(10000))
    with open(os.path.join(d, "tiny"), "w") as f:
        f.write("tiny\n")
    # Names to be edited into hostile ones; each unique in the image.
    for n in ["SLASHxNAME", "NULxxxNAME", "Q", "QQ", "LONGxxNAME",
              "EMPTYxNAME"]:
        with open(os.path.join(d, "pkg", n), "w") as f:
            f.write(n)
    os.symlink("pkg/mod.py", os.path.join(d, "LINKxxNAME"))
    for p, v in [("pkg/mod.py", b"v" * 300), ("tiny", b"v" * 300)]:
        try:
            os.setxattr(os.path.join(d, p), "user.shared", v)
        except OSError:
            pass


def md_blocks(img, start, end):
    """(offset, header, payload) of each metadata block in [start, end)."""
    out = []
    pos = start
    while pos + 2 <= end:
        hdr = struct.unpack_from("<H", img, pos)[0]
        size = hdr & 0x7fff
        out.append((pos, hdr, size))
        pos += 2 + size
    return out


def patch(img, off, data):
    b = bytearray(img)
    b[off:off + len(data)] = data
    return bytes(b)


def find_entry(img, s, name):
    """Offset of the 8-byte directory entry header before `name` in an
    image with plain metadata (the name is stored verbatim there)."""
    start, end = s["directory_table_start"], s["fragment_table_start"]
    if end == 0xffffffffffffffff or end < start:
        end = s["id_table_start"]
    hay = img[start:end]
    for m in re.finditer(re.escape(name), hay):
        at = start + m.start() - 8
        size = struct.unpack_from("<H", img, at + 6)[0]
        if size + 1 == len(name):
            return at
    raise SystemExit(f"entry {name!r} not found")


def find_dir_header(img, s, entry_at):
    """The directory header (12 bytes) that governs the entry at entry_at:
    the last one before it, found by walking the listing it is in."""
    start = s["directory_table_start"] + 2  # one plain block in these images
    pos = start
    last = None
    while pos < entry_at:
        count, start_block, inode = struct.unpack_from("<III", img, pos)
        last = pos
        pos += 12
        for _ in range(count + 1):
            size = struct.unpack_from("<H", img, pos + 6)[0]
            pos += 8 + size + 1
            if pos > entry_at:
                break
    return last


def inode_of_entry(img, s, entry_at):
    """Image offset of the inode an entry refers to (plain metadata, one
    inode block: start_block 0)."""
    off = struct.unpack_from("<H", img, entry_at)[0]
    return s["inode_table_start"] + 2 + off


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    big = "--big" in sys.argv
    os.makedirs(out, exist_ok=True)
    rng = random.Random(20261121)
    tmp = tempfile.mkdtemp(prefix="sqv-hostile-")
    written = 0

    def emit(name, data):
        nonlocal written
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        written += 1

    try:
        src = os.path.join(tmp, "src")
        make_tree(src)
        plain = mksquashfs(src, os.path.join(tmp, "plain.sqfs"),
                           "-noI", "-noD", "-noF", "-noX")
        zst = mksquashfs(src, os.path.join(tmp, "zstd.sqfs"), "-comp", "zstd")
        emit("ok-plain", plain)
        emit("ok-zstd", zst)

        # ---- truncations: every table boundary +-1, and a spread ----
        for label, img in [("plain", plain), ("zstd", zst)]:
            s = sb(img)
            cuts = {0, 1, 95, 96, 97, len(img) - 1, len(img) // 2}
            for k in ("inode_table_start", "directory_table_start",
                      "fragment_table_start", "id_table_start",
                      "xattr_id_table_start", "lookup_table_start"):
                v = s[k]
                if v < len(img):
                    cuts |= {v - 1, v, v + 1, v + 2, v + 9}
            cuts |= {len(img) * i // 24 for i in range(1, 24)}
            for c in sorted(x for x in cuts if 0 <= x < len(img)):
                emit(f"trunc-{label}-{c:06d}", img[:c])

        # ---- bit flips, per region ----
        for label, img in [("plain", plain), ("zstd", zst)]:
            s = sb(img)
            bounds = sorted({96, s["inode_table_start"],
                             s["directory_table_start"],
                             s["fragment_table_start"] if s["fragment_table_start"] < len(img) else len(img),
                             s["id_table_start"], len(img)})
            regions = [("super", 0, 96)]
            names = ["data", "inodes", "dirs", "frags-ids-xattrs", "tail"]
            for i in range(len(bounds) - 1):
                if bounds[i] < bounds[i + 1]:
                    regions.append((names[min(i, len(names) - 1)],
                                    bounds[i], bounds[i + 1]))
            for rname, a, b in regions:
                for n in range(10 if rname != "super" else 24):
                    off = rng.randrange(a, b)
                    bit = rng.randrange(8)
                    mutated = bytearray(img)
                    mutated[off] ^= 1 << bit
                    emit(f"flip-{label}-{rname}-{off:06d}-{bit}",
                         bytes(mutated))

        # ---- absurd superblock fields ----
        s = sb(plain)
        for field, values in {
            "inodes": [0, 0xffffffff],
            "block_size": [0, 1, 4095, 1 << 21, 0xffffffff],
            "block_log": [0, 12, 31, 0xffff],
            "fragments": [0, 0xffffffff],
            "no_ids": [0, 0xffff],
            "compression": [0, 2, 7, 0xffff],
            "bytes_used": [0, 96, len(plain) + 1, (1 << 64) - 1],
            "root_inode": [0, (1 << 48) - 1, (1 << 64) - 1,
                           s["root_inode"] + 1, s["root_inode"] | 0x1fff],
            "id_table_start": [0, 96, len(plain) - 1, (1 << 63)],
            "xattr_id_table_start": [0, 96, len(plain) - 1, (1 << 63)],
            "inode_table_start": [0, s["directory_table_start"], (1 << 63)],
            "directory_table_start": [0, s["inode_table_start"], (1 << 63)],
            "fragment_table_start": [0, 96, (1 << 63)],
            "s_major": [3, 5],
        }.items():
            for v in values:
                emit(f"sb-{field}-{v:x}", set_field(plain, field, v))

        # ---- names ----
        img = plain
        e = find_entry(img, s, b"SLASHxNAME")
        emit("name-slash", patch(img, e + 8 + 5, b"/"))
        emit("name-slash-first", patch(img, e + 8, b"/"))
        e = find_entry(img, s, b"NULxxxNAME")
        emit("name-nul", patch(img, e + 8 + 3, b"\0"))
        emit("name-all-nul", patch(img, e + 8, b"\0" * 10))
        e = find_entry(img, s, b"Q")
        emit("name-dot", patch(img, e + 8, b"."))
        e = find_entry(img, s, b"QQ")
        emit("name-dotdot", patch(img, e + 8, b".."))
        e = find_entry(img, s, b"LONGxxNAME")
        for n in (255, 256, 300, 4096, 65535):
            emit(f"name-long-{n}", patch(img, e + 6, struct.pack("<H", n)))
        e = find_entry(img, s, b"EMPTYxNAME")
        emit("name-whiteout-dotdot", patch(img, e + 8, b".wh...xxxx"[:10]))
        emit("name-opaque-marker", patch(img, e + 8, b".wh..wh..o"))

        # ---- references and loops ----
        root = s["root_inode"]
        e = find_entry(img, s, b"loopdir")
        # "loopdir" points at the root directory's inode: a loop
        emit("ref-loop-to-root", patch(img, e, struct.pack("<H", root & 0xffff)))
        # "inner" points at its own parent "loopdir"
        e2 = find_entry(img, s, b"inner")
        loop_off = struct.unpack_from("<H", img, e)[0]
        emit("ref-loop-to-parent", patch(img, e2, struct.pack("<H", loop_off)))
        e = find_entry(img, s, b"tiny")
        for v in (0x1fff, 0xfffe):
            emit(f"ref-offset-{v:x}", patch(img, e, struct.pack("<H", v)))
        h = find_dir_header(img, s, e)
        for v in (1, 0x7fffffff, 0xffffffff):
            emit(f"ref-start-block-{v:x}", patch(img, h + 4, struct.pack("<I", v)))
        # a directory inode whose listing starts past the table
        ino = inode_of_entry(img, s, find_entry(img, s, b"pkg"))
        emit("ref-dir-start-past", patch(img, ino + 16, struct.pack("<I", 0x7ffffff)))
        emit("ref-dir-offset-past", patch(img, ino + 16 + 10, struct.pack("<H", 0x1fff)))

        # ---- absurd sizes and counts ----
        emit("size-dir-header-count", patch(img, h, struct.pack("<I", 0xfffffffe)))
        emit("size-dir-listing", patch(img, ino + 16 + 8, struct.pack("<H", 0xffff)))
        emit("size-dir-nlink", patch(img, ino + 16 + 4, struct.pack("<I", 0xffffffff)))
        reg = inode_of_entry(img, s, find_entry(img, s, b"data.bin"))
        itype = struct.unpack_from("<H", img, reg)[0]
        if itype != 2:      # basic file: start, fragment, offset, size
            raise RuntimeError(f"data.bin: inode type {itype}, not 2")
        for v in (0, 0xffffffff, 0x7fffffff):
            emit(f"size-file-{v:x}", patch(img, reg + 16 + 12, struct.pack("<I", v)))
        emit("size-file-frag-index", patch(img, reg + 16 + 4, struct.pack("<I", 0xfffffffe)))
        emit("size-file-frag-offset", patch(img, reg + 16 + 8, struct.pack("<I", 0xffffff)))
        emit("size-file-start", patch(img, reg + 16, struct.pack("<I", 0xfffffff0)))
        ext = inode_of_entry(img, s, find_entry(img, s, b"mod.py"))
        if struct.unpack_from("<H", img, ext)[0] != 9:    # extended file
            raise RuntimeError("mod.py: not an extended file inode")
        for v in (1 << 63, (1 << 64) - 1, 1 << 40, ((1 << 26) - 2) * 4096 + 100):
            emit(f"size-extfile-{v:x}", patch(img, ext + 16 + 8, struct.pack("<Q", v)))
        emit("size-extfile-xattr", patch(img, ext + 16 + 36, struct.pack("<I", 0xfffffff0)))
        emit("size-inode-type", patch(img, reg, struct.pack("<H", 0x7777)))
        # a damaged file whose name holds a newline and an escape: the log
        # line that names it must stay one line
        e = find_entry(img, s, b"data.bin")
        emit("log-name-newline",
             patch(patch(img, reg + 16 + 12, struct.pack("<I", 0xffffffff)),
                   e + 8 + 2, b"\n\x1b"))
        emit("size-inode-uid", patch(img, reg + 4, struct.pack("<H", 0xffff)))
        lnk = inode_of_entry(img, s, find_entry(img, s, b"LINKxxNAME"))
        for v in (0, 4096, 0xffffffff):
            emit(f"size-symlink-{v:x}", patch(img, lnk + 16 + 4, struct.pack("<I", v)))

        # ---- deep nesting (a real image) ----
        deep = os.path.join(tmp, "deep")
        os.makedirs(deep)
        fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
        for i in range(1000):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        wfd = os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(wfd, b"bottom\n")
        os.close(wfd)
        os.close(fd)
        emit("deep", mksquashfs(deep, os.path.join(tmp, "deep.sqfs"), "-comp", "lz4"))

        if big:
            empty = os.path.join(tmp, "empty")
            os.makedirs(empty)
            pseudo = os.path.join(tmp, "pseudo")
            with open(pseudo, "w") as f:
                f.write("w d 755 0 0\n")
                for i in range(1_000_000):
                    f.write(f"w/e{i:07d} s 777 0 0 t\n")
            emit("wide-1m", mksquashfs(empty, os.path.join(tmp, "wide.sqfs"),
                                       "-comp", "lz4", "-pf", pseudo))
    finally:
        subprocess.run(["rm", "-rf", tmp], check=False)
    print(f"{written} images in {out}")


if __name__ == "__main__":
    main()
