#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""A generated tree with odd names, every file type, hard links, xattrs and
owners, packed with each compression mksquashfs writes, mounted, and
compared path by path with its source; mmap works; inode numbers are stable
across mounts."""

import mmap
import os
import stat
import sys

import sqvtest as t

COMPRESSIONS = ["gzip", "lzo", "xz", "lz4", "zstd"]


def add_special_files(src):
    """Owners, device nodes, a fifo and xattrs: what only root can make."""
    if os.geteuid() != 0:
        return False
    os.mknod(os.path.join(src, "chardev"), 0o600 | stat.S_IFCHR,
             os.makedev(1, 3))
    os.mknod(os.path.join(src, "blockdev"), 0o640 | stat.S_IFBLK,
             os.makedev(8, 17))
    os.mkfifo(os.path.join(src, "fifo"), 0o644)
    owned = os.path.join(src, "owned")
    with open(owned, "w") as f:
        f.write("owned by someone else\n")
    os.chown(owned, 12345, 54321)
    os.chown(os.path.join(src, "fifo"), 1000, 1000, follow_symlinks=False)
    return True


def add_xattrs(src):
    p = os.path.join(src, "with-xattrs")
    with open(p, "w") as f:
        f.write("x\n")
    attrs = {"user.comment": b"hello", "user.empty": b"",
             "user.binary": bytes(range(256))}
    if os.geteuid() == 0:
        attrs["trusted.overlay.test"] = b"trusted-value"
        attrs["security.test"] = b"security-value"
    try:
        for k, v in attrs.items():
            os.setxattr(p, k, v)
    except OSError as e:
        print(f"note: xattrs not supported on the source fs ({e}); skipped")
        os.unlink(p)
        return None
    return attrs


def main():
    t.require_mount_capability()
    with t.tempdir() as d:
        src = os.path.join(d, "src")
        t.random_tree(src, seed=20261121)
        special = add_special_files(src)
        attrs = add_xattrs(src)
        expected = t.dump_tree(src)
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        inos_by_comp = {}
        for comp in COMPRESSIONS:
            img = t.mksquashfs(src, os.path.join(d, f"tree-{comp}.sqfs"), comp)
            with t.mounted([img], mnt):
                actual, inos = t.dump_tree(mnt, with_ino=True)
                t.compare_trees(expected, actual, f"{comp}")
                inos_by_comp[comp] = inos
                # Hard links: one inode, the stored link count.
                groups = {}
                for rel, ino in inos.items():
                    groups.setdefault(ino, []).append(rel)
                shared = [g for g in groups.values() if len(g) > 1]
                src_groups = {}
                for rel in inos:
                    st = os.lstat(os.path.join(src, rel))
                    if not stat.S_ISDIR(st.st_mode):
                        src_groups.setdefault(st.st_ino, []).append(rel)
                src_shared = sorted(sorted(g) for g in src_groups.values()
                                    if len(g) > 1)
                t.check(sorted(sorted(g) for g in shared) == src_shared,
                        f"{comp}: hard links share one inode number, as in "
                        f"the source ({len(src_shared)} groups)")
                if attrs:
                    p = os.path.join(mnt, "with-xattrs")
                    got = {k: os.getxattr(p, k) for k in attrs}
                    t.check(got == attrs,
                            f"{comp}: xattrs served as stored, with the right "
                            f"prefixes ({sorted(attrs)})")
                    t.check(sorted(os.listxattr(p)) == sorted(attrs),
                            f"{comp}: listxattr lists exactly the stored names")
                    try:
                        os.getxattr(p, "user.absent")
                        t.check(False, f"{comp}: absent xattr is ENODATA")
                    except OSError as e:
                        t.check(e.errno == 61, f"{comp}: absent xattr is ENODATA")
                if comp == "zstd":
                    check_mmap(src, mnt)
                    check_statfs(mnt)
        t.check(all(v == inos_by_comp["zstd"] for v in inos_by_comp.values()),
                "inode numbers are the same for the same tree in every "
                "compression (they come from the image, not from the mount)")
        # Stable from mount to mount.
        img = os.path.join(d, "tree-zstd.sqfs")
        with t.mounted([img], mnt):
            _, again = t.dump_tree(mnt, with_ino=True)
        t.check(again == inos_by_comp["zstd"],
                "inode numbers are stable from mount to mount")
        if special:
            t.check(any(v[0] == stat.S_IFCHR for v in expected.values()),
                    "the tree had device nodes and a fifo to compare")
    t.finish()


def check_mmap(src, mnt):
    """Python loads extension modules with mmap: it must see the bytes."""
    biggest = max((os.path.join(dp, f) for dp, _, fs in os.walk(src)
                   for f in fs if os.path.isfile(os.path.join(dp, f))
                   and not os.path.islink(os.path.join(dp, f))),
                  key=os.path.getsize)
    rel = os.path.relpath(biggest, src)
    with open(os.path.join(mnt, rel), "rb") as f, \
            mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        data = m[:]
    t.check(data == open(biggest, "rb").read(),
            f"mmap of {os.path.getsize(biggest)} bytes reads the stored bytes")


def check_statfs(mnt):
    st = os.statvfs(mnt)
    t.check(st.f_flag & os.ST_RDONLY and st.f_flag & os.ST_NOSUID and
            st.f_flag & os.ST_NODEV, "the mount is read-only, nosuid, nodev")
    try:
        open(os.path.join(mnt, "newfile"), "w")
        t.check(False, "creating a file fails")
    except OSError as e:
        t.check(e.errno == 30, f"creating a file fails with EROFS ({e.errno})")


if __name__ == "__main__":
    sys.exit(main())
