# SPDX-License-Identifier: BSD-2-Clause
"""What the deployment tests (Slurm, the systemd user manager) share: the
verdict (check, skip), running commands, waiting with a deadline, mountinfo,
finding the daemon's processes, and installing the build as an
administrator would (meson install --destdir)."""
import os
import pwd
import stat
import subprocess
import sys
import time

FAILED = []


def log(msg):
    print(msg, flush=True)


def skip(why):
    """Exit 77; CI (SQVENVFS_TEST_NO_SKIP=1) makes that a failure."""
    if os.environ.get("SQVENVFS_TEST_NO_SKIP") == "1":
        log(f"FAIL (skip not allowed): {why}")
        sys.exit(1)
    log(f"SKIP: {why}")
    sys.exit(77)


def check(cond, what):
    """Record a failed expectation without stopping the test."""
    log(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        FAILED.append(what)
    return cond


def finish():
    if FAILED:
        log(f"{len(FAILED)} check(s) failed: {FAILED}")
        return 1
    return 0


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)


def wait_for(pred, what, timeout=120):
    """Poll until pred() is true; a hang (not slowness) fails the test."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def mountinfo(pid="self"):
    """(mount point, fstype, line) of each mount in pid's namespace."""
    out = []
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            a, b = line.split(" - ", 1)
            mp = a.split()[4].encode().decode("unicode_escape")
            out.append((mp, b.split()[0], line.strip()))
    return out


def daemons(exe, uid=None):
    """Processes (not zombies) running the daemon executable."""
    real = os.path.realpath(exe)
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.path.realpath(f"/proc/{d}/exe") != real:
                continue
            st = os.stat(f"/proc/{d}")
        except OSError:
            continue
        if uid is None or st.st_uid == uid:
            pids.append(int(d))
    return pids


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
