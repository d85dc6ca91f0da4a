# SPDX-License-Identifier: BSD-2-Clause
"""Mounts: what /proc/self/mountinfo says, sqvenvfs mounted in the
background or in the foreground, its daemons, its --stats."""

import collections
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile

from .harness import DEADLINE, check, check_error, skip, wait_for

__all__ = [
    "SQVENVFS", "MountEntry", "mountinfo", "mounts_at", "mounts_under",
    "is_mounted", "wait_mounted", "wait_unmounted",
    "require_mount_capability", "tempdir", "cli", "as_user", "mount",
    "unmount", "mounted", "pids_naming", "daemon_pids", "wait_daemons_gone",
    "pid_gone", "kill_daemon_of", "stats", "peak_rss_kib", "Foreground",
    "foreground", "mount_type", "refuse", "TEST_USER", "ensure_test_user"
]

SQVENVFS = os.environ.get("SQVENVFS", "sqvenvfs")

# options: the per-mount ones (ro, nosuid, ...), super_options: the file
# system's (max_read=, allow_other, ...), both sets; line: as the kernel
# wrote it.
MountEntry = collections.namedtuple(
    "MountEntry", "point fstype source options super_options line")


def _unescape(field):
    # The kernel writes space, tab, newline and backslash in mountinfo as
    # \ooo octal; every other byte is as it is (UTF-8 names included).
    return os.fsdecode(re.sub(rb"\\([0-7]{3})",
                              lambda m: bytes([int(m.group(1), 8)]),
                              os.fsencode(field)))


def mountinfo(pid="self"):
    """Every mount of pid's mount namespace (this one's by default), in
    mount order."""
    out = []
    with open(f"/proc/{pid}/mountinfo", "rb") as f:
        for raw in f:
            line = os.fsdecode(raw.rstrip(b"\n"))
            before, _, after = line.partition(" - ")
            fields, rest = before.split(" "), after.split(" ")
            out.append(MountEntry(_unescape(fields[4]), rest[0],
                                  _unescape(rest[1]),
                                  set(fields[5].split(",")),
                                  set(rest[2].split(",")), line))
    return out


def _real(path):
    # realpath() of the parent only: resolving the last component would
    # stat the mount point itself, a request to the daemon whose answer the
    # kernel caches (and serves even after the daemon is gone).
    path = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(path)),
                        os.path.basename(path))


def mounts_at(path):
    """The mounts stacked on path (a stale one included)."""
    return [m for m in mountinfo() if m.point == path]


def mounts_under(path):
    """The mount points at or below path, in mount order."""
    return [m.point for m in mountinfo()
            if m.point == path or m.point.startswith(path.rstrip("/") + "/")]


def is_mounted(path):
    return bool(mounts_at(_real(path)))


def wait_mounted(mnt, timeout=DEADLINE):
    """True once mnt shows up as a mount point (a daemon started with -f)."""
    return wait_for(lambda: is_mounted(mnt), timeout)


def wait_unmounted(mnt, timeout=DEADLINE):
    """True once mnt is no longer a mount point."""
    return wait_for(lambda: not is_mounted(mnt), timeout)


def require_mount_capability():
    """skip() unless this machine can mount with FUSE and make images."""
    if not os.path.exists("/dev/fuse"):
        skip("no /dev/fuse on this machine")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        skip("/dev/fuse is not accessible to this user")
    if os.geteuid() != 0 and not shutil.which("fusermount3"):
        skip("not root and no fusermount3")
    if not shutil.which("mksquashfs"):
        skip("mksquashfs (squashfs-tools) is not installed")


@contextlib.contextmanager
def tempdir(prefix="sqvtest-"):
    """A temporary directory, mode 755 so that the daemons of other users
    reach into it; removed at the end with every mount below it (even when
    the test failed midway)."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        for mnt in reversed(mounts_under(d)):
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def refuse(label, args, want_in_msg, user=None, mnt=None, pre=None):
    """sqvenvfs ARGS (as user, after the command prefix pre) must fail:
    check_error(), and no mount at mnt, no daemon left naming ARGS[-1]."""
    before = daemon_pids(args[-1])
    cmd = as_user([SQVENVFS, *args], user, "--clear-groups")
    check_error(label, subprocess.run([*(pre or ()), *cmd],
                                      capture_output=True, text=True),
                want_in_msg)
    if mnt:
        check(not is_mounted(mnt), f"{label}: nothing mounted")
    check(set(daemon_pids(args[-1])) <= set(before),
          f"{label}: no daemon left")


def cli(args, **kw):
    """The sqvenvfs command line with args; returns the CompletedProcess."""
    return subprocess.run([SQVENVFS, *args], capture_output=True, text=True,
                          **kw)


def as_user(cmd, user, groups="--init-groups"):
    """cmd run as user (a name or uid) with that user's groups."""
    if user is None:
        return cmd
    return ["setpriv", f"--reuid={user}", f"--regid={user}", groups, *cmd]


# The ordinary user the tests mount as (created for them, left in place).
TEST_USER = "sqvenvfs-test"


def ensure_test_user():
    """The uid of TEST_USER, created if missing (needs root); None when
    there is no useradd to create it."""
    try:
        return pwd.getpwnam(TEST_USER).pw_uid
    except KeyError:
        pass
    if not shutil.which("useradd"):
        return None
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                    "/usr/sbin/nologin", TEST_USER], check=True)
    return pwd.getpwnam(TEST_USER).pw_uid


