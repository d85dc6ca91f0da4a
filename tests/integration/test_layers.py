#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Layered stacks: override, whiteouts, opaque directories, a file replacing
a directory and back, three layers, and random stacks, each compared with a
reference model of the OCI layer rules applied bottom-up."""

import os
import random
import shutil
import stat
import sys

import sqvtest as t

WH = ".wh."
OPQ = ".wh..wh..opq"


# ---- the reference model: OCI changesets applied bottom-up ----------------

def model_apply(tree, layer_root):
    """tree: {relpath: (source path, is_dir)}. Apply one layer's changes."""
    def remove(rel):
        for k in [k for k in tree if k == rel or k.startswith(rel + "/")]:
            del tree[k]

    for dirpath, dirnames, filenames in os.walk(layer_root):
        reldir = os.path.relpath(dirpath, layer_root)
        reldir = "" if reldir == "." else reldir
        names = dirnames + filenames
        join = (lambda n: f"{reldir}/{n}" if reldir else n)
        # A layer's whiteouts and opaque marker speak of the layers below,
        # so they apply before its own entries.
        if OPQ in names:
            for k in [k for k in tree if reldir == "" or
                      k.startswith(reldir + "/")]:
                if k != reldir:
                    del tree[k]
        for n in names:
            if n.startswith(WH) and n != OPQ:
                remove(join(n[len(WH):]))
        for n in names:
            if n.startswith(WH):
                continue
            rel = join(n)
            p = os.path.join(dirpath, n)
            is_dir = os.path.isdir(p) and not os.path.islink(p)
            if rel in tree and not (tree[rel][1] and is_dir):
                remove(rel)
            tree[rel] = (p, is_dir)
        # never descend into a whiteout-named dir
        dirnames[:] = [d for d in dirnames if not d.startswith(WH)]
    return tree


def model_dump(layers):
    tree = {}
    for layer in layers:
        model_apply(tree, layer)
    out = {}
    for rel, (p, _) in tree.items():
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            extra = os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            extra = t.sha256(p)
        else:
            extra = None
        size = st.st_size if not stat.S_ISDIR(st.st_mode) else None
        nlink = st.st_nlink if not stat.S_ISDIR(st.st_mode) else None
        out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                    st.st_uid, st.st_gid, size, int(st.st_mtime), extra, nlink)
    return out


# ---- scenario building ---------------------------------------------------

def write(root, rel, content="x", mode=0o644):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(content)
    os.chmod(p, mode)


def mkdir(root, rel):
    os.makedirs(os.path.join(root, rel), exist_ok=True)


def fixed_scenario(d):
    base, mid, top = (os.path.join(d, n) for n in ("base", "mid", "top"))
    # base
    write(base, "keep.txt", "base keeps")
    write(base, "override.txt", "from base")
    write(base, "gone.txt", "whited out by mid")
    write(base, "a/x", "base a/x")
    write(base, "a/z", "whited out in a subdirectory")
    write(base, "opq/1", "hidden by opaque")
    write(base, "opq/sub/2", "hidden by opaque")
    write(base, "e/inner", "e is a dir in base, a file in mid")
    write(base, "f", "f is a file in base, a dir in mid")
    write(base, "merge3/base-only", "merged from base")
    write(base, "readd.txt", "base version, whited out by mid, re-added by top")
    write(base, "dirback/deep/file", "dir, then file in mid, then dir in top")
    os.symlink("keep.txt", os.path.join(base, "link"))
    # mid
    write(mid, "override.txt", "from mid", 0o600)
    write(mid, f"{WH}gone.txt", "")
    write(mid, f"a/{WH}z", "")
    write(mid, f"opq/{OPQ}", "")
    write(mid, "opq/3", "the only entry of opq")
    write(mid, "e", "now a file")
    write(mid, "f/g", "now a dir")
    write(mid, "merge3/mid-only", "merged from mid")
    write(mid, f"{WH}readd.txt", "")
    write(mid, "dirback", "a file in mid")
    write(mid, f"{WH}never-existed", "")
    # an entry and its whiteout in one layer: the entry stays
    write(mid, "both", "mid's both")
    write(mid, f"{WH}both", "")
    write(base, "both", "base's both, hidden")
    # top
    write(top, "override.txt", "from top")
    write(top, "merge3/top-only", "merged from top")
    write(top, "readd.txt", "re-added by top")
    write(top, "dirback/new", "a dir again")
    write(top, f"{WH}link", "")
    write(top, "mid-file-whiteout-target", "top")
    return [base, mid, top]


