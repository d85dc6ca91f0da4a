# SPDX-License-Identifier: BSD-2-Clause
"""Sealed images whose tree is only an empty root: an empty directory from
mksquashfs, a no-change delta from sqvenvfs-pack --base and one from
sqvenvfs-edit -- true. Their directory table is empty, so it starts where
the export table's metadata block does; that block must be in the digest
table as a metadata block. Each one seals, verifies, shows in info and
mounts over its base with exit 0 and nothing on stderr, serving the base's
tree. An image sealed before that was right (the block listed as other
bytes) is served the same. Real damage, in a metadata block or in the
digest table, still gives an error and a non-zero exit."""

import ctypes
import os
import shutil
import struct

import sqvtest as t

META, RAW = 3, 4


def superblock(image):
    """(inode_table, directory_table, lookup_table, bytes_used)."""
    with open(image, "rb") as f:
        sb = f.read(96)
    f = struct.unpack("<IIIIIHHHHHHQQQQQQQQ", sb)
    return f[15], f[16], f[18], f[12]


def table(image):
    """([(pos, len, kind)], where the entries start) of the digest table."""
    with open(image, "rb") as f:
        f.seek(-64, os.SEEK_END)
        magic, _v, _a, _used, off, n = struct.unpack("<8sIIQQQ", f.read(40))
        t.check(magic == b"SQVDIGST", f"{image}: ends with a digest table")
        f.seek(off)
        raw = f.read(32 * n)
    return [struct.unpack("<QIH", raw[32 * i:32 * i + 14])
            for i in range(n)], off


def export_block(image):
    """Where the export table's first metadata block lies."""
    _, _, lookup, _ = superblock(image)
    with open(image, "rb") as f:
        f.seek(lookup)
        return struct.unpack("<Q", f.read(8))[0]


def xxh3_128(data):
    """XXH3-128 in canonical byte order, from the libxxhash the tools
    link (Debian has no Python binding)."""
    lib = ctypes.CDLL("libxxhash.so.0")

    class Hash(ctypes.Structure):
        _fields_ = [("low", ctypes.c_uint64), ("high", ctypes.c_uint64)]

    lib.XXH3_128bits.restype = Hash
    lib.XXH3_128bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    h = lib.XXH3_128bits(data, len(data))
    return struct.pack(">QQ", h.high, h.low)


def relabel(image, pos, kind):
    """Give the digest table's entry at pos another kind and the table a
    digest that matches again: a table as a sealer with that mistake
    would write it."""
    entries, off = table(image)
    i = [e[0] for e in entries].index(pos)
    with open(image, "r+b") as f:
        f.seek(off + 32 * i + 12)
        f.write(struct.pack("<H", kind))
        f.seek(off)
        body = f.read(32 * len(entries) + 40)
        f.write(xxh3_128(body))


def flip(image, pos):
    with open(image, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0x55]))


def clean(r, label):
    t.check(r.returncode == 0 and r.stderr == "", f"{label}: exit 0, "
            "nothing on stderr", (r.returncode, r.stderr.strip()))


def check_empty(tmp, cleanups, label, base, image, want):
    """image is sealed, its export block listed as metadata, and it
    verifies, shows in info and mounts over base cleanly, serving want."""
    entries, _ = table(image)
    kinds = {pos: kind for pos, _, kind in entries}
    inodes, dirs, _, _ = superblock(image)
    block = export_block(image)
    t.check(block == dirs and kinds.get(block) == META and
            kinds.get(inodes) == META,
            f"{label}: the directory table is empty and the export block "
            "at its start is listed as metadata",
            (dirs, block, kinds.get(block)))
    clean(t.inspect("verify", image, check=False), f"{label}: verify")
    clean(t.inspect("info", base, image, check=False), f"{label}: info")
    mnt = os.path.join(tmp, "mnt-" + label.replace(" ", "-"))
    os.mkdir(mnt)
    r = t.cli([base, image, mnt])
    clean(r, f"{label}: mount over the base")
    if r.returncode == 0:
        cleanups.append(lambda: t.is_mounted(mnt) and t.unmount(mnt))
        got = t.dump_tree(mnt, with_root=True)
        if "." not in want:
            del got["."]
        t.compare_trees(want, got, f"{label} mounted over the base")
        t.unmount(mnt)


