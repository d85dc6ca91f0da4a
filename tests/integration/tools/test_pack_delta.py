# SPDX-License-Identifier: BSD-2-Clause
"""Delta images: a copy of a venv gets a package installed, one removed, a
file changed and a directory replaced wholesale; sqvenvfs-pack --base writes
only that, and base + delta mounted shows exactly what a full pack of the
changed venv shows, path by path (type, mode, owner, size, mtime, target,
content). A second delta on top of both removes the new package again. The
delta over a large base (numpy) is about the size of what was added."""

import os
import re
import shutil
import time

import sqvtest as t


def raw_paths(image):
    r = t.inspect("dump", "--raw", image)
    return {line.split("\t")[0] for line in r.stdout.splitlines()}


def same_as_full(tmp, cleanups, label, stack, full):
    """Mount the stack and the full pack; check() they serve the same tree.
    Returns the stack's mount point (it stays mounted)."""
    mnts = []
    for what, images in (("stack", stack), ("full", [full])):
        mnt = os.path.join(tmp, f"mnt-{label}-{what}".replace(" ", "-"))
        os.makedirs(mnt)
        t.mount(images, mnt, cleanups=cleanups)
        mnts.append(mnt)
    d = t.diff_trees(*(t.dump_tree(m, with_root=True) for m in mnts),
                     label, "full")
    t.check(not d, f"{label} mounted is the same tree as a full pack",
            "\n".join(d[:20]))
    return mnts[0]


def count_sources(venv):
    return sum(1 for d, _, files in os.walk(venv) if "__pycache__" not in d
               for n in files if n.endswith(".py"))


def check_compiled(summary, venv, want, label):
    """The summary of a delta says want modules were compiled and every
    other module of venv was left to the base's pycs."""
    m = re.search(r"(\d+) modules compiled, (\d+) with valid pycs kept, "
                  r"(\d+) unchanged with the base's pycs", summary)
    t.check(m, f"{label}: the summary counts the compiled modules", summary)
    if m:
        compiled, reused, based = map(int, m.groups())
        t.check(compiled == want, f"{label}: {want} modules compiled",
                m.group(0))
        t.check(reused + based == count_sources(venv) - want,
                f"{label}: every other module keeps the base's pyc",
                (m.group(0), count_sources(venv)))


def view(*images, env=None):
    """The merged tree of images as `inspect dump --hash` lists it."""
    return t.inspect("dump", "--hash", *images, env=env).stdout


def flip_byte(path):
    """Change path's first byte, keeping its size, mode and mtime: the
    change rsync's quick check cannot see."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        b = f.read(1)
        f.seek(0)
        f.write(b"x" if b != b"x" else b"y")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def compared(summary, label):
    """(files by size and mtime, files by content) from a delta's summary."""
    m = re.search(r"compared with the base: (?:(\d+) files by size and "
                  r"mtime, (\d+) by content|(\d+) files by content)",
                  summary)
    t.check(m, f"{label}: the summary says how files were compared",
            summary)
    if not m:
        return 0, 0
    if m.group(3) is not None:
        return 0, int(m.group(3))
    return int(m.group(1)), int(m.group(2))


