# SPDX-License-Identifier: BSD-2-Clause
"""Staging: a private copy of the venv that the later steps are free to
change, in a directory removed at the end whatever happens."""

import errno
import os
import stat
import tempfile

from .errors import PackError
from .out import human
from .relocate import Candidates

WH_PREFIX = ".wh."
CHUNK = 1 << 20


def pick_tmpdir(explicit, need):
    if explicit:
        return explicit
    if os.environ.get("TMPDIR"):
        return os.environ["TMPDIR"]
    try:
        st = os.statvfs("/dev/shm")
        if (os.access("/dev/shm", os.W_OK) and
                st.f_bavail * st.f_frsize > 2 * need + (256 << 20)):
            return "/dev/shm"
    except OSError:
        pass
    return tempfile.gettempdir()



def make_staging(tmpbase):
    """A new private directory under tmpbase; the caller removes it."""
    try:
        return tempfile.mkdtemp(prefix="sqvenvfs-pack.", dir=tmpbase)
    except OSError as e:
        raise PackError(f"{tmpbase}: cannot make a staging directory: "
                        f"{e.strerror}")


def readable_mode(mode):
    """The rule for images whose owners all become root: what the venv's
    owner could read (and search, or run), everyone can. Group and others
    get the owner's r and x bits; write bits are never added. So a venv
    made under umask 077 gives an image its users can read, while a mode
    that already allows more is left alone."""
    own = mode & 0o500
    return mode | own >> 3 | own >> 6