def random_layer(root, rng, names, depth=0):
    os.makedirs(root, exist_ok=True)
    for n in rng.sample(names, rng.randint(2, len(names))):
        r = rng.random()
        p = os.path.join(root, n)
        if r < 0.15:
            open(os.path.join(root, WH + n), "w").close()
        elif r < 0.45 and depth < 3:
            random_layer(p, rng, names, depth + 1)
            if rng.random() < 0.15:
                open(os.path.join(p, OPQ), "w").close()
        elif r < 0.55:
            os.symlink(rng.choice(names), p)
        else:
            with open(p, "w") as f:
                f.write(f"{root}:{n}:{rng.random()}")
            os.chmod(p, rng.choice([0o644, 0o600, 0o755]))


def random_stack(d, seed):
    """2 to 4 random layers under d; their roots, bottom first."""
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(7)]
    rl = []
    for i in range(rng.randint(2, 4)):
        root = os.path.join(d, f"r{seed}-{i}")
        random_layer(root, rng, names)
        rl.append(root)
    return rl


def pack_layers(d, layers, tag):
    images = []
    for i, layer in enumerate(layers):
        images.append(t.mksquashfs(layer, os.path.join(d, f"{tag}-{i}.sqfs")))
    return images


def check_stack(d, layers, tag):
    images = pack_layers(d, layers, tag)
    expected = model_dump(layers)
    mnt = os.path.join(d, f"mnt-{tag}")
    os.mkdir(mnt)
    with t.mounted(images, mnt):
        actual, inos = t.dump_tree(mnt, with_ino=True)
        t.compare_trees(expected, actual, f"{tag}: stack of {len(images)}")
        t.check(not any(os.path.basename(p).startswith(WH) for p in actual),
                f"{tag}: no whiteout file is visible")
        # st_ino = layer << 32 | image inode number: unique across layers.
        seen = {}
        for rel, ino in inos.items():
            seen.setdefault(ino, []).append(rel)
        dup = [v for v in seen.values() if len(v) > 1]
        t.check(not dup, f"{tag}: inode numbers are unique across layers {dup[:3]}")
    return expected, actual, inos


def main():
    t.require_mount_capability()
    with t.tempdir() as d:
        layers = fixed_scenario(d)
        expected, actual, inos = check_stack(d, layers, "fixed")
        want = {
            "override.txt": "from top", "readd.txt": "re-added by top",
            "e": "now a file", "f/g": "now a dir", "opq/3":
            "the only entry of opq", "both": "mid's both",
            "merge3/base-only": "merged from base",
            "merge3/mid-only": "merged from mid",
            "merge3/top-only": "merged from top",
            "dirback/new": "a dir again", "a/x": "base a/x",
        }
        mnt = os.path.join(d, "mnt-check")
        os.mkdir(mnt)
        images = [os.path.join(d, f"fixed-{i}.sqfs") for i in range(3)]
        with t.mounted(images, mnt):
            for rel, content in want.items():
                got = open(os.path.join(mnt, rel)).read()
                t.check(got == content, f"{rel} reads {content!r}")
            for rel in ["gone.txt", "a/z", "opq/1", "opq/sub", "e/inner",
                        "link", "dirback/deep", "never-existed"]:
                t.check(not os.path.lexists(os.path.join(mnt, rel)),
                        f"{rel} is hidden")
            t.check(sorted(os.listdir(os.path.join(mnt, "opq"))) == ["3"],
                    "an opaque directory lists only its own layer's entries")
            st = os.stat(os.path.join(mnt, "override.txt"))
            t.check(st.st_ino >> 32 == 2,
                    "an entry from the third layer has layer 2 in its st_ino")
            st = os.stat(os.path.join(mnt, "keep.txt"))
            t.check(st.st_ino >> 32 == 0, "an entry from the base has layer 0")
            # A negative lookup answered once stays absent.
            for _ in range(2):
                t.check(not os.path.exists(os.path.join(mnt, "nope")),
                        "a missing name stays missing")
        # Random stacks against the model.
        for seed in range(8):
            rl = random_stack(d, seed)
            check_stack(d, rl, f"random{seed}")
            for root in rl:
                shutil.rmtree(root)
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
