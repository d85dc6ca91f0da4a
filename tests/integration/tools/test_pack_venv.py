# SPDX-License-Identifier: BSD-2-Clause
"""A real venv, packed by sqvenvfs-pack and mounted by sqvenvfs at another
path: its console scripts run, `activate` points at the mount, imports work
from the pycs, and nothing tries to write bytecode. VENV_DIR is untouched."""

import os
import re
import shutil

import toolstest as T


def test(tmp, cleanups):
    T.check_basics()
    T.check_fuse()
    T.require(shutil.which("strace"), "strace missing")
    T.require(shutil.which("bash"), "bash missing")

    venv = T.make_venv(os.path.join(tmp, "made-here", "venv"), with_pip=True)
    sp = T.site_packages(venv)
    # a module reached through a .pth line with an absolute path in the venv
    os.mkdir(os.path.join(venv, "extra"))
    with open(os.path.join(venv, "extra", "extramod.py"), "w") as f:
        f.write("VALUE = 42\n")
    with open(os.path.join(sp, "extra.pth"), "w") as f:
        f.write(os.path.join(venv, "extra") + "\n")
    # a symlink with an absolute target inside the venv
    os.symlink(os.path.join(venv, "bin", "whereami"),
               os.path.join(venv, "bin", "whereami-link"))
    before = T.tree(venv)

    image = os.path.join(tmp, "venv.sqfs")
    r = T.pack("-v", "--optimize", "0,1,2", venv, image)
    assert T.tree(venv) == before, "sqvenvfs-pack changed VENV_DIR"
    for what in ("bin/whereami (shebang)", "bin/pyflakes (shebang)",
                 "bin/pip3 (shebang)",
                 "bin/activate (VIRTUAL_ENV)", "extra.pth (.pth path)",
                 "bin/whereami-link (symlink target)"):
        assert what in r.stdout, f"summary does not report {what}:\n{r.stdout}"
    assert re.search(r"size: .* staged -> .* image \(zstd level 3, 128 KiB",
                     r.stdout), r.stdout

    # not a byte of the original path may be needed: move the venv away
    os.rename(os.path.join(tmp, "made-here"), os.path.join(tmp, "gone"))

    mnt = os.path.join(tmp, "elsewhere", "mnt")
    T.Mount([image], mnt, cleanups)

    # console scripts run with the mounted venv
    for script in ("whereami", "whereami-link"):
        r = T.run([os.path.join(mnt, "bin", script)])
        lines = r.stdout.split("\n")
        assert lines[0] == mnt, f"{script}: sys.prefix {lines[0]!r} != {mnt}"
        assert lines[1] == os.path.join(
            mnt, "lib/python3.11/site-packages/toml/__init__.py"), lines
    r = T.run([os.path.join(mnt, "bin", "pyflakes"), "--version"])
    assert "Python 3.11" in r.stdout, r.stdout
    # pip's own console script, as ensurepip wrote it
    r = T.run([os.path.join(mnt, "bin", "pip"), "--version"])
    assert f"from {mnt}/lib/python3.11/site-packages/pip " in r.stdout, \
        r.stdout

    # activate sets the right paths
    r = T.run(["bash", "-c",
               f'source "{mnt}/bin/activate" && echo "$VIRTUAL_ENV" && '
               'command -v python && command -v whereami && '
               'python -c "import sys, extramod; print(sys.prefix); '
               'print(extramod.__file__)" && deactivate && '
               'echo "${VIRTUAL_ENV:-unset}"'])
    assert r.stdout.split("\n")[:6] == [
        mnt, f"{mnt}/bin/python", f"{mnt}/bin/whereami", mnt,
        f"{mnt}/extra/extramod.py", "unset"], r.stdout
    # sourced through a relative path from another directory, too
    r = T.run(["bash", "-c", 'cd "$1/bin" && . ./activate && cd / && '
               'echo "$VIRTUAL_ENV"', "-", mnt])
    assert r.stdout.strip() == mnt, r.stdout

    # zsh and fish find the venv from the activate script's own location
    for shell, script, src in (("zsh", "activate", "source"),
                               ("fish", "activate.fish", "source")):
        T.require(shutil.which(shell), f"{shell} missing")
        r = T.run([shell, "-c", f'{src} "{mnt}/bin/{script}"; '
                   'echo "$VIRTUAL_ENV"; command -v python'])
        assert r.stdout.split("\n")[:2] == [mnt, f"{mnt}/bin/python"], \
            (shell, r.stdout, r.stderr)

    # imports read pycs, never the sources, and never try to write one
    log = os.path.join(tmp, "strace.log")
    prog = ("import sys, pyflakes.api, toml, extramod, whereami, pip\n"
            "for m in list(sys.modules.values()):\n"
            "    f = getattr(m, '__file__', None) or ''\n"
            f"    if f.startswith({mnt!r} + '/'): print(f)\n")
    for flag in ([], ["-O"], ["-OO"]):
        r = T.run(["strace", "-f", "-qq", "-o", log, "-e",
                   "trace=open,openat,openat2,creat,mkdir,mkdirat,rename,"
                   "renameat,renameat2,unlink,unlinkat,truncate",
                   os.path.join(mnt, "bin", "python")] + flag + ["-c", prog])
        files = r.stdout.split()
        assert len(files) >= 10, files
        with open(log) as f:
            calls = [l for l in f if mnt in l]
        writes = [l for l in calls
                  if re.search(r"O_WRONLY|O_RDWR|O_CREAT|mkdir|rename|unlink"
                               r"|creat\(|truncate", l)]
        assert not writes, "writes attempted under the mount:\n" + \
            "".join(writes)
        tag = {0: "", 1: ".opt-1", 2: ".opt-2"}[len(flag[0]) - 1
                                                   if flag else 0]
        for src in files:
            d, base = os.path.split(src)
            pyc = os.path.join(d, "__pycache__", base[:-3] +
                               f".cpython-311{tag}.pyc")
            opened = [l for l in calls if f'"{pyc}"' in l and
                      not re.search(r"= -1 E", l)]
            assert opened, f"python {flag}: {pyc} was not opened"
            srcopen = [l for l in calls if re.search(
                r'open(at)?\(.*"%s"' % re.escape(src), l)]
            assert not srcopen, f"{src} was read: its pyc was not used\n" + \
                "".join(srcopen)

    # inspect agrees: every module has its pyc, nothing pins a path
    r = T.inspect(image)
    assert "python:       3.11.2" in r.stdout, r.stdout
    assert re.search(r"without \.pyc: 0 of \d+ modules", r.stdout), r.stdout
    assert "nothing ties it to one path" in r.stdout, r.stdout


if __name__ == "__main__":
    T.main(test)
