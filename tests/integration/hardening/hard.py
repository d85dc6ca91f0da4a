"""Helpers for the hardening tests: a daemon in the foreground whose stderr
and exit status the test sees, a walk that reads everything through a
mount and reports what failed, and the daemon's memory."""

import contextlib
import errno
import os
import signal
import stat
import subprocess
import tempfile

import sqvtest as t

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


class Foreground:
    """sqvenvfs -f IMAGES MNT, stderr to a file, so that its log lines and
    its exit status can be checked. Always stopped and unmounted on exit."""

    def __init__(self, images, mnt, opts=(), wrapper=(), env=None):
        self.mnt = mnt
        self.err = tempfile.TemporaryFile(mode="w+", errors="backslashreplace")
        self.proc = subprocess.Popen(
            [*wrapper, t.SQVENVFS, "-f", *opts, *images, mnt],
            stdout=subprocess.DEVNULL, stderr=self.err, env=env)
        self.returncode = None

    def mounted(self, timeout=t.DEADLINE):
        """True once the mount is up; False if the daemon exited first or
        timeout seconds passed."""
        t.wait_for(lambda: t.is_mounted(self.mnt) or
                   self.proc.poll() is not None, timeout)
        return t.is_mounted(self.mnt)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=t.DEADLINE):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.returncode = self.proc.wait()
        if t.is_mounted(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        return self.returncode

    def stderr(self):
        self.err.seek(0)
        return self.err.read()

    def rss_peak_kib(self):
        try:
            for line in open(f"/proc/{self.proc.pid}/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None


@contextlib.contextmanager
def foreground(images, mnt, opts=(), wrapper=(), env=None):
    fg = Foreground(images, mnt, opts, wrapper, env)
    try:
        yield fg
    finally:
        fg.stop()
        fg.err.close()


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


def drop_caches():
    subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"],
                   capture_output=True)
