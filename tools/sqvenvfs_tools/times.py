# SPDX-License-Identifier: BSD-2-Clause
"""Times: every mtime in the image, and its creation time, are a function
of the input, so the same input gives the same image."""

import os
import re
import stat

from .errors import PackError

PYC_RE = re.compile(r"^(.+?)\.[^.]+(?:\.opt-[12])?\.pyc$")


def fix_times(stage, root, epoch, clamp):
    """Make every mtime a function of the input: pycs get their source's,
    directories their source directory's (new ones their parent's), and with
    SOURCE_DATE_EPOCH nothing is newer than it. Returns the newest mtime."""
    newest = 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for n in filenames + [d for d in dirnames
                              if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            t = st.st_mtime_ns
            if (os.path.basename(dirpath) == "__pycache__"
                    and stat.S_ISREG(st.st_mode)):
                m = PYC_RE.match(n)
                if m:
                    srcp = os.path.join(os.path.dirname(dirpath),
                                        m.group(1) + ".py")
                    try:
                        t = os.stat(srcp).st_mtime_ns
                    except OSError:
                        pass
            t = min(t, clamp * 10**9) if clamp is not None else t
            if t != st.st_mtime_ns:
                os.utime(p, ns=(t, t), follow_symlinks=False)
            newest = max(newest, t)
    # directories, deepest first (children already fixed)
    dirs = []
    for dirpath, dirnames, _ in os.walk(root):
        dirs.append(dirpath)
    for d in reversed(dirs):
        t = stage.mtimes.get(d)
        if t is None:
            parent = os.path.dirname(d)
            t = stage.mtimes.get(parent, os.lstat(parent).st_mtime_ns)
            stage.mtimes[d] = t
        t = min(t, clamp * 10**9) if clamp is not None else t
        os.utime(d, ns=(t, t))
        newest = max(newest, t)
    return newest // 10**9



def source_date_epoch():
    """SOURCE_DATE_EPOCH as seconds, or None when unset."""
    v = os.environ.get("SOURCE_DATE_EPOCH")
    if not v:
        return None
    try:
        clamp = int(v)
        if clamp < 0 or clamp >= 2**32:
            raise ValueError
    except ValueError:
        raise PackError("SOURCE_DATE_EPOCH: not a time in seconds "
                        "(0 to 4294967295)")
    return clamp
