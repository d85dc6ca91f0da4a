# SPDX-License-Identifier: BSD-2-Clause
"""An overlayfs upper directory turned, in place, into a delta tree in the
OCI form that sqvenvfs-pack writes: overlayfs's whiteouts (character
devices 0:0) become empty ".wh.NAME" files, its opaque directories (an
overlay.opaque xattr) get a ".wh..wh..opq" file. In place, so an edit
writes no second copy of the change.

Upper offers what relocation and the times step read of a Stage (dst,
mtimes, pinned), so the tree then goes through the same steps as a
staged copy of a whole venv."""

import errno
import os
import stat

from .errors import PackError
from .relocate import Candidates
from .stage import WH_PREFIX

WH_OPAQUE = ".wh..wh..opq"
NAME_MAX = 255
# "trusted." as root, "user." with userxattr (kernel overlayfs in a user
# namespace), fuse-overlayfs's own name when unprivileged.
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque",
                 "user.fuseoverlayfs.opaque")
# What overlayfs writes for a renamed directory or a file whose data stayed
# below: a tree holding them is not a plain changeset. The mounts that
# sqvenvfs-edit makes never write them; this refuses an upper that has.
FOREIGN_XATTRS = ("overlay.redirect", "overlay.metacopy")
# fuse-overlayfs marks an opaque directory with this whiteout too.
FUSE_OPAQUE_TWIN = ".wh..opq"


def _xattrs(path):
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise


def _is_opaque(path, names):
    for n in names:
        if n in OPAQUE_XATTRS:
            try:
                if os.getxattr(path, n, follow_symlinks=False) == b"y":
                    return True
            except OSError:
                pass
    return False


def _empty_file(path, mtime_ns):
    with open(path, "wb"):
        pass
    os.chmod(path, 0o644)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def _names_any(path, needles):
    """Whether the file's bytes hold one of needles (read in 1 MiB pieces
    with an overlap, so a needle across two pieces is found)."""
    keep = max(len(n) for n in needles) - 1
    tail = b""
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return False
            w = tail + b
            if any(n in w for n in needles):
                return True
            tail = w[-keep:] if keep else b""


