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



def tree_size(root):
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


def tree_totals(root):
    """(entries, files, bytes of the files) under root, as staging counts
    them: what progress reports against."""
    entries = files = size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        entries += len(dirnames) + len(filenames)
        for n in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                files += 1
                size += st.st_size
    return entries, files, size
