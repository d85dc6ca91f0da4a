# SPDX-License-Identifier: BSD-2-Clause
"""Delta images: a copy of a venv gets a package installed, one removed, a
file changed and a directory replaced wholesale; sqvenvfs-pack --base writes
only that, and base + delta mounted shows exactly what a full pack of the
changed venv shows, path by path (type, mode, owner, size, mtime, target,
content). A second delta on top of both removes the new package again. The
delta over a large base (numpy) is about the size of what was added."""

import os
import shutil

import toolstest as T


def raw_paths(image):
    r = T.inspect("dump", "--raw", image)
    return {line.split("\t")[0] for line in r.stdout.splitlines()}


def test(tmp, cleanups):
    T.check_basics()
    T.check_fuse()
    T.require(os.path.isdir(os.path.join(T.DIST, "numpy")),
              "python3-numpy missing")

    venv1 = T.make_venv(os.path.join(tmp, "v1", "venv"),
                        pkgs=("pyflakes", "pyflakes-2.5.0.egg-info", "toml",
                              "toml-0.10.2.egg-info", "numpy"))
    sp1 = T.site_packages(venv1)
    os.makedirs(os.path.join(sp1, "oldpkg"))
    for n in ("a.py", "b.py"):
        with open(os.path.join(sp1, "oldpkg", n), "w") as f:
            f.write(f"NAME = {n!r}\n")
    base = os.path.join(tmp, "base.sqfs")
    T.pack(venv1, base)

    # the changed venv: a copy (mtimes kept), then changes
    venv2 = os.path.join(tmp, "v2", "venv")
    os.makedirs(os.path.dirname(venv2))
    T.run(["cp", "-a", venv1, venv2])
    sp2 = T.site_packages(venv2)
    T.copy_pkg(venv2, "six.py", "six-1.16.0.egg-info")            # install
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
    r = T.pack("-v", "--base", base, venv2, delta)
    full2 = os.path.join(tmp, "full2.sqfs")
    T.pack(venv2, full2)

    # the delta holds what changed and nothing of numpy
    paths = raw_paths(delta)
    spd = "/lib/python3.11/site-packages"
    for p in (f"{spd}/six.py", f"{spd}/.wh.pyflakes",
              f"{spd}/.wh.pyflakes-2.5.0.egg-info", "/bin/.wh.pyflakes",
              f"{spd}/toml/__init__.py", f"{spd}/toml/tz.py",
              f"{spd}/oldpkg/.wh..wh..opq", f"{spd}/oldpkg/c.py",
              f"{spd}/__pycache__/six.cpython-311.pyc",
              f"{spd}/toml-0.10.2.egg-info/PKG-INFO"):
        assert p in paths, f"{p} missing from the delta:\n" + \
            "\n".join(sorted(paths))
    for p in paths:
        assert not p.startswith(f"{spd}/numpy"), f"{p} in the delta"
        assert not p.startswith(f"{spd}/toml/decoder"), f"{p} in the delta"
    assert os.path.getsize(delta) < 128 * 1024, os.path.getsize(delta)
    assert os.path.getsize(base) > 4 * 1024 * 1024, os.path.getsize(base)

    m_stack = os.path.join(tmp, "mnt-stack")
    m_full = os.path.join(tmp, "mnt-full")
    T.Mount([base, delta], m_stack, cleanups)
    T.Mount([full2], m_full, cleanups)
    d = T.diff_trees(T.tree(m_stack), T.tree(m_full), "base+delta", "full")
    assert not d, "base+delta differs from a full pack:\n" + "\n".join(d[:20])

    # and from the venv itself, but for what packing rewrites or compiles
    rewritten = {"/bin/activate", "/bin/activate.csh", "/bin/activate.fish",
                 "/bin/whereami"}
    vt = T.tree(venv2)
    mt = T.tree(m_stack)
    for p, rec in vt.items():
        if "__pycache__" in p or p in rewritten:
            continue
        if rec[0] == 0o040000:
            continue    # directories may gain __pycache__
        assert mt.get(p) == rec[:2] + (0, 0) + rec[4:], \
            f"{p}: venv {rec} mounted {mt.get(p)}"
    extra = [p for p in mt if p not in vt and "__pycache__" not in p]
    assert not extra, f"mounted but not in the venv: {extra}"

    r = T.run([os.path.join(m_stack, "bin", "python"), "-c",
               "import six, toml, oldpkg.c, numpy; print(toml.CHANGED)"])
    assert r.stdout.strip() == "True", r.stdout
    r = T.run([os.path.join(m_stack, "bin", "python"), "-c",
               "import pyflakes"], check=False)
    assert r.returncode != 0, "pyflakes still importable"

    # inspect sees a stack that resolves, and the delta's whiteouts
    r = T.inspect(base, delta)
    assert "resolves:     yes" in r.stdout, r.stdout
    assert "whiteouts:    3 (and 1 opaque" in r.stdout, r.stdout

    # a second delta over base + delta: remove six again
    venv3 = os.path.join(tmp, "v3", "venv")
    os.makedirs(os.path.dirname(venv3))
    T.run(["cp", "-a", venv2, venv3])
    sp3 = T.site_packages(venv3)
    os.unlink(os.path.join(sp3, "six.py"))
    shutil.rmtree(os.path.join(sp3, "six-1.16.0.egg-info"))
    delta2 = os.path.join(tmp, "delta2.sqfs")
    T.pack("--base", base, "--base", delta, venv3, delta2)
    full3 = os.path.join(tmp, "full3.sqfs")
    T.pack(venv3, full3)
    m3 = os.path.join(tmp, "mnt-3")
    m3f = os.path.join(tmp, "mnt-3f")
    T.Mount([base, delta, delta2], m3, cleanups)
    T.Mount([full3], m3f, cleanups)
    d = T.diff_trees(T.tree(m3), T.tree(m3f), "3 layers", "full")
    assert not d, "3 layers differ from a full pack:\n" + "\n".join(d[:20])

    # no change at all: an almost empty delta, same view
    delta0 = os.path.join(tmp, "delta0.sqfs")
    r = T.pack("--base", base, venv1, delta0)
    assert "0 added, 0 changed, 0 removed" in r.stdout, r.stdout
    assert raw_paths(delta0) == {"/"}, raw_paths(delta0)


if __name__ == "__main__":
    T.main(test)