def quick_check(tmp, venv1):
    """A delta compares the venv with the base by size and mtime, as
    rsync does, and by content only where that cannot tell: a file in the
    base's newest second, or with its mtime clamped by SOURCE_DATE_EPOCH.
    --checksum compares every file by content, and so does --keep-owner."""
    venv = os.path.join(tmp, "vq", "venv")
    os.makedirs(os.path.dirname(venv))
    t.run(["cp", "-a", venv1, venv])
    info = os.path.join(t.site_packages(venv), "toml-0.10.2.egg-info")
    old, newest = (os.path.join(info, n) for n in ("PKG-INFO",
                                                   "top_level.txt"))
    # newest: the base's newest second (a day ahead, past anything that
    # packing writes); old: well before it
    day_ahead = int(time.time()) + 86400
    os.utime(newest, (day_ahead, day_ahead))
    os.utime(old, (day_ahead - 1000, day_ahead - 1000))
    base = os.path.join(tmp, "q-base.sqfs")
    t.pack(venv, base)

    flip_byte(newest)
    delta, full = (os.path.join(tmp, f"q-{n}.sqfs") for n in ("d1", "f1"))
    r = t.pack("--base", base, venv, delta)
    t.pack(venv, full)
    t.check(view(base, delta) == view(full),
            "a change in the base's newest second, size and mtime kept: "
            "found by content; the stack equals a full pack")
    by_stat, by_content = compared(r.stdout, "the quick delta")
    t.check(1 <= by_content and by_content * 10 < by_stat,
            "the quick delta reads contents only where size and mtime "
            "cannot tell", (by_stat, by_content))

    flip_byte(old)
    quick, exact = (os.path.join(tmp, f"q-{n}.sqfs") for n in ("d2", "d3"))
    t.pack("--base", base, venv, quick)
    r = t.pack("--checksum", "--base", base, venv, exact)
    os.unlink(full)
    t.pack(venv, full)
    t.check(view(base, exact) == view(full),
            "--checksum: a change that keeps size and mtime is found; the "
            "stack equals a full pack")
    by_stat, by_content = compared(r.stdout, "the --checksum delta")
    t.check(by_stat == 0 and by_content > 0 and "(--checksum)" in r.stdout,
            "--checksum compares every file by content",
            (by_stat, by_content))
    rel = "/" + os.path.relpath(old, venv)
    t.check(t.inspect("cat", base, quick, rel).stdout ==
            t.inspect("cat", base, rel).stdout,
            "without --checksum, that change is left to the base, as "
            "docs/tools.md says of the quick check")

    # SOURCE_DATE_EPOCH clamps every mtime here to one second: contents
    env = t.clean_env(SOURCE_DATE_EPOCH="1000000000")
    base = os.path.join(tmp, "q-sde-base.sqfs")
    t.pack(venv, base, env=env)
    flip_byte(os.path.join(info, "SOURCES.txt")
              if os.path.exists(os.path.join(info, "SOURCES.txt")) else old)
    delta, full = (os.path.join(tmp, f"q-sde-{n}.sqfs")
                   for n in ("d", "f"))
    t.pack("--base", base, venv, delta, env=env)
    t.pack(venv, full, env=env)
    t.check(view(base, delta) == view(full),
            "SOURCE_DATE_EPOCH: a change behind a clamped mtime is found "
            "by content; the stack equals a full pack")

    # --keep-owner: staged owners are the packer's, so contents decide
    base, delta, full = (os.path.join(tmp, f"q-own-{n}.sqfs")
                         for n in ("base", "d", "f"))
    t.pack("--keep-owner", venv, base)
    flip_byte(old)
    r = t.pack("--keep-owner", "--base", base, venv, delta)
    t.pack("--keep-owner", venv, full)
    t.check(view(base, delta) == view(full) and
            "files by content (--keep-owner)" in r.stdout,
            "--keep-owner: every file compared by content; the stack "
            "equals a full pack", r.stdout)


