#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""The systemd user unit sqvenvfs@.service.

systemd-analyze --user verify must accept the unit (as a template and as an
instance) without a single warning, and the unit must keep the promises the
guide makes: Type=notify, a stale mount cleared before the start, the daemon
in the foreground, restart on failure, the config file named by the instance.
The copy under test points at the build tree's daemon so that verify can
check the executable; the installed copy must differ only in that path.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

from sqvtest import FAILURES as FAILED
from sqvtest import check, skip


def directives(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        k, _, v = line.partition("=")
        out.setdefault(k.strip(), []).append(v.strip())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unit", required=True)
    ap.add_argument("--installed-unit", required=True)
    ap.add_argument("--daemon", default="")
    a = ap.parse_args()
    if not a.daemon:
        skip("the sqvenvfs daemon is not part of this build")
    sa = shutil.which("systemd-analyze")
    if not sa:
        skip("systemd-analyze is not installed (Debian package systemd)")

    text = open(a.unit).read()
    d = directives(text)
    daemon = os.path.realpath(a.daemon)
    check(d.get("Type") == ["notify"], "Type=notify")
    check(d.get("NotifyAccess") == ["main"], "NotifyAccess=main")
    check(d.get("Restart") == ["on-failure"], "Restart=on-failure")
    check(d.get("EnvironmentFile") == ["%h/.config/sqvenvfs/%i.conf"],
          "the instance names ~/.config/sqvenvfs/NAME.conf")
    pre = d.get("ExecStartPre", [])
    check(any(re.fullmatch(r"\S*/sqvenvfs --unmount --if-mounted \$\{MOUNTPOINT\}", p)
              for p in pre),
          "ExecStartPre clears a stale mount; --if-mounted: nothing mounted is no failure")
    check(d.get("StartLimitIntervalSec") == ["30"] and d.get("StartLimitBurst") == ["3"],
          "a permanent error ends in 'failed': 3 starts in 30 s at most")
    start = d.get("ExecStart", [""])[0].split()
    check(len(start) > 1 and os.path.realpath(start[0]) == daemon and start[1] == "-f"
          and start[-1] == "${MOUNTPOINT}" and "$IMAGES" in start,
          f"ExecStart runs the daemon in the foreground: {start}")
    check("WantedBy=default.target" in text, "enable starts it at login (default.target)")

    inst = open(a.installed_unit).read()
    check(inst.replace(os.path.dirname(start[0]) if start else "", "@X@") ==
          inst and len(inst.splitlines()) == len(text.splitlines()) and
          re.sub(r"\S*/sqvenvfs\b", "SQV", inst) == re.sub(r"\S*/sqvenvfs\b", "SQV", text),
          "the installed unit differs from the tested one only in the daemon's path")

    with tempfile.TemporaryDirectory(prefix="sqv-unit-") as tmp:
        rt = os.path.join(tmp, "runtime")
        os.mkdir(rt, 0o700)
        env = dict(os.environ, XDG_RUNTIME_DIR=rt, SYSTEMD_LOG_LEVEL="notice")
        for name in ("sqvenvfs@.service", "sqvenvfs@torch.service"):
            p = os.path.join(tmp, name)
            shutil.copy(a.unit, p)
            r = subprocess.run([sa, "--user", "verify", p], capture_output=True, text=True,
                               env=env, cwd=tmp)
            msg = (r.stdout + r.stderr).strip()
            check(r.returncode == 0 and not msg,
                  f"systemd-analyze --user verify {name}: rc={r.returncode} {msg!r}")
        # The check above must be able to fail: a broken copy is refused.
        p = os.path.join(tmp, "sqvenvfs@broken.service")
        with open(p, "w") as f:
            f.write(text.replace(f"{start[0]} -f", "/nonexistent/sqvenvfs -f"))
        r = subprocess.run([sa, "--user", "verify", p], capture_output=True, text=True,
                           env=env, cwd=tmp)
        check(r.returncode != 0, "verify refuses a unit whose daemon does not exist")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
