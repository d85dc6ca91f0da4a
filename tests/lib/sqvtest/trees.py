# SPDX-License-Identifier: BSD-2-Clause
"""Trees and images: odd trees to pack, images from mksquashfs, a tree's
every attribute and content hash to compare, a walk that reads all."""

import errno
import hashlib
import os
import random
import stat
import subprocess

from .harness import check

__all__ = [
    "mksquashfs", "ODD_NAMES", "random_tree", "sha256", "dump_tree",
    "diff_trees", "compare_trees", "walk_all"
]


def mksquashfs(src, image, comp="zstd", extra=()):
    """image from the directory src (no progress, no appending)."""
    cmd = ["mksquashfs", src, image, "-comp", comp, "-noappend",
           "-no-progress", "-quiet", *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return image


ODD_NAMES = ["plain", "with space", "ünïcödé-名前", "tab\tname", "new\nline",
             "-dash", ".hidden", "a" * 255, "quote'\"", "semi;colon",
             "back\\slash", "percent%s", "star*"]


def random_tree(root, seed, nfiles=300, ndirs=40, max_depth=12):
    """A tree with odd names, deep directories, empty, small and large
    files, symlinks and hard links. Returns the list of created paths."""
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    dirs = [root]
    # a deep chain
    d = root
    for i in range(max_depth):
        d = os.path.join(d, f"deep{i}")
        os.mkdir(d)
        dirs.append(d)
    for i in range(ndirs):
        parent = rng.choice(dirs)
        name = rng.choice(ODD_NAMES)[:200] + f"-d{i}"
        p = os.path.join(parent, name)
        os.mkdir(p)
        dirs.append(p)
    files = []
    for i in range(nfiles):
        parent = rng.choice(dirs)
        name = (rng.choice(ODD_NAMES)[:240] + f"-{i}")[:255]
        p = os.path.join(parent, name)
        kind = rng.random()
        if kind < 0.1:
            size = 0
        elif kind < 0.8:
            size = rng.randint(1, 9000)
        elif kind < 0.97:
            size = rng.randint(9000, 400_000)
        else:
            size = rng.randint(1_000_000, 3_000_000)
        with open(p, "wb") as f:
            # Half compressible text, half random bytes.
            if rng.random() < 0.5:
                f.write(rng.randbytes(size))
            else:
                line = b"".join(rng.choice([b"import os\n", b"x = 1\n",
                                            b"def f():\n    pass\n"])
                                for _ in range(64))
                f.write((line * (size // len(line) + 1))[:size])
        os.chmod(p, rng.choice([0o644, 0o600, 0o755, 0o444, 0o4755, 0o640]))
        os.utime(p, (rng.randint(0, 2**31 - 1),) * 2)
        files.append(p)
    # a sparse file with a hole in the middle
    p = os.path.join(root, "sparse")
    with open(p, "wb") as f:
        f.write(b"head")
        f.seek(5 * 1024 * 1024)
        f.write(b"tail")
    files.append(p)
    for i in range(30):
        target = rng.choice(files + dirs)
        link = os.path.join(rng.choice(dirs), f"link-{i}")
        os.symlink(os.path.relpath(target, os.path.dirname(link)), link)
    os.symlink("/absolute/dangling/target", os.path.join(root, "dangling"))
    for i in range(10):
        target = rng.choice(files)
        os.link(target, os.path.join(rng.choice(dirs), f"hard-{i}"))
    for d in dirs:
        os.utime(d, (rng.randint(0, 2**31 - 1),) * 2)
    return files


def sha256(path):
    """The sha256 of a file's content, in hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dump_tree(root, with_ino=False, with_root=False):
    """{path relative to root: (type, mode, uid, gid, size, mtime,
    target/hash/device, nlink)}; sizes of files and symlinks only, nlink of
    non-directories only. with_root adds root itself as ".". with_ino also
    returns {path: inode number} of the non-directories."""
    out = {}
    inos = {}
    for dirpath, dirnames, filenames in os.walk(root):
        names = dirnames + filenames
        if with_root and dirpath == root:
            names = [""] + names
        for name in names:
            p = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            fmt = stat.S_IFMT(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                extra = sha256(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                extra = None
            size = st.st_size if stat.S_ISREG(st.st_mode) or \
                stat.S_ISLNK(st.st_mode) else None
            nlink = st.st_nlink if not stat.S_ISDIR(st.st_mode) else None
            out[rel] = (fmt, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        size, int(st.st_mtime), extra, nlink)
            if with_ino and not stat.S_ISDIR(st.st_mode):
                inos[rel] = st.st_ino
    return (out, inos) if with_ino else out


def diff_trees(a, b, what_a="a", what_b="b"):
    """One line per path where two dump_tree() results differ."""
    return [f"{p!r}: {what_a} {a.get(p)} {what_b} {b.get(p)}"
            for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]


def compare_trees(expected, actual, label):
    """check() that actual has expected's paths, and nothing else, each
    with the same attributes and content."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    check(not missing, f"{label}: no path missing", missing[:5])
    check(not extra, f"{label}: no unexpected path", extra[:5])
    diffs = diff_trees({p: expected[p] for p in expected if p in actual},
                       {p: actual[p] for p in expected if p in actual},
                       "expected", "actual")
    check(not diffs, f"{label}: every path has the same type, mode, owner, "
          f"size, mtime, target and content ({len(diffs)} differ)",
          "\n".join(diffs[:5]))


def walk_all(mnt, read_cap=8 << 20):
    """Walk and read everything under mnt. Returns (count of paths,
    {errno name: count}, [unexpected problems]). EIO is what a damaged
    entry may give; anything else is unexpected."""
    errors = {}
    problems = []
    n = 0

    def note(e, what):
        name = errno.errorcode.get(e.errno, str(e.errno))
        errors[name] = errors.get(name, 0) + 1
        if e.errno != errno.EIO:
            problems.append(f"{what}: {e}")

    stack = [mnt]
    while stack:
        d = stack.pop()
        try:
            names = os.listdir(d)
        except OSError as e:
            note(e, f"listdir {d}")
            continue
        for name in names:
            p = os.path.join(d, name)
            n += 1
            if name in (".", "..") or "/" in name or len(name.encode()) > 255:
                problems.append(f"served an invalid name {name!r} in {d}")
            try:
                st = os.lstat(p)
            except OSError as e:
                note(e, f"lstat {p}")
                continue
            try:
                os.listxattr(p, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.ENODATA):
                    note(e, f"listxattr {p}")
            if stat.S_ISDIR(st.st_mode):
                stack.append(p)
            elif stat.S_ISLNK(st.st_mode):
                try:
                    if not os.readlink(p):
                        problems.append(f"empty symlink target {p}")
                except OSError as e:
                    note(e, f"readlink {p}")
            elif stat.S_ISREG(st.st_mode):
                try:
                    with open(p, "rb") as f:
                        got = 0
                        while got < read_cap:
                            b = f.read(1 << 20)
                            if not b:
                                break
                            got += len(b)
                except OSError as e:
                    note(e, f"read {p}")
    return n, errors, problems