class Stage:
    def __init__(self, out, src, dst, needles, readable=True, totals=None,
                 check=None, quick=None, listings=None):
        """readable: apply readable_mode() (for -all-root images); totals:
        the venv's (files, bytes), which progress counts towards;
        listings: directory -> its scandir entries, from the walk that
        counted them (fsutil.tree_totals), used instead of listing again
        (and each taken out as it is used); check:
        called at each directory, to stop at once for an error found
        meanwhile (a base read that failed); quick: a delta's
        delta.QuickCheck, whose skips() names the files not to copy."""
        self.out = out
        self.quick = quick
        self.listings = listings if listings is not None else {}
        self.check = check or (lambda: None)
        self.mode = readable_mode if readable else (lambda m: m)
        self.src = src
        self.dst = dst
        self.needles = needles      # venv path spellings, as bytes
        self.mtimes = {}            # staged dir path -> source mtime_ns
        self.pinned = []            # files whose bytes name the venv path
        self.skipped = []
        self.candidates = Candidates()   # for relocation
        self.files = self.dirs = self.links = 0
        self.bytes = 0
        self.totals = totals
        self._links = {}            # (dev, ino) -> staged path
        # bytes of a chunk's end that a needle across into the next
        # chunk may start in
        self.keep = max(len(n) for n in needles) - 1
        self._buf = bytearray(CHUNK)
        self._view = memoryview(self._buf)

    def copy(self):
        # VENV_DIR itself may be a symlink to the directory: follow it
        try:
            self._copy_dir(self.src, self.dst, os.stat(self.src))
        except OSError as ex:
            raise self.staging_error(ex) or ex
        self._progress(True)

    def _progress(self, force=False):
        if not self.out.tty:
            return      # called per file: not even the message is made
        files, size = self.files, self.bytes
        if self.quick is not None:
            files += self.quick.files
            size += self.quick.bytes
        if self.totals is None:
            msg = (f"staging: {files} files, {human(size)}")
        else:
            msg = (f"staging: {files} of {self.totals[0]} files, "
                   f"{human(size)} of {human(self.totals[1])}")
        if self.quick is not None:
            msg += f" ({self.quick.files} unchanged, left to the base)"
        self.out.progress(msg, force)

    def staging_error(self, ex):
        """A full staging file system is named as such: the fix is another
        staging directory, not anything about the file being copied."""
        if ex.errno not in (errno.ENOSPC, errno.EDQUOT):
            return None
        where = os.path.dirname(os.path.dirname(self.dst))
        return PackError(f"{where}: staging directory full "
                         f"({ex.strerror}) after {self.files} files; give "
                         "one with room for the venv (--tmpdir DIR or "
                         "TMPDIR)")

    def _copy_dir(self, s, d, st):
        self.check()
        os.mkdir(d, 0o700)
        self.mtimes[d] = st.st_mtime_ns
        self.dirs += 1
        listed = self.listings.pop(s, None)
        if listed is None:
            with os.scandir(s) as it:
                listed = list(it)
        listed.sort(key=lambda e: e.name)
        entries = []
        for e in listed:
            if e.name.startswith(WH_PREFIX):
                raise PackError(f"{e.path}: names starting with .wh. are "
                                "whiteouts in layered images: rename it")
            try:
                # the entry's lstat: one call, as before, and kept by it
                entries.append((e, e.stat(follow_symlinks=False)))
            except OSError as ex:
                raise PackError(f"{e.path}: {ex.strerror}")
        skip = ()
        if self.quick is not None:
            skip = self.quick.skips(s, os.fsencode(d[len(self.dst):]),
                                    entries, self.mode)
        for e, est in entries:
            if e.name in skip:
                continue
            sp = e.path
            dp = os.path.join(d, e.name)
            m = est.st_mode
            self.candidates.note(d, e.name, m)
            if stat.S_ISDIR(m):
                self._copy_dir(sp, dp, est)
            elif stat.S_ISREG(m):
                self._copy_file(sp, dp, est)
            elif stat.S_ISLNK(m):
                os.symlink(os.readlink(sp), dp)
                os.utime(dp, ns=(est.st_mtime_ns, est.st_mtime_ns),
                         follow_symlinks=False)
                self.links += 1
            elif stat.S_ISFIFO(m):
                os.mkfifo(dp, self.mode(stat.S_IMODE(m)))
                os.utime(dp, ns=(est.st_mtime_ns, est.st_mtime_ns))
                self.files += 1
            else:
                self.skipped.append(sp)
                self.out.warn(f"{sp}: skipped (a socket or device node)")
        os.chmod(d, self.mode(stat.S_IMODE(st.st_mode)))

    def _copy_file(self, s, d, st):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self._links:
            os.link(self._links[key], d)
            self.files += 1
            self.bytes += st.st_size
            return
        try:
            fi = os.open(s, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fo = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_TRUNC |
                             os.O_CLOEXEC, 0o666)
                try:
                    hit = self._copy_bytes(fi, fo)
                    self._set_meta(fo, d, st)
                finally:
                    os.close(fo)
            finally:
                os.close(fi)
        except OSError as ex:
            raise self.staging_error(ex) or \
                PackError(f"{ex.filename or s}: {ex.strerror}")
        if st.st_nlink > 1:
            self._links[key] = d
        if hit:
            self.pinned.append(d)
        self.files += 1
        self.bytes += st.st_size
        self._progress()

    def _copy_bytes(self, fi, fo):
        """Copy fi to fo (file descriptors) until EOF; whether the bytes
        name the venv path. Through one reused buffer: a new bytes object
        per read would be fresh memory, whose page faults cost as much as
        the copy. Most files fit in one chunk; the needles are searched in
        each chunk and, for a needle across two chunks, in the bytes around
        their boundary only."""
        buf, view = self._buf, self._view
        hit = False
        tail = b""
        while True:
            k = os.readv(fi, [buf])
            if not k:
                return hit
            done = 0
            while done < k:
                done += os.write(fo, view[done:k])
            if not hit:
                hit = any(buf.find(n, 0, k) >= 0 for n in self.needles)
                if tail and not hit:
                    edge = tail + bytes(view[:min(k, self.keep)])
                    hit = any(n in edge for n in self.needles)
                # the stream's last keep bytes, if a chunk was shorter
                tail = (tail + bytes(view[max(0, k - self.keep):k]))[
                    -self.keep:] if self.keep else b""

    def _set_meta(self, fo, d, st):
        """The source's mode (see readable_mode) and mtime, set on the open
        file; an error names the staged file, as chmod(d) did."""
        try:
            os.fchmod(fo, self.mode(stat.S_IMODE(st.st_mode)))
            os.utime(fo, ns=(st.st_mtime_ns, st.st_mtime_ns))
        except OSError as ex:
            raise OSError(ex.errno, ex.strerror, d) from None
