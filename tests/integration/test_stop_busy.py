#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""SIGTERM or SIGINT while a process still uses the mount (its cwd there, a
file open): the mount leaves the mount point at once (detached lazily),
that process goes on reading correct data, and the daemon exits 0 once it
has left, its -o record= trace written. As root (umount2) and as an
ordinary user (fusermount3 -z). A second signal stops serving at once."""

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile

import sqvtest as t

USER = t.TEST_USER

# Holds MNT/pkg as its cwd and pkg/a.bin open; "ready" once it does; on a
# line from stdin reads b.bin through its cwd and a.bin through the open
# descriptor, prints both and exits.
HOLDER = r"""
import os, sys
os.chdir(sys.argv[1])
fd = os.open("a.bin", os.O_RDONLY)
print("ready", flush=True)
sys.stdin.readline()
with open("b.bin", "rb") as f:
    b = f.read()
a = b""
while chunk := os.read(fd, 1 << 16):
    a += chunk
sys.stdout.write(a.hex() + " " + b.hex() + "\n")
"""


def busy_stop(label, img, mnt, data, sig, user=None):
    slug = "".join(c for c in label if c.isalnum())
    trace = os.path.join(os.path.dirname(mnt), f"{slug}.trace")
    err = tempfile.TemporaryFile(mode="w+")
    daemon = subprocess.Popen(
        t.as_user([t.SQVENVFS, "-f", "-o", f"record={trace}", img,
                   mnt], user),
        stdout=subprocess.DEVNULL, stderr=err)
    holder = None
    try:
        t.check(t.wait_mounted(mnt), f"{label}: mounted")
        holder = subprocess.Popen(
            t.as_user([sys.executable, "-c", HOLDER,
                       os.path.join(mnt, "pkg")], user),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        t.check(holder.stdout.readline() == "ready\n",
                f"{label}: a process has its cwd and a file in the mount")
        daemon.send_signal(sig)
        t.check(t.wait_unmounted(mnt), f"{label}: {sig.name} takes the "
                "mount off the mount point")
        t.check(not os.path.exists(os.path.join(mnt, "pkg")),
                f"{label}: new lookups no longer reach it")
        t.check(daemon.poll() is None,
                f"{label}: the daemon still serves its user ({daemon.poll()})")
        out, _ = holder.communicate("go\n", timeout=t.DEADLINE)
        a, _, b = out.strip().partition(" ")
        t.check(holder.returncode == 0 and bytes.fromhex(a) == data["a.bin"]
                and bytes.fromhex(b) == data["b.bin"],
                f"{label}: it reads correct data after {sig.name} (through "
                f"its cwd and its open file; exit {holder.returncode})")
        try:
            rc = daemon.wait(timeout=t.DEADLINE)
        except subprocess.TimeoutExpired:
            rc = None
        t.check(rc == 0, f"{label}: the daemon exits 0 once its user has "
                f"left ({rc})")
        t.check(os.path.exists(trace), f"{label}: the read trace is written")
        err.seek(0)
        text = err.read()
        t.check(text == "", f"{label}: prints nothing ({text!r})")
    finally:
        if holder and holder.poll() is None:
            holder.kill()
            holder.wait()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        err.close()


def term_and_wait(daemon, err):
    """SIGTERM to a daemon run with -f; its exit status (None if it does
    not end) and what it wrote to err."""
    daemon.send_signal(signal.SIGTERM)
    try:
        rc = daemon.wait(timeout=t.DEADLINE)
    except subprocess.TimeoutExpired:
        rc = None
    err.seek(0)
    return rc, err.read()


def moved_stop(label, img, d, user=None, owner=None):
    """SIGTERM after the mount point's parent was renamed: the daemon finds
    its mount where it is now, unmounts it and exits 0 (it said "cannot
    detach", left the mount behind, dead, and exited 0)."""
    slug = "".join(c for c in label if c.isalnum())
    old, new = os.path.join(d, f"{slug}-a"), os.path.join(d, f"{slug}-b")
    os.makedirs(os.path.join(old, "venv"))
    if owner:
        for p in (old, os.path.join(old, "venv")):
            os.chown(p, *owner)
    err = tempfile.TemporaryFile(mode="w+")
    daemon = subprocess.Popen(
        t.as_user([t.SQVENVFS, "-f", img, os.path.join(old, "venv")], user),
        stdout=subprocess.DEVNULL, stderr=err)
    try:
        t.check(t.wait_mounted(os.path.join(old, "venv")), f"{label}: mounted")
        os.rename(old, new)
        mnt = os.path.join(new, "venv")
        t.check(t.is_mounted(mnt), f"{label}: the mount moved with its parent")
        rc, text = term_and_wait(daemon, err)
        t.check(rc == 0 and not t.is_mounted(mnt) and text == "",
                f"{label}: SIGTERM unmounts it where it is now, exit 0, "
                f"nothing said (exit {rc}, mounted {t.is_mounted(mnt)}, "
                f"{text!r})")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        if t.is_mounted(os.path.join(new, "venv")):
            subprocess.run([t.SQVENVFS, "--unmount", os.path.join(new, "venv")],
                           capture_output=True)
        err.close()


def covered_stop(img, d):
    """As root: the mount covered by another one (a tmpfs) when SIGTERM
    comes cannot be taken off by its path: the daemon says so, naming
    where it is left, and exits 1, not 0."""
    mnt = os.path.join(d, "covered")
    os.mkdir(mnt)
    err = tempfile.TemporaryFile(mode="w+")
    daemon = subprocess.Popen([t.SQVENVFS, "-f", img, mnt],
                              stdout=subprocess.DEVNULL, stderr=err)
    tmpfs = False
    try:
        t.check(t.wait_mounted(mnt), "covered: mounted")
        tmpfs = subprocess.run(["mount", "-t", "tmpfs", "none", mnt]).returncode == 0
        t.check(tmpfs, "covered: a tmpfs mounted over it")
        rc, text = term_and_wait(daemon, err)
        t.check(rc == 1 and f"{mnt}: still mounted, dead" in text,
                f"covered: the daemon exits 1 and names the mount it leaves "
                f"(exit {rc}, {text!r})")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        if tmpfs:
            subprocess.run(["umount", mnt])
        subprocess.run([t.SQVENVFS, "--unmount", "--if-mounted", mnt],
                       capture_output=True)
        t.check(not t.is_mounted(mnt), "covered: cleared afterwards")
        err.close()


def main():
    t.require_mount_capability()
    with t.tempdir() as d:
        src = os.path.join(d, "src")
        os.makedirs(os.path.join(src, "pkg"))
        data = {"a.bin": os.urandom(300 << 10), "b.bin": os.urandom(70 << 10)}
        for n, v in data.items():
            with open(os.path.join(src, "pkg", n), "wb") as f:
                f.write(v)
        img = t.mksquashfs(src, os.path.join(d, "img.sqfs"))
        os.chmod(img, 0o644)
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)

        busy_stop("root, SIGTERM", img, mnt, data, signal.SIGTERM)
        busy_stop("root, SIGINT", img, mnt, data, signal.SIGINT)
        moved_stop("root, parent renamed", img, d)
        if os.geteuid() == 0:
            covered_stop(img, d)

        # A second signal: stop serving at once, as before.
        with t.foreground([img], mnt) as fg:
            t.check(fg.mounted(), "twice: mounted")
            holder = subprocess.Popen(["sleep", "600"],
                                      cwd=os.path.join(mnt, "pkg"))
            try:
                fg.proc.send_signal(signal.SIGINT)
                t.check(t.wait_unmounted(mnt), "twice: detached")
                fg.proc.send_signal(signal.SIGINT)
                try:
                    rc = fg.proc.wait(timeout=t.DEADLINE)
                except subprocess.TimeoutExpired:
                    rc = None
                t.check(rc is not None, f"twice: a second SIGINT ends the "
                        f"daemon though the mount is busy ({rc})")
            finally:
                holder.kill()
                holder.wait()

        if os.geteuid() != 0 or not shutil.which("fusermount3"):
            t.log("not root or no fusermount3: the ordinary user's case is "
                  "not tried")
        elif (uid := t.ensure_test_user()) is None:
            t.log("no useradd: the ordinary user's case is not tried")
        else:
            old_mode = os.stat("/dev/fuse").st_mode & 0o777
            try:
                os.chmod("/dev/fuse", 0o666)
                os.chown(mnt, uid, pwd.getpwnam(USER).pw_gid)
                os.chmod(d, 0o777)  # the user's trace goes here
                busy_stop("user, SIGTERM", img, mnt, data, signal.SIGTERM,
                          user=USER)
                moved_stop("user, parent renamed", img, d, user=USER,
                           owner=(uid, pwd.getpwnam(USER).pw_gid))
            finally:
                os.chmod("/dev/fuse", old_mode)
                os.chmod(d, 0o755)
    t.finish()


if __name__ == "__main__":
    main()
