# SPDX-License-Identifier: BSD-2-Clause
"""Read traces of -o record=FILE (format: docs/tools.md), independently of
the daemon's writer (lib/trace.c) and of pack's reader (hot.py), so that a
test of either checks it against the documented format, not against itself.
"""

import os

__all__ = ["TRACE_MAGIC", "read_trace", "unescape_trace_name"]

TRACE_MAGIC = "sqvenvfs-trace 1"


def unescape_trace_name(field):
    """The trace's escaping, read back: \\xHH is one byte."""
    out = bytearray()
    b = field.encode()
    i = 0
    while i < len(b):
        if b[i:i + 2] == b"\\x":
            out.append(int(b[i + 2:i + 4], 16))
            i += 4
        else:
            out.append(b[i])
            i += 1
    return os.fsdecode(bytes(out))


def read_trace(text):
    """The file lines of a whole trace, in order, as (path, size,
    [(offset, length), ...]). Raises ValueError saying what is wrong when
    the text is not one whole trace: magic first, 'end N' last counting the
    file lines, a newline at the end (so a cut trace is never read)."""
    lines = text.split("\n")
    if lines[0] != TRACE_MAGIC:
        raise ValueError(f"first line is {lines[0]!r}, not {TRACE_MAGIC!r}")
    if lines[-1] != "":
        raise ValueError("no newline at the end")
    body = [ln for ln in lines[1:-1] if not ln.startswith("#")]
    if not body or not body[-1].startswith("end "):
        raise ValueError("no 'end N' line at the end")
    files = []
    for ln in body[:-1]:
        path, size, ranges = ln.split("\t")
        rs = [tuple(int(x) for x in r.split("+")) for r in ranges.split(",")]
        files.append((unescape_trace_name(path), int(size), rs))
    if int(body[-1].split()[1]) != len(files):
        raise ValueError(f"'{body[-1]}' but {len(files)} file lines")
    return files
