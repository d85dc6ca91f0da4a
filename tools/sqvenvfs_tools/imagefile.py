# SPDX-License-Identifier: BSD-2-Clause
"""Writing an image file atomically: a hidden temporary file beside IMAGE
(so the rename stays on one file system), filled by the caller, synced,
then moved to IMAGE; on any failure only the temporary file goes. This is
the one place that decides how an image file comes into being."""

import errno
import os
import stat
import tempfile

from .errors import PackError


def current_umask():
    """The process's umask, read without changing it (Linux >= 4.7);
    else set and restored at once (the tools are single-threaded)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    m = os.umask(0o22)
    os.umask(m)
    return m


class TempImage:
    def __init__(self, image, shown, force):
        """image: absolute path of IMAGE; shown: how the user spelled it
        (for messages); force: replace an existing IMAGE."""
        self.image = image
        self.shown = shown
        self.force = force
        self.outdir = os.path.dirname(image)
        self.path = None

    def check(self):
        """Refuse early what the final rename would refuse."""
        if os.path.isdir(self.image):
            raise PackError(f"{self.shown}: is a directory")
        if os.path.lexists(self.image) and not self.force:
            raise PackError(f"{self.shown}: exists (use --force to "
                            "replace it)")
        # The image is written last, after minutes of work (a re-layout
        # unpacks first): a directory it cannot go in is said now.
        try:
            is_dir = stat.S_ISDIR(os.stat(self.outdir).st_mode)
        except FileNotFoundError:
            raise PackError(f"{self.outdir}: no such directory")
        except OSError as e:
            raise PackError(f"{self.outdir}: {e.strerror}")
        if not is_dir:
            raise PackError(f"{self.outdir}: not a directory")
        if not os.access(self.outdir, os.W_OK | os.X_OK, effective_ids=True):
            ro = os.statvfs(self.outdir).f_flag & os.ST_RDONLY
            why = os.strerror(errno.EROFS if ro else errno.EACCES)
            raise PackError(f"{self.outdir}: cannot write: {why}")

    def create(self):
        """Create the empty temporary file; returns its path."""
        if not os.path.isdir(self.outdir):
            raise PackError(f"{self.outdir}: no such directory")
        try:
            fd, self.path = tempfile.mkstemp(
                dir=self.outdir, prefix="." + os.path.basename(self.image)
                + ".", suffix=".partial")
            # mkstemp makes it 0600; an image is for others to read too,
            # so it gets the mode any file this user writes gets
            os.fchmod(fd, 0o666 & ~current_umask())
            os.close(fd)
        except OSError as e:
            raise PackError(f"{self.outdir}: cannot write: {e.strerror}")
        return self.path

    def size(self):
        return os.path.getsize(self.path)

    def commit(self):
        """Sync the temporary file and give it IMAGE's name; without force,
        never replace an IMAGE that appeared meanwhile."""
        with open(self.path, "rb+") as f:
            os.fsync(f.fileno())
        if self.force:
            os.replace(self.path, self.image)
        else:
            try:
                os.link(self.path, self.image)
            except FileExistsError:
                raise PackError(f"{self.shown}: appeared while packing "
                                "(use --force to replace it)")
            except OSError:
                # a file system without hard links
                if os.path.lexists(self.image):
                    raise PackError(f"{self.shown}: exists")
                os.replace(self.path, self.image)
            else:
                os.unlink(self.path)
        self.path = None
        try:
            dfd = os.open(self.outdir, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(dfd)
            os.close(dfd)
        except OSError:
            pass

    def discard(self):
        """Remove the temporary file, if still there (safe to repeat)."""
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.path = None
