# SPDX-License-Identifier: BSD-2-Clause
"""Byte-compilation of the staging copy with the venv's own interpreter."""

import os
import re
import signal
import subprocess

from .errors import PackError
from .venvinfo import python_env


def kill_group(proc):
    """Kill proc and every process of its group (it leads one), and reap
    proc; the others are its children, which it no longer waits for."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "pycworker.py")


class Compiled:
    """What byte_compile() did: failed (count) and first (the first
    failing path, relative), and how many modules were reused (valid pycs
    kept), compiled, or left to the base images (from_base)."""

    def __init__(self):
        self.failed = self.reused = self.compiled = self.from_base = 0
        self.first = None


def byte_compile(out, python, root, ddir, levels, jobs, in_base=None):
    """Make every module under root have unchecked-hash pycs for levels,
    with the venv's own interpreter (pycworker.py): valid whatever the
    mtimes in the image, so nothing ever tries to rewrite them. Valid pycs
    already there are kept (header rewritten), the rest compiled, except
    for the sources in in_base (a file of root-relative paths, see
    pycworker.py), whose pycs the base images hold. Returns a Compiled."""
    cmd = [python, "-S", "-B", WORKER, root, ddir or "", str(jobs),
           ",".join(map(str, levels)), in_base or ""]
    out.progress("byte-compiling ...", force=True)
    # its own process group: the worker's pool processes are its
    # children, and killing it alone would orphan them
    proc = subprocess.Popen(cmd, env=python_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True,
                            # the __pycache__ directories it makes are
                            # for every reader of the image (pycs take
                            # their source's mode)
                            preexec_fn=lambda: os.umask(0o022))
    lines = []
    total = 0
    res = Compiled()
    try:
        for raw in proc.stdout:
            line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
            if line.startswith("R "):
                res.reused += 1
            elif line.startswith("C "):
                res.compiled += 1
            elif line.startswith("B "):
                res.from_base += 1
            elif line.startswith("N ") and line[2:].isdigit():
                total = int(line[2:])
            else:
                lines.append(line)
            done = res.reused + res.compiled + res.from_base
            out.progress(f"byte-compiling: {done} of {total} modules "
                         f"({res.compiled} compiled)", force=done == total)
        proc.wait()
    except BaseException:
        kill_group(proc)
        raise
    failed = [l for l in lines if l.startswith("***")]
    if proc.returncode != 0:
        raise PackError(f"{python}: byte-compiling: exit {proc.returncode}: "
                        + ("\n".join(lines).strip().splitlines()
                           or [""])[-1])
    res.failed = len(failed)
    if failed:
        m = re.match(r"\*\*\* Error compiling '(.*?)'", failed[0])
        first = m.group(1) if m else failed[0]
        if first.startswith(root + "/"):
            first = first[len(root) + 1:]
        res.first = first
    return res
