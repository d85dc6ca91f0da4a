# SPDX-License-Identifier: BSD-2-Clause
"""The dump format shared with `sqvenvfs-inspect dump`: one line per path,
tab-separated: PATH TYPE MODE UID GID SIZE MTIME TARGET HASH.
Bytes outside 0x20..0x7e, and the backslash, are written as \\xHH."""

import stat

from .errors import PackError

def escape(b):
    out = []
    for c in b:
        if c == 0x5C or c < 0x20 or c > 0x7E:
            out.append("\\x%02x" % c)
        else:
            out.append(chr(c))
    return "".join(out)


def unescape(s):
    if "\\" not in s:
        return s.encode()
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1:i + 2] == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            out += s[i].encode()
            i += 1
    return bytes(out)


class Entry:
    __slots__ = ("type", "mode", "uid", "gid", "size", "mtime", "target",
                 "hash")

    def __init__(self, type_, mode, uid, gid, size, mtime, target, hash_):
        self.type = type_
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime = mtime
        self.target = target
        self.hash = hash_


def parse_dump(text):
    tree = {}
    for n, line in enumerate(text.splitlines(), 1):
        f = line.split("\t")
        if len(f) != 9:
            raise PackError(f"sqvenvfs-inspect dump: line {n}: "
                            f"expected 9 fields, got {len(f)}")
        tree[unescape(f[0])] = Entry(f[1], int(f[2], 8), int(f[3]),
                                     int(f[4]), int(f[5]), int(f[6]),
                                     unescape(f[7]) if f[7] else None,
                                     None if f[8] == "-" else f[8])
    return tree


def dump_paths(text):
    """The set of paths of a dump, the rest of each line unread: all a
    check for missing paths needs, in a fraction of parse_dump()'s time."""
    paths = set()
    for n, line in enumerate(text.splitlines(), 1):
        tab = line.find("\t")
        if tab < 0:
            raise PackError(f"sqvenvfs-inspect dump: line {n}: "
                            "expected 9 fields, got 1")
        paths.add(unescape(line[:tab]))
    return paths


def type_letter(m):
    if stat.S_ISREG(m):
        return "f"
    if stat.S_ISDIR(m):
        return "d"
    if stat.S_ISLNK(m):
        return "l"
    if stat.S_ISCHR(m):
        return "c"
    if stat.S_ISBLK(m):
        return "b"
    if stat.S_ISFIFO(m):
        return "p"
    return "s"
