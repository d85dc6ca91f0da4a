# SPDX-License-Identifier: BSD-2-Clause
"""A real venv, packed by sqvenvfs-pack and mounted by sqvenvfs at another
path: its console scripts run, `activate` points at the mount, imports work
from the pycs, and nothing tries to write bytecode. VENV_DIR is untouched."""

import os
import re
import shutil

import sqvtest as t


def test(tmp, cleanups):
    t.require_pack_tools()
    t.require_mount_capability()
    t.require(shutil.which("strace"), "strace missing")
    t.require(shutil.which("bash"), "bash missing")

    venv = t.make_venv(os.path.join(tmp, "made-here", "venv"), with_pip=True)
    sp = t.site_packages(venv)
    # a module reached through a .pth line with an absolute path in the venv
    os.mkdir(os.path.join(venv, "extra"))
    with open(os.path.join(venv, "extra", "extramod.py"), "w") as f:
        f.write("VALUE = 42\n")
    with open(os.path.join(sp, "extra.pth"), "w") as f:
        f.write(os.path.join(venv, "extra") + "\n")
    # a symlink with an absolute target inside the venv
    os.symlink(os.path.join(venv, "bin", "whereami"),
               os.path.join(venv, "bin", "whereami-link"))
    before = t.dump_tree(venv, with_root=True)

    image = os.path.join(tmp, "venv.sqfs")
    r = t.pack("-v", "--optimize", "0,1,2", venv, image)
    t.check(t.dump_tree(venv, with_root=True) == before,
            "sqvenvfs-pack leaves VENV_DIR as it was")
    for what in ("bin/whereami (shebang)", "bin/pyflakes (shebang)",
                 "bin/pip3 (shebang)",
                 "bin/activate (VIRTUAL_ENV)", "extra.pth (.pth path)",
                 "bin/whereami-link (symlink target)"):
        t.check(what in r.stdout, f"the summary reports {what}", r.stdout)
    t.check(re.search(r"size: .* staged -> .* image \(zstd level 3, 128 KiB",
                      r.stdout), "the summary reports sizes and options",
            r.stdout)

    # not a byte of the original path may be needed: move the venv away
    os.rename(os.path.join(tmp, "made-here"), os.path.join(tmp, "gone"))

    mnt = os.path.join(tmp, "elsewhere", "mnt")
    os.makedirs(mnt, exist_ok=True)
    t.mount([image], mnt, cleanups=cleanups)

    # console scripts run with the mounted venv
    for script in ("whereami", "whereami-link"):
        r = t.run([os.path.join(mnt, "bin", script)])
        lines = r.stdout.split("\n")
        t.check(lines[0] == mnt, f"{script}: sys.prefix is the mount",
                lines[0])
        t.check(lines[1] == os.path.join(
            mnt, "lib/python3.11/site-packages/toml/__init__.py"),
            f"{script}: imports from the mount", lines)
    r = t.run([os.path.join(mnt, "bin", "pyflakes"), "--version"])
    t.check("Python 3.11" in r.stdout, "pyflakes' console script runs",
            r.stdout)
    # pip's own console script, as ensurepip wrote it
    r = t.run([os.path.join(mnt, "bin", "pip"), "--version"])
    t.check(f"from {mnt}/lib/python3.11/site-packages/pip " in r.stdout,
            "pip's console script runs from the mount", r.stdout)

    # activate sets the right paths
    r = t.run(["bash", "-c",
               f'source "{mnt}/bin/activate" && echo "$VIRTUAL_ENV" && '
               'command -v python && command -v whereami && '
               'python -c "import sys, extramod; print(sys.prefix); '
               'print(extramod.__file__)" && deactivate && '
               'echo "${VIRTUAL_ENV:-unset}"'])
    t.check(r.stdout.split("\n")[:6] == [
        mnt, f"{mnt}/bin/python", f"{mnt}/bin/whereami", mnt,
        f"{mnt}/extra/extramod.py", "unset"],
        "activate sets VIRTUAL_ENV and PATH to the mount, deactivate undoes "
        "it", r.stdout)
    # sourced through a relative path from another directory, too
    r = t.run(["bash", "-c", 'cd "$1/bin" && . ./activate && cd / && '
               'echo "$VIRTUAL_ENV"', "-", mnt])
    t.check(r.stdout.strip() == mnt,
            "activate sourced through a relative path", r.stdout)

    # zsh and fish find the venv from the activate script's own location
    for shell, script, src in (("zsh", "activate", "source"),
                               ("fish", "activate.fish", "source")):
        t.require(shutil.which(shell), f"{shell} missing")
        r = t.run([shell, "-c", f'{src} "{mnt}/bin/{script}"; '
                   'echo "$VIRTUAL_ENV"; command -v python'])
        t.check(r.stdout.split("\n")[:2] == [mnt, f"{mnt}/bin/python"],
                f"{shell}: {script} finds the mount", (r.stdout, r.stderr))

    # imports read pycs, never the sources, and never try to write one
    log = os.path.join(tmp, "strace.log")
    prog = ("import sys, pyflakes.api, toml, extramod, whereami, pip\n"
            "for m in list(sys.modules.values()):\n"
            "    f = getattr(m, '__file__', None) or ''\n"
            f"    if f.startswith({mnt!r} + '/'): print(f)\n")
    for flag in ([], ["-O"], ["-OO"]):
        r = t.run(["strace", "-f", "-qq", "-o", log, "-e",
                   "trace=open,openat,openat2,creat,mkdir,mkdirat,rename,"
                   "renameat,renameat2,unlink,unlinkat,truncate",
                   os.path.join(mnt, "bin", "python")] + flag + ["-c", prog])
        files = r.stdout.split()
        t.check(len(files) >= 10, f"python {flag}: imports modules from "
                "the mount", files)
        with open(log) as f:
            calls = [l for l in f if mnt in l]
        writes = [l for l in calls
                  if re.search(r"O_WRONLY|O_RDWR|O_CREAT|mkdir|rename|unlink"
                               r"|creat\(|truncate", l)]
        t.check(not writes, f"python {flag}: no write attempted under the "
                "mount", "".join(writes))
        tag = {0: "", 1: ".opt-1", 2: ".opt-2"}[len(flag[0]) - 1
                                                   if flag else 0]
        unopened, srcread = [], []
        for src in files:
            d, base = os.path.split(src)
            pyc = os.path.join(d, "__pycache__", base[:-3] +
                               f".cpython-311{tag}.pyc")
            if not [l for l in calls if f'"{pyc}"' in l and
                    not re.search(r"= -1 E", l)]:
                unopened.append(pyc)
            srcread += [l for l in calls if re.search(
                r'open(at)?\(.*"%s"' % re.escape(src), l)]
        t.check(not unopened, f"python {flag}: every module's pyc is opened",
                unopened)
        t.check(not srcread, f"python {flag}: no module's source is read",
                "".join(srcread))

    # inspect agrees: every module has its pyc, nothing pins a path
    r = t.inspect(image)
    t.check("python:       3.11.2" in r.stdout, "inspect: the Python",
            r.stdout)
    t.check(re.search(r"without \.pyc: 0 of \d+ modules", r.stdout),
            "inspect: every module has its pyc", r.stdout)
    t.check("nothing ties it to one path" in r.stdout,
            "inspect: nothing ties the image to one path", r.stdout)


if __name__ == "__main__":
    t.main(test)
