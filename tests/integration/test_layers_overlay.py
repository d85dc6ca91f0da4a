#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Images packed straight from overlayfs upper directories: the stacks of
test_layers.py with every ".wh.NAME" turned into a character device 0:0
named NAME and every ".wh..wh..opq" into the overlay.opaque xattr (trusted.
in some directories, user. in others), made for real with mknod and
setfattr. Each mount must equal the OCI reference model of the original
layers, and no marker (device or xattr) may be visible."""

import errno
import os
import random
import shutil
import stat
import sys

import sqvtest as t
import test_layers as L

XATTRS = ["trusted.overlay.opaque", "user.overlay.opaque"]


def to_overlay_form(src, dst, rng):
    """Copy the OCI layer src to dst in overlayfs's form. A whiteout whose
    name the same layer also holds stays in OCI form (overlayfs cannot
    hold both), so some stacks mix the two forms. Returns the number of
    markers converted."""
    shutil.copytree(src, dst, symlinks=True)
    converted = 0
    for dirpath, dirnames, filenames in os.walk(dst, topdown=False):
        names = set(dirnames + filenames)
        for n in filenames:
            p = os.path.join(dirpath, n)
            if n == L.OPQ:
                os.unlink(p)
                os.setxattr(dirpath, rng.choice(XATTRS), b"y")
                converted += 1
            elif n.startswith(L.WH) and n[len(L.WH):] not in names:
                os.unlink(p)
                os.mknod(os.path.join(dirpath, n[len(L.WH):]),
                         stat.S_IFCHR | 0o644, os.makedev(0, 0))
                converted += 1
    # Directory times as in the source: the model reads them there.
    for dirpath, _, _ in os.walk(src, topdown=False):
        rel = os.path.relpath(dirpath, src)
        st = os.lstat(dirpath)
        os.utime(os.path.join(dst, rel), ns=(st.st_atime_ns, st.st_mtime_ns))
    return converted


def check_overlay_stack(d, layers, tag, rng):
    upper = []
    converted = 0
    for i, layer in enumerate(layers):
        dst = os.path.join(d, f"{tag}-ovl-{i}")
        converted += to_overlay_form(layer, dst, rng)
        upper.append(dst)
    images = L.pack_layers(d, upper, tag)
    expected = L.model_dump(layers)
    mnt = os.path.join(d, f"mnt-{tag}")
    os.mkdir(mnt)
    with t.mounted(images, mnt):
        actual = t.dump_tree(mnt)
        t.compare_trees(expected, actual,
                        f"{tag}: {len(images)} layers, {converted} markers "
                        "in overlayfs form")
        devs = [p for p, v in actual.items() if v[0] == stat.S_IFCHR]
        t.check(not devs, f"{tag}: no whiteout device is visible {devs[:3]}")
        marked = [p for p in actual if actual[p][0] == stat.S_IFDIR and
                  set(XATTRS) & set(served_xattrs(os.path.join(mnt, p)))]
        t.check(not marked, f"{tag}: no opaque xattr is served {marked[:3]}")
    for p in upper:
        shutil.rmtree(p)
    return converted


def served_xattrs(path):
    """The xattr names served for path; a stack whose images store none
    answers "not supported" (the daemon tells the kernel to stop asking)."""
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno == errno.ENOTSUP:
            return []
        raise


def main():
    t.require_mount_capability()
    if os.geteuid() != 0:
        t.skip("needs root to make 0:0 devices and trusted.* xattrs")
    with t.tempdir() as d:
        rng = random.Random(18)
        layers = L.fixed_scenario(d)
        n = check_overlay_stack(d, layers, "fixed", rng)
        # mid's .wh.gone.txt, a/.wh.z, opq's marker, .wh.readd.txt,
        # .wh.never-existed; top's .wh.link (.wh.both stays OCI).
        t.check(n == 6, f"the fixed stack has 6 markers in overlayfs form ({n})")
        mnt = os.path.join(d, "mnt-opq")
        os.mkdir(mnt)
        images = [os.path.join(d, f"fixed-{i}.sqfs") for i in range(3)]
        with t.mounted(images, mnt):
            t.check(sorted(os.listdir(os.path.join(mnt, "opq"))) == ["3"],
                    "an opaque xattr hides the directory's lower entries")
            t.check(not os.path.lexists(os.path.join(mnt, "gone.txt")),
                    "a 0:0 device hides the name below")
            t.check(open(os.path.join(mnt, "both")).read() == "mid's both",
                    "an OCI whiteout beside its own entry still hides only below")
        for seed in range(8):
            rl = L.random_stack(d, seed)
            check_overlay_stack(d, rl, f"random{seed}", rng)
            for root in rl:
                shutil.rmtree(root)
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
