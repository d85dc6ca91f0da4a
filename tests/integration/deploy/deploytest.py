# SPDX-License-Identifier: BSD-2-Clause
"""What the deployment tests (Slurm, the systemd user manager) add to the
test library, sqvtest: installing the build as an administrator would
(meson install --destdir) and the unprivileged test user; and the
library's helpers in the forms these tests call them."""
import os
import pwd
import stat
import sys

import sqvtest as t
from sqvtest import FAILURES as FAILED
from sqvtest import check, log, skip
from sqvtest import verdict as finish   # main() returns it

__all__ = ["FAILED", "check", "log", "skip", "finish", "run", "wait_for",
           "mountinfo", "daemons", "meson_install", "installed", "test_user",
           "enter_private_mount_ns", "private_fuse"]


def run(cmd, **kw):
    """A command's CompletedProcess (output captured), in the test's own
    environment; its exit status is the caller's to check."""
    kw.setdefault("env", dict(os.environ))
    return t.run(cmd, check=False, **kw)


def wait_for(pred, what, timeout=120):
    """Poll until pred() is true; a hang (not slowness) fails the test."""
    return t.wait_until(pred, what, timeout)


def mountinfo(pid="self"):
    """(mount point, fstype, line) of each mount in pid's namespace."""
    return [(m.point, m.fstype, m.line) for m in t.mountinfo(pid)]


def daemons(exe, uid=None):
    """Processes (not zombies) running the daemon executable."""
    return t.daemon_pids(exe=exe, uid=uid)


def meson_install(build_root, root):
    """Install the build under root; {file name: [installed paths]}."""
    r = run(["meson", "install", "-C", build_root, "--no-rebuild", "--quiet",
             "--destdir", root])
    if r.returncode != 0:
        raise RuntimeError(f"meson install failed: {r.stdout} {r.stderr}")
    found = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files:
            found.setdefault(name, []).append(os.path.join(dirpath, name))
    return found


def installed(found, name, under):
    """The one installed file called name whose path contains under."""
    paths = [p for p in found.get(name, []) if under in p]
    if len(paths) != 1:
        raise RuntimeError(f"installed {name} under {under}: {paths}")
    return paths[0]


def test_user(name):
    """The unprivileged user a test runs jobs or units as, made if missing
    (no home: the tests give it one where they need it)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        r = run(["useradd", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/bin/sh", name])
        if r.returncode != 0:
            skip(f"cannot create the test user {name}: {r.stderr.strip()}")
        return pwd.getpwnam(name)


def enter_private_mount_ns():
    """Run the rest of this test in a private mount namespace (re-executing
    it under unshare): its mounts, and the /dev/fuse of private_fuse(),
    stay its own, and go with it."""
    if os.environ.get("SQV_TEST_PRIVATE_NS") == "1":
        return
    os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", sys.executable,
                           *sys.argv], dict(os.environ, SQV_TEST_PRIVATE_NS="1"))


def private_fuse(top):
    """The FUSE device, mode 0666, bind-mounted over /dev/fuse in this
    mount namespace: the test's user mounts through fusermount3, which
    opens it as that user. Other tests on the machine that widen and
    restore the real node's mode cannot pull it from under this one."""
    node = os.path.join(top, "fuse")
    os.mknod(node, stat.S_IFCHR | 0o666, os.stat("/dev/fuse").st_rdev)
    os.chmod(node, 0o666)
    r = run(["mount", "--bind", node, "/dev/fuse"])
    if r.returncode != 0:
        raise RuntimeError(f"bind-mounting {node} over /dev/fuse: {r.stderr.strip()}")
    return node
