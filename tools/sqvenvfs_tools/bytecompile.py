# SPDX-License-Identifier: BSD-2-Clause
"""Byte-compilation of the staging copy with the venv's own interpreter."""

import re
import subprocess

from .errors import PackError
from .venvinfo import python_env


def byte_compile(out, python, root, ddir, levels, jobs):
    """Compile every module under root with the venv's own interpreter into
    unchecked-hash pycs: valid whatever the mtimes in the image, so nothing
    ever tries to rewrite them. Returns (count of failures, first failure)."""
    cmd = [python, "-S", "-B", "-m", "compileall", "-f",
           "-j", str(jobs), "--invalidation-mode", "unchecked-hash",
           "-s", root]
    if ddir:
        cmd += ["-p", ddir]
    for lv in levels:
        cmd += ["-o", str(lv)]
    if len(levels) > 1:
        cmd.append("--hardlink-dupes")
    cmd.append(root)
    out.progress("byte-compiling ...", force=True)
    proc = subprocess.Popen(cmd, env=python_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    done = 0
    try:
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("Compiling "):
                done += 1
                out.progress(f"byte-compiling: {done} modules")
            elif not line.startswith("Listing "):
                lines.append(line)
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    text = "\n".join(lines)
    failed = [l for l in lines if l.startswith("***")]
    if proc.returncode != 0 and not failed:
        raise PackError(f"{python} -m compileall: exit {proc.returncode}: "
                        + (text.strip().splitlines() or [""])[-1])
    first = None
    if failed:
        m = re.match(r"\*\*\*\s+(?:File \"(.*)\", line|Error compiling '(.*)')",
                     failed[0])
        first = (m.group(1) or m.group(2)) if m else failed[0]
        if first.startswith(root + "/"):
            first = first[len(root) + 1:]
    return len(failed), first