def test(tmp, cleanups):
    t.require_pack_tools()
    t.require_mount_capability()
    t.require(os.path.isdir(os.path.join(t.DIST, "numpy")),
              "python3-numpy missing")

    venv1 = t.make_venv(os.path.join(tmp, "v1", "venv"),
                        pkgs=("pyflakes", "pyflakes-2.5.0.egg-info", "toml",
                              "toml-0.10.2.egg-info", "numpy"))
    sp1 = t.site_packages(venv1)
    os.makedirs(os.path.join(sp1, "oldpkg"))
    for n in ("a.py", "b.py"):
        with open(os.path.join(sp1, "oldpkg", n), "w") as f:
            f.write(f"NAME = {n!r}\n")
    base = os.path.join(tmp, "base.sqfs")
    t.pack(venv1, base)

    # the changed venv: a copy (mtimes kept), then changes
    venv2 = os.path.join(tmp, "v2", "venv")
    os.makedirs(os.path.dirname(venv2))
    t.run(["cp", "-a", venv1, venv2])
    sp2 = t.site_packages(venv2)
    t.copy_pkg(venv2, "six.py", "six-1.16.0.egg-info")            # install
    shutil.rmtree(os.path.join(sp2, "pyflakes"))                    # remove
    shutil.rmtree(os.path.join(sp2, "pyflakes-2.5.0.egg-info"))
    os.unlink(os.path.join(venv2, "bin", "pyflakes"))
    with open(os.path.join(sp2, "toml", "__init__.py"), "a") as f:  # change
        f.write("CHANGED = True\n")
    os.chmod(os.path.join(sp2, "toml", "tz.py"), 0o755)             # mode
    touched = os.path.join(sp2, "toml-0.10.2.egg-info", "PKG-INFO")  # mtime
    st = os.stat(touched)
    os.utime(touched, (st.st_atime, st.st_mtime + 1000))
    shutil.rmtree(os.path.join(sp2, "oldpkg"))                      # replace
    os.makedirs(os.path.join(sp2, "oldpkg"))
    with open(os.path.join(sp2, "oldpkg", "c.py"), "w") as f:
        f.write("NAME = 'c'\n")

    delta = os.path.join(tmp, "delta.sqfs")
    r = t.pack("-v", "--base", base, venv2, delta)
    full2 = os.path.join(tmp, "full2.sqfs")
    t.pack(venv2, full2)
    # only the added and changed modules are compiled: six.py, oldpkg/c.py,
    # toml/__init__.py (content), toml/tz.py (mode)
    check_compiled(r.stdout, venv2, 4, "the delta")

    # the delta holds what changed and nothing of numpy
    paths = raw_paths(delta)
    spd = "/lib/python3.11/site-packages"
    missing = [p for p in (
        f"{spd}/six.py", f"{spd}/.wh.pyflakes",
        f"{spd}/.wh.pyflakes-2.5.0.egg-info", "/bin/.wh.pyflakes",
        f"{spd}/toml/__init__.py", f"{spd}/toml/tz.py",
        f"{spd}/oldpkg/.wh..wh..opq", f"{spd}/oldpkg/c.py",
        f"{spd}/__pycache__/six.cpython-311.pyc",
        f"{spd}/toml-0.10.2.egg-info/PKG-INFO") if p not in paths]
    t.check(not missing, "the delta holds every added, changed and removed "
            "path", f"missing: {missing}; delta: {sorted(paths)}")
    unchanged = [p for p in paths if p.startswith(f"{spd}/numpy") or
                 p.startswith(f"{spd}/toml/decoder")]
    t.check(not unchanged, "the delta holds nothing unchanged", unchanged)
    t.check(os.path.getsize(delta) < 128 * 1024, "the delta is small",
            os.path.getsize(delta))
    t.check(os.path.getsize(base) > 4 * 1024 * 1024,
            "the base holds numpy (large)", os.path.getsize(base))

    m_stack = same_as_full(tmp, cleanups, "base+delta", [base, delta], full2)

    # and from the venv itself, but for what packing rewrites or compiles
    rewritten = {"bin/activate", "bin/activate.csh", "bin/activate.fish",
                 "bin/whereami"}
    vt = t.dump_tree(venv2, with_root=True)
    mt = t.dump_tree(m_stack, with_root=True)
    differ = []
    for p, rec in vt.items():
        if "__pycache__" in p or p in rewritten:
            continue
        if rec[0] == 0o040000:
            continue    # directories may gain __pycache__
        if mt.get(p) != rec[:2] + (0, 0) + rec[4:]:
            differ.append(f"{p}: venv {rec} mounted {mt.get(p)}")
    t.check(not differ, "the stack serves the venv's paths as they are "
            "(owner root)", "\n".join(differ[:20]))
    extra = [p for p in mt if p not in vt and "__pycache__" not in p]
    t.check(not extra, "the stack serves nothing the venv lacks", extra)

    r = t.run([os.path.join(m_stack, "bin", "python"), "-c",
               "import six, toml, oldpkg.c, numpy; print(toml.CHANGED)"])
    t.check(r.stdout.strip() == "True",
            "the stack imports the changed and added modules", r.stdout)
    r = t.run([os.path.join(m_stack, "bin", "python"), "-c",
               "import pyflakes"], check=False)
    t.check(r.returncode != 0, "a removed package no longer imports")

    # inspect sees a stack that resolves, and the delta's whiteouts
    r = t.inspect(base, delta)
    t.check("resolves:     yes" in r.stdout, "inspect: base+delta resolves",
            r.stdout)
    t.check("whiteouts:    3 (and 1 opaque" in r.stdout,
            "inspect counts the delta's whiteouts", r.stdout)

    # a second delta over base + delta: remove six again
    venv3 = os.path.join(tmp, "v3", "venv")
    os.makedirs(os.path.dirname(venv3))
    t.run(["cp", "-a", venv2, venv3])
    sp3 = t.site_packages(venv3)
    os.unlink(os.path.join(sp3, "six.py"))
    shutil.rmtree(os.path.join(sp3, "six-1.16.0.egg-info"))
    delta2 = os.path.join(tmp, "delta2.sqfs")
    r = t.pack("--base", base, "--base", delta, venv3, delta2)
    check_compiled(r.stdout, venv3, 0, "the second delta")
    full3 = os.path.join(tmp, "full3.sqfs")
    t.pack(venv3, full3)
    same_as_full(tmp, cleanups, "3 layers", [base, delta, delta2], full3)

    # no change at all: an almost empty delta, same view
    delta0 = os.path.join(tmp, "delta0.sqfs")
    r = t.pack("--base", base, venv1, delta0)
    t.check("0 entries added, 0 changed, 0 removed" in r.stdout,
            "no change: the summary says so", r.stdout)
    t.check(raw_paths(delta0) == {"/"}, "no change: the delta is empty",
            raw_paths(delta0))
    check_compiled(r.stdout, venv1, 0, "the empty delta")

    # several optimisation levels: the base's pycs of each level are kept
    base01 = os.path.join(tmp, "base01.sqfs")
    t.pack("--optimize", "0,2", venv1, base01)
    # an unchanged module with a valid pyc of level 0 only (as pip leaves
    # it): that one is kept, level 2's comes from the base
    t.run([os.path.join(venv2, "bin", "python"), "-m", "py_compile",
           os.path.join(sp2, "toml", "decoder.py")])
    delta01 = os.path.join(tmp, "delta01.sqfs")
    r = t.pack("--optimize", "0,2", "--base", base01, venv2, delta01)
    check_compiled(r.stdout, venv2, 4, "the -O 0,2 delta")
    full01 = os.path.join(tmp, "full01.sqfs")
    t.pack("--optimize", "0,2", venv2, full01)
    same_as_full(tmp, cleanups, "the -O 0,2 stack", [base01, delta01], full01)

    quick_check(tmp, venv1)


if __name__ == "__main__":
    t.main(test)