def refused(image, base, tmp, label):
    """verify, info and a mount of image each exit non-zero with a line
    naming image."""
    mnt = os.path.join(tmp, "mnt-refused")
    os.makedirs(mnt, exist_ok=True)
    for what, r in (("verify", t.inspect("verify", image, check=False)),
                    ("info", t.inspect("info", base, image, check=False)),
                    ("mount", t.cli([base, image, mnt]))):
        t.check(r.returncode != 0 and image in r.stderr,
                f"{label}: {what} exits non-zero naming the image",
                (r.returncode, r.stderr.strip()))
        if what == "mount" and t.is_mounted(mnt):
            t.unmount(mnt)


def test(tmp, cleanups):
    t.require_pack_tools()
    t.require_mount_capability()

    venv = t.make_venv(os.path.join(tmp, "venv"))
    base = os.path.join(tmp, "base.sqfs")
    t.pack("-q", venv, base)
    mnt = os.path.join(tmp, "mnt-base")
    os.mkdir(mnt)
    with t.mounted([base], mnt):
        want = t.dump_tree(mnt, with_root=True)

    # An empty directory, sealed by hand as the guides do.
    empty_src = os.path.join(tmp, "empty")
    os.mkdir(empty_src)
    os.chmod(empty_src, 0o755)
    empty = t.mksquashfs(empty_src, os.path.join(tmp, "empty.sqfs"))
    clean(t.inspect("seal", empty, check=False), "empty root: seal")
    # The root's attributes are the top layer's: the rest is the base's.
    check_empty(tmp, cleanups, "empty root", base, empty,
                {p: v for p, v in want.items() if p != "."})

    # A no-change delta from sqvenvfs-pack.
    delta = os.path.join(tmp, "delta.sqfs")
    r = t.pack("--base", base, venv, delta)
    t.check("0 entries added, 0 changed, 0 removed" in r.stdout + r.stderr,
            "pack: a no-change delta", r.stdout)
    check_empty(tmp, cleanups, "no-change delta", base, delta, want)

    # The same from sqvenvfs-edit -- true.
    edit = os.path.join(tmp, "edit.sqfs")
    r = t.run([os.environ.get("SQVENVFS_EDIT", "sqvenvfs-edit"), base, edit,
               "--", "true"], check=False)
    if r.returncode == 0:
        check_empty(tmp, cleanups, "edit -- true", base, edit, want)
    else:
        t.log(f"note: sqvenvfs-edit cannot run here: {r.stderr.strip()}")

    # Sealed before the export block was listed as metadata: its bytes
    # still match, nothing reads the block as a directory: served as is.
    old = os.path.join(tmp, "old-seal.sqfs")
    shutil.copy(delta, old)
    relabel(old, export_block(old), RAW)
    clean(t.inspect("verify", old, check=False), "older seal: verify")
    clean(t.inspect("info", base, old, check=False), "older seal: info")
    r = t.cli([base, old, mnt])
    clean(r, "older seal: mount over the base")
    if r.returncode == 0:
        t.unmount(mnt)

    # Real damage still stops each of them.
    inodes, _, _, _ = superblock(delta)
    bad = os.path.join(tmp, "bad-meta.sqfs")
    shutil.copy(delta, bad)
    flip(bad, inodes + 4)
    refused(bad, base, tmp, "a flipped byte in the inode table's block")
    _, off = table(delta)
    bad = os.path.join(tmp, "bad-table.sqfs")
    shutil.copy(delta, bad)
    flip(bad, off + 20)
    refused(bad, base, tmp, "a flipped byte in the digest table")


if __name__ == "__main__":
    t.main(test)
