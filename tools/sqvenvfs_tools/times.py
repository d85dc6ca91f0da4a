# SPDX-License-Identifier: BSD-2-Clause
"""Times: every mtime in the image, and its creation time, are a function
of the input, so the same input gives the same image."""

import os
import re
import stat

from .errors import PackError
from .fsutil import entry_is_dir

PYC_RE = re.compile(r"^(.+?)\.[^.]+(?:\.opt-[12])?\.pyc$")


class Tally:
    """A staged tree's entries as the summary counts them: files (and
    other non-directories), directories below the root (the root is no
    directory's entry; sqvenvfs-inspect info does not count it either),
    symlinks,
    and size, the bytes of every name of a file and of every symlink not
    to a directory (as os.walk lists them among the files)."""

    def __init__(self):
        self.files = self.links = self.dirs = 0
        self.size = 0

    def add(self, entry, st):
        if stat.S_ISLNK(st.st_mode):
            self.links += 1
            if entry_is_dir(entry):
                return
        else:
            self.files += 1
        self.size += st.st_size


def fix_times(stage, root, epoch, clamp):
    """Make every mtime a function of the input: pycs get their source's,
    directories their source directory's (new ones their parent's), and with
    SOURCE_DATE_EPOCH nothing is newer than it. Returns the newest mtime
    and the tree's Tally, counted in the same walk (a walk of a big tree
    is most of the time this takes)."""
    ns_clamp = clamp * 10**9 if clamp is not None else None
    tally = Tally()
    dirs = []
    newest = _fix_files(root, ns_clamp, tally, dirs)
    # directories after every file (a pyc's source is read as it was),
    # deepest first: a new one reads its parent's time before the parent
    # is fixed
    for d in dirs:
        t = stage.mtimes.get(d)
        if t is None:
            parent = os.path.dirname(d)
            t = stage.mtimes.get(parent, os.lstat(parent).st_mtime_ns)
            stage.mtimes[d] = t
        t = min(t, ns_clamp) if ns_clamp is not None else t
        os.utime(d, ns=(t, t))
        newest = max(newest, t)
    return newest // 10**9, tally


def _fix_files(d, ns_clamp, tally, dirs, py_mtimes=None):
    """Fix the times of everything below d but directories, count it in
    tally, and append the directories to dirs, children before their
    parent (d last). py_mtimes: for a __pycache__ directory, the mtimes
    of the regular .py files beside it, as its parent's listing has them.
    Returns the newest mtime (ns)."""
    newest = 0
    pycache = py_mtimes is not None
    try:
        with os.scandir(d) as it:
            entries = list(it)
    except OSError:
        return newest   # skipped, as os.walk() does: not even fixed
    subdirs = []
    here = {}
    for e in entries:
        st = e.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            subdirs.append(e)
            continue
        if stat.S_ISREG(st.st_mode) and e.name.endswith(".py"):
            here[e.name] = st.st_mtime_ns
        tally.add(e, st)
        t = st.st_mtime_ns
        if pycache and stat.S_ISREG(st.st_mode):
            t = _source_mtime(d, e.name, t, py_mtimes)
        t = min(t, ns_clamp) if ns_clamp is not None else t
        if t != st.st_mtime_ns:
            os.utime(e.path, ns=(t, t), follow_symlinks=False)
        newest = max(newest, t)
    # after the files: a __pycache__ below takes its sources' times from
    # this listing, not a stat each
    for e in subdirs:
        tally.dirs += 1
        newest = max(newest, _fix_files(
            e.path, ns_clamp, tally, dirs,
            here if e.name == "__pycache__" else None))
    dirs.append(d)
    return newest


def _source_mtime(pycache, name, default, py_mtimes):
    """A pyc's time is its source's (mtime_ns), when it has one: from
    py_mtimes for a regular file, else (a symlink) from a stat."""
    m = PYC_RE.match(name)
    if m:
        src = m.group(1) + ".py"
        t = py_mtimes.get(src)
        if t is not None:
            return t
        try:
            return os.stat(os.path.join(os.path.dirname(pycache),
                                        src)).st_mtime_ns
        except OSError:
            pass
    return default


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
