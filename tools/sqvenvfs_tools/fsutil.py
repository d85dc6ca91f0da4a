# SPDX-License-Identifier: BSD-2-Clause
"""Small file-system helpers used by several steps."""

import hashlib
import os
import stat

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()



def replace_file(path, data):
    """Give path new contents, keeping mode and mtime (a new inode, so a hard
    link elsewhere in the staging copy keeps the old bytes)."""
    st = os.lstat(path)
    tmp = path + ".sqv-tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    os.utime(tmp, ns=(st.st_mtime_ns, st.st_mtime_ns))
    os.replace(tmp, path)


def inside(p, roots):
    for r in roots:
        if p == r or p.startswith(r + "/"):
            return r
    return None



def entry_is_dir(entry):
    """Whether a DirEntry is a directory or a symlink to one, False when
    that cannot be told: os.walk()'s rule for its dirnames."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def tree_size(root):
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


def tree_totals(root, listings=None, keep_max=0):
    """(entries, files, bytes of the files) under root, as staging counts
    them: what progress reports against. Every entry, the regular files
    (lstat), real directories walked into, as os.walk() would, but from
    scandir's entries (no path joins, no stat for a directory).
    listings: a dict that gets each directory's scandir entries (their
    lstat cached in them), for a walk that follows to reuse, while there
    are at most keep_max entries in all (the memory a huge tree would
    take is not worth the time)."""
    entries = files = size = 0
    todo = [root]
    while todo:
        d = todo.pop()
        try:
            with os.scandir(d) as it:
                found = list(it)
        except OSError:
            continue    # os.walk() skips what it cannot list, too
        entries += len(found)
        if listings is not None:
            if entries <= keep_max:
                listings[d] = found
            else:
                listings.clear()
                listings = None
        for e in found:
            try:
                if e.is_dir(follow_symlinks=False):
                    todo.append(e.path)
                    continue
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                files += 1
                size += st.st_size
    return entries, files, size
