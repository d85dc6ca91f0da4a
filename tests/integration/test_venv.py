#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""A real venv (Debian's python3-venv plus python3-numpy copied into its
site-packages), packed, mounted at another path than where it was made:
imports work through the mount, and a second identical import sends the
daemon no request but CPython's isatty ioctls."""

import os
import shutil
import subprocess
import sys

import sqvtest as t

PY = t.SYS_PYTHON
WORKLOAD = "import numpy, json, email.mime.text; print(numpy.__file__)"
# Requests that a warm, fully cached import must not send.
# The interpreter under test runs with none of the test's PYTHON* settings
# (PYTHONDONTWRITEBYTECODE would hide a stale-pyc rewrite attempt).
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
CACHEABLE = ["lookup", "getattr", "open", "opendir", "read", "readdir",
             "readdirplus", "readlink", "getxattr", "listxattr", "statfs"]


def make_venv(path):
    subprocess.run([PY, "-m", "venv", "--without-pip", path], check=True)
    site = subprocess.run(
        [os.path.join(path, "bin", "python"), "-c",
         "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    shutil.copytree("/usr/lib/python3/dist-packages/numpy",
                    os.path.join(site, "numpy"), symlinks=True)
    # Byte-compile so that the read-only tree never needs a __pycache__
    # write: unchecked-hash pycs stay valid whatever the mtimes.
    subprocess.run([os.path.join(path, "bin", "python"), "-m", "compileall",
                    "-q", "--invalidation-mode", "unchecked-hash", site],
                   check=True)
    return site


def main():
    t.require_mount_capability()
    t.require_python_venv()
    if not os.path.isdir("/usr/lib/python3/dist-packages/numpy"):
        t.skip("python3-numpy is not installed")
    with t.tempdir() as d:
        built = os.path.join(d, "made-here", "venv")
        make_venv(built)
        img = t.mksquashfs(built, os.path.join(d, "venv.sqfs"))
        mnt = os.path.join(d, "mounted-elsewhere", "venv")
        os.makedirs(mnt)
        # Mount over a non-empty directory, as over an existing ~/.venv.
        open(os.path.join(mnt, "placeholder"), "w").close()
        shutil.rmtree(built)  # the original path is gone: no cheating
        with t.mounted([img], mnt):
            t.check(not os.path.exists(os.path.join(mnt, "placeholder")),
                    "the mount covers the non-empty directory")
            py = os.path.join(mnt, "bin", "python")
            r = subprocess.run([py, "-c", WORKLOAD], capture_output=True,
                               text=True, env=CLEAN_ENV)
            t.check(r.returncode == 0, f"import numpy works through the mount "
                    f"({r.stderr.strip()[-300:]})")
            t.check(r.stdout.strip().startswith(mnt),
                    f"numpy comes from the mount ({r.stdout.strip()})")

            def warm_import():
                # Warm (again, if a retry follows a cache drop), then count
                # the requests of one more identical import.
                subprocess.run([py, "-c", WORKLOAD], capture_output=True,
                               env=CLEAN_ENV)
                before = t.stats(mnt)
                r = subprocess.run([py, "-c", WORKLOAD], capture_output=True,
                                   text=True, env=CLEAN_ENV)
                return r, before, t.stats(mnt)
            r, before, after = t.undisturbed(warm_import, "a warm import")
            t.check(r.returncode == 0, "the second import works")
            delta = {k: after[k] - before[k] for k in after}
            sent = {k: delta[k] for k in CACHEABLE if delta[k]}
            print(f"second import: {delta['requests']} requests, "
                  f"{delta['ioctl']} of them ioctl; others: {sent}")
            t.check(not sent, "a second identical import sends no lookup, "
                    "getattr, open, opendir, readdir, read or readlink")
            t.check(delta["requests"] == delta["ioctl"] + delta["forget"],
                    "all it sends are ioctls (isatty) and forgets")
            t.check(delta["backing_reads"] == 0,
                    "the second import reads nothing from the image")
            # Several interpreters at once, as the ranks of a job.
            procs = [subprocess.Popen([py, "-c", WORKLOAD], env=CLEAN_ENV,
                                      stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
                     for _ in range(6)]
            rcs = [p.wait() for p in procs]
            for p in procs:
                p.stdout.close()
                p.stderr.close()
            t.check(rcs == [0] * 6, "six concurrent imports all work")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
