# SPDX-License-Identifier: BSD-2-Clause
"""The verdict of a test: check, skip, finish, main; waiting with a deadline;
running a command.

Every test is its own process (one meson test each). check() records an
expectation and the test goes on; finish() (or main()) exits 1 if any
failed, 0 otherwise. A test that this machine cannot run calls skip(),
which exits 77, or 1 when CI has set SQVENVFS_TEST_NO_SKIP=1 so that a
missing capability is never silently green.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

__all__ = [
    "FAILURES", "DEADLINE", "log", "skip", "require", "check", "check_error",
    "verdict", "finish",
    "main", "wait_for", "wait_until", "clean_env", "run"
]

FAILURES = []

# How long a test waits for something that must happen (a mount to appear,
# a daemon to exit). Generous: a shared, loaded 2-core machine can take
# seconds; waiting ends as soon as the thing happens, so a healthy run never
# waits this long, and running out of it fails with a message, never quietly.
DEADLINE = 60.0

if sys.flags.optimize:
    # Under -O (PYTHONOPTIMIZE) Python drops assert statements: refuse to
    # run rather than risk a test that checks less than it says.
    print("FAIL: the tests must not run with PYTHONOPTIMIZE / python -O",
          flush=True)
    sys.exit(1)


def log(msg):
    print(msg, flush=True)


def skip(reason):
    """This machine cannot run the test: exit 77 (1 under
    SQVENVFS_TEST_NO_SKIP=1). A SystemExit, so cleanups still run."""
    if os.environ.get("SQVENVFS_TEST_NO_SKIP") == "1":
        log(f"FAIL (SQVENVFS_TEST_NO_SKIP=1: a skip is a failure): {reason}")
        sys.exit(1)
    log(f"SKIP: {reason}")
    sys.exit(77)


def require(cond, reason):
    """skip(reason) unless cond."""
    if not cond:
        skip(reason)


def check(cond, what, detail=""):
    """Record an expectation: print ok/FAIL and what, and on a failure the
    detail (an output, the values). The test goes on; returns cond."""
    if cond:
        log(f"ok: {what}")
    else:
        log(f"FAIL: {what}")
        if detail != "":
            log(f"  {detail}")
        FAILURES.append(what)
    return cond


def check_error(label, r, want, prefix="sqvenvfs: ", status=None):
    """check() that the CompletedProcess r failed the way bad input must:
    exit status (any non-zero, or status), nothing on stdout, one line on
    stderr that starts with prefix, not twice and not followed by libfuse's
    ("sqvenvfs: fuse: "), and names every string in want (a string or a
    list). Returns whether it did."""
    wants = [want] if isinstance(want, str) else list(want)
    lines = (r.stderr or "").strip().splitlines()
    ok = ((r.returncode != 0 if status is None else r.returncode == status)
          and not r.stdout and len(lines) == 1 and
          lines[0].startswith(prefix) and
          not lines[0][len(prefix):].startswith((prefix, "fuse: ")) and
          all(w in lines[0] for w in wants))
    return check(ok, f"{label}: one line naming {wants}, "
                 f"exit {status or 'non-zero'}",
                 f"exit {r.returncode}, stdout {r.stdout!r}, stderr {lines}")


def verdict():
    """The exit status the checks made so far call for: 1 if one failed."""
    if FAILURES:
        log(f"{len(FAILURES)} check(s) failed: {FAILURES}")
        return 1
    log("all checks passed")
    return 0


def finish():
    """Exit with the verdict of the checks made."""
    sys.exit(verdict())


def main(test):
    """Run test(tmp, cleanups) in a private temporary directory (mode 755,
    so that other users can reach into it), then the functions appended to
    cleanups, last first, then finish(). An exception fails the test."""
    tmp = tempfile.mkdtemp(prefix="sqvtest-")
    os.chmod(tmp, 0o755)            # as tempdir()
    cleanups = []
    rc = None
    try:
        test(tmp, cleanups)
    except SystemExit as e:          # skip()
        rc = e.code
    except Exception:
        traceback.print_exc()
        FAILURES.append("an exception")
    finally:
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception:
                traceback.print_exc()
                FAILURES.append("a cleanup")
        shutil.rmtree(tmp, ignore_errors=True)
    if rc is not None and not FAILURES:
        sys.exit(rc)
    finish()


def wait_for(pred, timeout=DEADLINE, interval=0.02):
    """Poll pred() until it is true or timeout seconds (time.monotonic, so a
    clock change cannot cut or stretch it) have passed; returns the last
    value of pred()."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def wait_until(pred, what, timeout=DEADLINE):
    """wait_for(pred), raising RuntimeError naming what on the deadline."""
    v = wait_for(pred, timeout, 0.2)
    if not v:
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for "
                           f"{what}")
    return v


def clean_env(**extra):
    """The environment without PYTHON* settings (PYTHONDONTWRITEBYTECODE in
    particular would hide the bytecode writes tests look for), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(extra)
    return env


def run(cmd, check=True, **kw):
    """subprocess.run(cmd): text output captured, stdin from /dev/null, the
    environment clean_env() unless env is given. With check, a non-zero exit
    raises AssertionError showing the command's output."""
    if kw.get("env") is None:
        kw["env"] = clean_env()
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("stdin", subprocess.DEVNULL)
    r = subprocess.run(cmd, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} exited {r.returncode}\n"
                             f"stdout: {r.stdout}\nstderr: {r.stderr}")
    return r
