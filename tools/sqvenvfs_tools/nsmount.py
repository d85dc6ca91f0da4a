# SPDX-License-Identifier: BSD-2-Clause
"""Mounts inside sqvenvfs-edit's private namespaces: mount(2) and
umount2(2) through libc, reading this namespace's mount table, FUSE
daemons run in the foreground under our control, and finding the
processes a COMMAND left behind. Everything here is only ever called
inside the user+mount+PID namespace made for one edit: a mount made here
is invisible outside it and dies with it."""

import ctypes
import errno
import os
import signal
import subprocess
import time

from .errors import PackError

MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

_libc = ctypes.CDLL(None, use_errno=True)


def sys_mount(source, target, fstype, data):
    if _libc.mount(os.fsencode(source), os.fsencode(target),
                   os.fsencode(fstype), ctypes.c_ulong(0),
                   os.fsencode(data)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), target)


def sys_umount(target, flags=0):
    if _libc.umount2(os.fsencode(target), UMOUNT_NOFOLLOW | flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), target)


def _unescape(field):
    # mountinfo writes space, tab, newline and backslash as \ooo
    out = bytearray()
    b = os.fsencode(field)
    i = 0
    while i < len(b):
        if b[i:i + 1] == b"\\" and len(b) >= i + 4 and b[i + 1:i + 4].isdigit():
            out.append(int(b[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(b[i])
            i += 1
    return os.fsdecode(bytes(out))


def mounts_at(path):
    """The ids of the mounts on path in this mount namespace, bottom
    first (a namespace starts with a copy of its parent's mounts, so path
    may already carry some)."""
    ids = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" - ")[0].split()
            if _unescape(fields[4]) == path:
                ids.append(int(fields[0]))
    return ids


def unmount(path):
    """Unmount the topmost mount on path; detach it if it is busy."""
    try:
        sys_umount(path)
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
        sys_umount(path, MNT_DETACH)


class FuseDaemon:
    """A FUSE file system served by a program run in the foreground, in its
    own session (so a Ctrl-C meant for COMMAND does not take the mount away
    under it), its messages kept in a log file. names_thing: the program's
    own error line is "NAME: THING: REASON", so a failure is told as
    THING: REASON, under the tool's prefix alone; otherwise as NAME: line."""

    def __init__(self, name, cmd, target, log, names_thing=False):
        self.name = name
        self.names_thing = names_thing
        self.target = target
        self.log = log
        self.before = set(mounts_at(target))
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=f, stderr=f,
                                         start_new_session=True)

    def last_words(self):
        try:
            with open(self.log, "rb") as f:
                lines = [l.strip() for l in f.read().decode(
                    "utf-8", "replace").splitlines() if l.strip()]
        except OSError:
            lines = []
        return lines[-1] if lines else None

    def mounted(self):
        return any(m not in self.before for m in mounts_at(self.target))

    def wait_mounted(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.mounted():
                return
            if self.proc.poll() is not None:
                why = self.last_words()
                if why and why.startswith(self.name + ": "):
                    why = why[len(self.name) + 2:]
                    if self.names_thing:
                        raise PackError(why)
                raise PackError(f"{self.name}: " + (
                    why or f"exited with status {self.proc.returncode} "
                    "before mounting"))
            time.sleep(0.01)
        self.stop()
        raise PackError(f"{self.name}: not mounted after {timeout:.0f} s")

    def stop(self, timeout=10.0):
        """Unmount and wait for the program to end (it ends when its
        mount goes); kill it if it does not."""
        try:
            if self.mounted():
                unmount(self.target)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _ns_pid(host_pid):
    """A process's pid as seen from its own PID namespace (our procfs is
    the host's, which names processes by their host pid)."""
    with open(f"/proc/{host_pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None


def kill_strays(keep):
    """SIGKILL every process of this PID namespace but us and the pids in
    keep (as this namespace numbers them): what COMMAND left running must
    not write into the change while it is packed. Returns how many."""
    mine = os.readlink("/proc/self/ns/pid")
    keep = set(keep) | {os.getpid()}
    killed = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = 0
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{d}/ns/pid") != mine:
                    continue
                pid = _ns_pid(d)
            except OSError:
                continue    # gone, or not ours to look at
            if pid is None or pid in keep:
                continue
            found += 1
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
            # we are init here: orphans are our children, to reap
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if not found:
            break
        time.sleep(0.02)
    return killed