def mount(images, mnt, opts=(), user=None, cleanups=None):
    """sqvenvfs OPTS IMAGES MNT (in the background); raises if it fails.
    With cleanups (main()'s list), the unmount is added to it."""
    cmd = as_user([SQVENVFS, *opts, *images, mnt], user)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"sqvenvfs {' '.join(images)} {mnt}: exit "
                           f"{r.returncode}: {r.stderr.strip()}")
    if cleanups is not None:
        cleanups.append(lambda: is_mounted(mnt) and unmount(mnt, user))
    return r


def unmount(mnt, user=None):
    """sqvenvfs --unmount mnt, then wait until the mount is gone; raises if
    either fails."""
    r = subprocess.run(as_user([SQVENVFS, "--unmount", mnt], user),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"sqvenvfs --unmount {mnt}: {r.stderr.strip()}")
    # The daemon exits once the kernel has let go of the mount.
    if not wait_unmounted(mnt):
        raise RuntimeError(f"{mnt} still mounted {DEADLINE:.0f} s after "
                           "--unmount succeeded")


@contextlib.contextmanager
def mounted(images, mnt, opts=(), user=None):
    """mount() for the with block; then unmount, and check the daemon
    exits."""
    mount(images, mnt, opts, user)
    try:
        yield mnt
    finally:
        if is_mounted(mnt):
            unmount(mnt, user)
        check(wait_daemons_gone(mnt), f"the daemon of {mnt} exits after "
              "its unmount")


def pids_naming(path):
    """Pids of the processes (not this one) whose command line names path."""
    want = {os.fsencode(path), os.fsencode(_real(path))}
    pids = set()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if want & set(argv):
            pids.add(int(d))
    return pids


def daemon_pids(path=None, exe=None, uid=None):
    """Sorted pids of live sqvenvfs daemons (processes running exe, SQVENVFS
    by default; zombies have no exe); with path, only those whose command
    line names it (other tests' daemons are not ours); with uid, only that
    user's."""
    real = os.path.realpath(shutil.which(exe or SQVENVFS) or exe or SQVENVFS)
    pids = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.path.realpath(f"/proc/{d}/exe") != real:
                continue
            owner = os.stat(f"/proc/{d}").st_uid
        except OSError:
            continue
        if uid is None or owner == uid:
            pids.add(int(d))
    if path is not None:
        pids &= pids_naming(path)
    return sorted(pids)


def wait_daemons_gone(path, timeout=DEADLINE):
    """True once no sqvenvfs daemon names path on its command line."""
    return wait_for(lambda: not daemon_pids(path), timeout)


def pid_gone(pid):
    """True once every thread of pid has exited, so its file descriptors are
    closed (also while it waits, a zombie, to be reaped)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            st = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return True
    return st["State"].split()[0] == "Z" and int(st["Threads"]) <= 1


def kill_daemon_of(mnt, sig=signal.SIGKILL):
    """Send sig to the daemon serving mnt; its pid, or None."""
    for pid in daemon_pids(mnt):
        os.kill(pid, sig)
        return pid
    return None


def stats(mnt):
    """sqvenvfs --stats mnt as {counter: value}."""
    r = cli(["--stats", mnt])
    if r.returncode != 0:
        raise RuntimeError(f"--stats failed: {r.stderr.strip()}")
    out = {}
    for line in r.stdout.splitlines():
        k, v = line.split()
        out[k] = int(v)
    return out


def peak_rss_kib(pid):
    """The peak resident set (VmHWM) of pid in KiB, None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Foreground:
    """sqvenvfs -f IMAGES MNT, stderr to a file, so that its log lines and
    its exit status can be checked. Always stopped and unmounted on exit."""

    def __init__(self, images, mnt, opts=(), wrapper=(), env=None):
        self.mnt = mnt
        self.err = tempfile.TemporaryFile(mode="w+", errors="backslashreplace")
        self.proc = subprocess.Popen(
            [*wrapper, SQVENVFS, "-f", *opts, *images, mnt],
            stdout=subprocess.DEVNULL, stderr=self.err, env=env)
        self.returncode = None

    def mounted(self, timeout=DEADLINE):
        """True once the mount is up; False if the daemon exited first or
        timeout seconds passed."""
        wait_for(lambda: is_mounted(self.mnt) or self.proc.poll() is not None,
                 timeout)
        return is_mounted(self.mnt)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=DEADLINE):
        """SIGTERM, then its exit status (SIGKILL after timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.returncode = self.proc.wait()
        if is_mounted(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        return self.returncode

    def stderr(self):
        self.err.seek(0)
        return self.err.read()

    def rss_peak_kib(self):
        return peak_rss_kib(self.proc.pid)


@contextlib.contextmanager
def foreground(images, mnt, opts=(), wrapper=(), env=None):
    """A Foreground for the with block, stopped at its end."""
    fg = Foreground(images, mnt, opts, wrapper, env)
    try:
        yield fg
    finally:
        fg.stop()
        fg.err.close()


def mount_type(path):
    """The file system type of the topmost mount at path ("fuse.sqvenvfs"),
    None when nothing is mounted there."""
    m = mounts_at(path)
    return m[-1].fstype if m else None