class Upper:
    def __init__(self, out, root, needles, lower, fuse_markers):
        """root: the upper directory (changed in place); needles: the
        spellings of the path COMMAND saw the venv at, as bytes; lower:
        where the image stack is mounted (to tell added from changed);
        fuse_markers: fuse-overlayfs wrote it (".wh." names are its own
        whiteouts then, not names COMMAND made)."""
        self.out = out
        self.dst = root
        self.needles = needles
        self.lower = lower
        self.fuse_markers = fuse_markers
        self.mtimes = {}            # directory -> its mtime_ns before
        self.pinned = []            # files whose bytes name the venv path
        self.candidates = Candidates()   # for relocation
        self.added = self.changed = self.removed = self.opaque = 0
        self.dropped = []           # (relpath, why)
        self.added_paths = []

    def rel(self, p):
        return os.path.relpath(p, self.dst)

    def convert(self):
        self._dir(self.dst, False)

    def _fuse_marker(self, name):
        """Whether name is one of fuse-overlayfs's own opaque markers."""
        return self.fuse_markers and name in (WH_OPAQUE, FUSE_OPAQUE_TWIN)

    def _dir(self, d, hidden):
        """hidden: an ancestor carries an opaque mark already, so nothing
        of the images below d shows and d needs no mark of its own."""
        st = os.lstat(d)
        self.mtimes[d] = st.st_mtime_ns
        xnames = _xattrs(d)
        self._refuse_foreign(d, xnames)
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        # Decided before the children, which must know it.
        opaque = (_is_opaque(d, xnames) or
                  any(self._fuse_marker(e.name) for e in entries))
        mark = opaque and not hidden and self._below_is_dir(d)
        for e in entries:
            p = os.path.join(d, e.name)
            est = os.lstat(p)
            m = est.st_mode
            if stat.S_ISCHR(m) and est.st_rdev == 0:
                os.unlink(p)
                if self.fuse_markers and e.name == FUSE_OPAQUE_TWIN:
                    continue
                if len(WH_PREFIX) + len(os.fsencode(e.name)) > NAME_MAX:
                    raise PackError(f"{self.rel(p)}: deleted, but its name "
                                    "is too long for an OCI whiteout "
                                    f"(over {NAME_MAX - len(WH_PREFIX)} "
                                    "bytes)")
                _empty_file(os.path.join(d, WH_PREFIX + e.name),
                            st.st_mtime_ns)
                self.removed += 1
            elif e.name == WH_OPAQUE and self.fuse_markers:
                os.unlink(p)
            elif e.name.startswith(WH_PREFIX):
                if not (self.fuse_markers and stat.S_ISREG(m)):
                    raise PackError(f"{self.rel(p)}: names starting with "
                                    ".wh. are whiteouts in layered images: "
                                    "COMMAND made one")
                self.removed += 1
            elif stat.S_ISDIR(m):
                self._count(p)
                self._dir(p, hidden or mark)
            elif stat.S_ISREG(m) or stat.S_ISLNK(m) or stat.S_ISFIFO(m):
                self._refuse_foreign(p, _xattrs(p))
                self._count(p)
                self.candidates.note(d, e.name, m)
                if stat.S_ISREG(m) and _names_any(p, self.needles):
                    self.pinned.append(p)
            else:
                # sockets and device nodes: sqvenvfs-pack skips them too
                os.unlink(p)
                self.dropped.append((self.rel(p), "a socket or device node"))
        if mark:
            _empty_file(os.path.join(d, WH_OPAQUE), st.st_mtime_ns)
            self.opaque += 1
        os.utime(d, ns=(st.st_mtime_ns, st.st_mtime_ns))

    def _below_is_dir(self, d):
        """Whether the image stack has a directory at d's place, reached
        through directories only (not through a symlink of the images).
        Only then does an opaque mark hide anything: fuse-overlayfs marks
        every directory COMMAND creates opaque, a new one too, which the
        delta would carry as "replaced" although it replaced nothing."""
        below = self.lower
        for part in self.rel(d).split(os.sep):
            if part == ".":
                continue
            below = os.path.join(below, part)
            try:
                if not stat.S_ISDIR(os.lstat(below).st_mode):
                    return False
            except OSError:
                return False
        return True

    def _refuse_foreign(self, p, xnames):
        for n in xnames:
            if n.split(".", 1)[-1] in FOREIGN_XATTRS:
                raise PackError(f"{self.rel(p)}: carries {n}: an overlay "
                                "with redirect_dir or metacopy wrote this "
                                "upper directory")

    def _count(self, p):
        """A directory only copied up to hold a change is neither."""
        rel = self.rel(p)
        below = os.path.join(self.lower, rel)
        if os.path.isdir(p) and not os.path.islink(p):
            if os.path.isdir(below) and not os.path.islink(below):
                return
            self.added += 1
        elif os.path.lexists(below):
            self.changed += 1
        else:
            self.added += 1
        self.added_paths.append(rel)

    def drop_stale_pycs(self):
        """A pyc in the change whose source is not in it was written for a
        module of the image stack (by an import during COMMAND): the
        images' own pyc for it stays right, so it goes, and so does a
        __pycache__ directory it leaves empty. Runs before convert()."""
        for dirpath, dirnames, filenames in os.walk(self.dst, topdown=False):
            if os.path.basename(dirpath) != "__pycache__":
                continue
            parent = os.path.dirname(dirpath)
            for n in filenames:
                src = os.path.join(parent, n.split(".", 1)[0] + ".py")
                if n.endswith(".pyc") and not os.path.isfile(src):
                    os.unlink(os.path.join(dirpath, n))
            left = os.listdir(dirpath)
            markers = [n for n in left if self._fuse_marker(n)]
            if len(markers) < len(left):
                continue
            # An emptied __pycache__ stays only where it hides the images'
            # (an opaque mark over a directory of theirs).
            opaque = markers or _is_opaque(dirpath, _xattrs(dirpath))
            if opaque and self._below_is_dir(dirpath):
                continue
            pst = os.lstat(parent)
            for n in markers:
                os.unlink(os.path.join(dirpath, n))
            os.rmdir(dirpath)
            os.utime(parent, ns=(pst.st_mtime_ns, pst.st_mtime_ns))
