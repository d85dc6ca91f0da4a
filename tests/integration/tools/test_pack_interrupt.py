# SPDX-License-Identifier: BSD-2-Clause
"""An interrupted sqvenvfs-pack cleans up everything (issue 16): SIGINT and
SIGTERM while it stages the copy, while the compile step's workers run and while
the real mksquashfs writes leave no process of the run, no staging
directory, no temporary image and no IMAGE, and exit 128+N."""

import glob
import os
import signal
import subprocess
import time

import sqvtest as T


def proc_read(pid, name, mode="rb"):
    """/proc/PID/NAME, or None for a process gone meanwhile."""
    try:
        with open(f"/proc/{pid}/{name}", mode) as f:
            return f.read()
    except OSError:
        return None


def pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def processes_under(path):
    """pids of live processes whose command line names path."""
    return [p for p in pids()
            if os.fsencode(path) in (proc_read(p, "cmdline") or b"")]


def children(pid):
    kids = []
    for p in pids():
        st = proc_read(p, "stat", "r")
        if st is None:
            continue
        # the fields after the command's closing parenthesis
        fields = st.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(p)
    return kids


def argv0_is(pid, name):
    args = (proc_read(pid, "cmdline") or b"").split(b"\0")
    # the compile step is the venv's python running pack's pycworker.py
    return os.path.basename(args[0]) == name.encode() or \
        any(os.path.basename(a) == b"pycworker.py" for a in args) and \
        name == "compiler"


def staged(stage):
    return bool(glob.glob(os.path.join(stage, "sqvenvfs-pack.*", "root")))


def compiling(stage):
    return any(argv0_is(p, "compiler") and children(p)
               for p in processes_under(stage))


def squashing(stage):
    return any(argv0_is(p, "mksquashfs") for p in processes_under(stage))


def interrupt(venv, stage, out, sig, reached, what, cleanups):
    img = os.path.join(out, "v.sqfs")
    p = subprocess.Popen([T.PACK, "-j", "2", "--tmpdir", stage, venv, img],
                         env=T.clean_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    cleanups.append(lambda: p.poll() is None and
                    os.killpg(p.pid, signal.SIGKILL))
    deadline = time.monotonic() + 180
    while not reached(stage):
        if p.poll() is not None:
            T.check(False, f"{what}: pack ended before the stage: "
                    f"{p.returncode} {p.communicate()}")
            return
        if time.monotonic() > deadline:
            T.check(False, f"{what}: stage never reached")
            return
        time.sleep(0.002)
    p.send_signal(sig)
    o, e = p.communicate(timeout=120)
    name = signal.Signals(sig).name
    T.check(p.returncode == 128 + sig, f"{what} {name}: exit {p.returncode}"
            f" {e!r}")
    T.check("interrupted" in e, f"{what} {name}: stderr {e!r}")
    T.check(not os.path.exists(img), f"{what} {name}: IMAGE left")
    T.check(os.listdir(out) == [], f"{what} {name}: left {os.listdir(out)}")
    T.check(os.listdir(stage) == [], f"{what} {name}: staging left: "
            f"{os.listdir(stage)}")
    # the processes of the run: gone at once, not after a timeout of theirs
    deadline = time.monotonic() + 10
    while processes_under(stage) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = processes_under(stage)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    T.check(not left, f"{what} {name}: processes left: {left}")
    print(f"ok: {what} {name}", flush=True)


def test(tmp, cleanups):
    T.require_pack_tools()
    T.require(os.path.isdir(os.path.join(T.DIST, "numpy")),
              "python3-numpy missing (a venv big enough to interrupt)")
    venv = T.make_venv(os.path.join(tmp, "venv"),
                       pkgs=("numpy", "pyflakes", "toml"))
    stage = os.path.join(tmp, "stage")
    out = os.path.join(tmp, "out")
    os.mkdir(stage)
    os.mkdir(out)
    for what, reached in (("staging", staged), ("compiling", compiling),
                          ("mksquashfs", squashing)):
        for sig in (signal.SIGINT, signal.SIGTERM):
            interrupt(venv, stage, out, sig, reached, what, cleanups)


if __name__ == "__main__":
    T.main(test)
