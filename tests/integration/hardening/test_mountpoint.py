#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""One mount per mount point, bad image paths and `ls -l` storms (issue 12,
points 3, 5 and 7).

- Six concurrent identical mounts on one point: exactly one succeeds, the
  others exit 1 with one line "already mounted"; one mount, one daemon.
- A mount point given through a symlink is the same mount point: a second
  mount through the target is refused, --unmount through the link works.
- --stats on a stopped daemon gives up with one line instead of hanging.
- A FIFO and a socket given as the image are refused at once, "not a
  regular file"; a block device holding an image is served; a relative
  image path shows as an absolute one in mountinfo.
- `ls -l` over a stack without extended attributes costs at most one
  getxattr and one listxattr request (the daemon answers ENOSYS and the
  kernel stops asking); a stack with xattrs still serves them, and --stats
  works either way."""

import os
import socket
import subprocess
import sys
import time

import sqvtest as t


def one_line(r, want):
    lines = r.stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("sqvenvfs: ") and \
        want in lines[0]


def mount_source(mnt):
    m = t.mounts_at(os.path.realpath(mnt))
    return m[-1].source if m else None


def mount_count(mnt):
    return len(t.mounts_at(os.path.realpath(mnt)))


def concurrent(d, img):
    mnt = os.path.join(d, "mnt-race")
    os.mkdir(mnt)
    procs = [subprocess.Popen([t.SQVENVFS, img, mnt], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    ok = [r for r in results if r[0] == 0]
    refused = [r for r in results if r[0] == 1 and
               len(r[1].strip().splitlines()) == 1 and
               "already mounted" in r[1]]
    t.check(len(ok) == 1 and len(refused) == 5,
            f"six concurrent mounts: one succeeds, five say 'already mounted' "
            f"in one line ({[(rc, e.strip()) for rc, e in results]})")
    t.check(mount_count(mnt) == 1, f"one mount on the point ({mount_count(mnt)})")
    time.sleep(0.2)
    t.check(len(t.daemon_pids(mnt)) == 1,
            f"one daemon ({len(t.daemon_pids(mnt))})")
    t.unmount(mnt)
    t.check(t.wait_daemons_gone(mnt) and mount_count(mnt) == 0,
            "after --unmount: no mount, no daemon")


def symlink(d, img):
    target = os.path.join(d, "mnt-target")
    os.mkdir(target)
    link = os.path.join(d, "mnt-link")
    os.symlink("mnt-target", link)
    r = t.cli([img, link])
    t.check(r.returncode == 0, f"mount through a symlink ({r.stderr.strip()})")
    t.check(mount_count(target) == 1, "the mount is on the link's target")
    r = t.cli([img, target])
    t.check(r.returncode == 1 and one_line(r, "already mounted"),
            f"mounting the target again: refused ({r.stderr.strip()})")
    r = t.cli([img, link])
    t.check(r.returncode == 1 and one_line(r, "already mounted"),
            f"mounting through the link again: refused ({r.stderr.strip()})")
    t.check(mount_count(target) == 1, f"still one mount ({mount_count(target)})")
    r = t.cli(["--stats", link])
    t.check(r.returncode == 0 and "requests" in r.stdout,
            f"--stats through the link ({r.stderr.strip()})")
    r = t.cli(["--unmount", link])
    t.check(r.returncode == 0, f"--unmount through the link ({r.stderr.strip()})")
    t.check(t.wait_daemons_gone(target) and mount_count(target) == 0,
            "unmounted through the link")


def all_stopped(pids):
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in "Tt":
                    return False
    return True


def stats_timeout(d, img):
    mnt = os.path.join(d, "mnt-stop")
    os.mkdir(mnt)
    t.mount([img], mnt)
    pids = t.daemon_pids(mnt)
    for pid in pids:
        os.kill(pid, 19)  # SIGSTOP
    # kill() returns before every thread has stopped; a thread still
    # running could take --stats's request and stop before answering, and
    # a request taken is one the kernel waits out uninterruptibly.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all_stopped(pids):
        time.sleep(0.02)
    try:
        start = time.monotonic()
        r = subprocess.run([t.SQVENVFS, "--stats", mnt], capture_output=True,
                           text=True, timeout=60)
        took = time.monotonic() - start
        t.check(r.returncode == 1 and one_line(r, "did not answer"),
                f"--stats on a stopped daemon: one line, exit 1 after "
                f"{took:.1f} s ({r.returncode}, {r.stderr.strip()})")
    except subprocess.TimeoutExpired:
        t.check(False, "--stats on a stopped daemon: still waiting after 60 s")
    finally:
        for pid in pids:
            os.kill(pid, 18)  # SIGCONT
    r = t.cli(["--stats", mnt])
    t.check(r.returncode == 0, f"--stats once it runs again ({r.stderr.strip()})")
    t.unmount(mnt)
    t.wait_daemons_gone(mnt)


def bad_paths(d, img):
    mnt = os.path.join(d, "mnt-bad")
    os.mkdir(mnt)
    def refused_at_once(label, path):
        try:
            r = subprocess.run([t.SQVENVFS, path, mnt], capture_output=True,
                               text=True, timeout=20)
            t.check(r.returncode == 1 and one_line(r, "not a regular file"),
                    f"{label}: refused at once ({r.returncode}, {r.stderr.strip()})")
        except subprocess.TimeoutExpired:
            t.check(False, f"{label}: still waiting after 20 s")

    fifo = os.path.join(d, "fifo.sqfs")
    os.mkfifo(fifo)
    refused_at_once("a FIFO", fifo)
    sock_path = os.path.join(d, "sock.sqfs")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock_path)
    try:
        refused_at_once("a socket", sock_path)
    finally:
        s.close()
    t.check(mount_count(mnt) == 0, "FIFO, socket: nothing mounted")

    # A block device holding the image: served, its size from the device.
    r = subprocess.run(["losetup", "--find", "--show", "--read-only", img],
                       capture_output=True, text=True)
    if r.returncode != 0:
        t.skip(f"no loop device: {r.stderr.strip()}")
    dev = r.stdout.strip()
    try:
        r = t.cli([dev, mnt])
        t.check(r.returncode == 0, f"a block device ({dev}): served ({r.stderr.strip()})")
        if r.returncode == 0:
            t.check(open(os.path.join(mnt, "file7")).read() == "content 7\n",
                    "a block device: reads right")
            t.check(mount_source(mnt) == dev, f"source {dev} ({mount_source(mnt)})")
            t.unmount(mnt)
            t.wait_daemons_gone(mnt)
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)

    # A relative image path: absolute in mountinfo.
    r = subprocess.run([t.SQVENVFS, os.path.basename(img), "mnt-bad"],
                       capture_output=True, text=True, cwd=d)
    t.check(r.returncode == 0, f"relative paths: mounted ({r.stderr.strip()})")
    t.check(mount_source(mnt) == os.path.realpath(img),
            f"the source is absolute ({mount_source(mnt)})")
    if r.returncode == 0:
        t.unmount(mnt)
        t.wait_daemons_gone(mnt)


def xattr_storm(d, img):
    mnt = os.path.join(d, "mnt-ls")
    os.mkdir(mnt)
    with t.mounted([img], mnt):
        subprocess.run(["ls", "-lR", mnt], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["ls", "-l", os.path.join(mnt, "many")], check=True,
                       stdout=subprocess.DEVNULL)
        st = t.stats(mnt)
        t.check(st["getxattr"] <= 1 and st["listxattr"] <= 1,
                f"ls -l of 2000 entries, no xattrs in the stack: at most one "
                f"getxattr and one listxattr request ({st['getxattr']}, "
                f"{st['listxattr']})")
        try:
            os.getxattr(os.path.join(mnt, "file1"), "user.x")
            got = "a value"
        except OSError as e:
            got = os.strerror(e.errno)
        t.check(got == os.strerror(95), f"getxattr: not supported ({got})")

    # With xattrs in a layer, they are served (and ls -l asks, as it must).
    src = os.path.join(d, "src-x")
    os.mkdir(src)
    p = os.path.join(src, "with-xattr")
    open(p, "w").write("x")
    os.setxattr(p, "user.color", b"blue")
    ximg = t.mksquashfs(src, os.path.join(d, "x.sqfs"))
    with t.mounted([img, ximg], mnt):
        t.check(os.getxattr(os.path.join(mnt, "with-xattr"), "user.color") == b"blue",
                "a stack with xattrs: served")
        t.check(os.listxattr(os.path.join(mnt, "with-xattr")) == ["user.color"],
                "a stack with xattrs: listed")
        t.check(t.stats(mnt)["getxattr"] >= 1, "--stats with xattrs served")


def main():
    t.require_mount_capability()
    if os.geteuid() != 0:
        t.skip("loop devices and symlinked mount points are tested as root")
    with t.tempdir() as d:
        os.chmod(d, 0o755)
        src = os.path.join(d, "src")
        os.makedirs(os.path.join(src, "many"))
        for i in range(50):
            with open(os.path.join(src, f"file{i}"), "w") as f:
                f.write(f"content {i}\n")
        for i in range(2000):
            open(os.path.join(src, "many", f"e{i}"), "w").close()
        # Many entries: the index build takes long enough for the six
        # mounts below to overlap.
        img = t.mksquashfs(src, os.path.join(d, "img.sqfs"))
        concurrent(d, img)
        symlink(d, img)
        stats_timeout(d, img)
        bad_paths(d, img)
        xattr_storm(d, img)
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
