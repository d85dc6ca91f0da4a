# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs-pack as users meet it (issue 16): a venv made under umask 077
gives an image its readers can read, the image file follows the umask,
editable installs of every kind pip writes are named (an error with
--strict), a full staging directory is named, every program answers -V,
and `sqvenvfs-inspect ls IMAGE` lists the root."""

import os
import stat

import sqvtest as T


def umask_run(mask, cmd, **kw):
    return T.run(cmd, preexec_fn=lambda: os.umask(mask), **kw)


def unreadable(dump_text):
    """Entries whose group or others lack a read/search bit the owner
    has: the rule of docs/tools.md for root-owned images."""
    bad = []
    for line in dump_text.splitlines():
        f = line.split("\t")
        if f[1] == "l":
            continue
        mode = int(f[2], 8)
        own = (mode >> 6) & 5
        if ((mode >> 3) & own) != own or (mode & own) != own:
            bad.append(f"{f[0]} {oct(mode)}")
    return bad


def modes(tmp):
    old = os.umask(0o077)
    try:
        venv = T.make_venv(os.path.join(tmp, "venv077"))
    finally:
        os.umask(old)
    secret = os.path.join(T.site_packages(venv), "toml", "secret.py")
    with open(secret, "w") as f:
        f.write("X = 1\n")
    os.chmod(secret, 0o600)
    # packed by a user whose umask is 077 too: private image file,
    # readable contents
    img = os.path.join(tmp, "v077.sqfs")
    umask_run(0o077, [T.PACK, venv, img])
    T.check(stat.S_IMODE(os.stat(img).st_mode) == 0o600,
            f"image mode under umask 077: {oct(os.stat(img).st_mode)}")
    dump = T.inspect("dump", img).stdout
    bad = unreadable(dump)
    T.check(not bad, f"entries only root can read: {bad[:5]}")
    T.check("/lib/python3.11/site-packages/toml/secret.py\tf\t644\t" in dump,
            "a 0600 file becomes 0644")
    T.check("/bin\td\t755\t" in dump, "a 0700 directory becomes 0755")

    img1 = os.path.join(tmp, "v022.sqfs")
    umask_run(0o022, [T.PACK, venv, img1])
    T.check(stat.S_IMODE(os.stat(img1).st_mode) == 0o644,
            f"image mode under umask 022: {oct(os.stat(img1).st_mode)}")
    img2 = os.path.join(tmp, "v027.sqfs")
    umask_run(0o027, [T.PACK, venv, img2])
    T.check(stat.S_IMODE(os.stat(img2).st_mode) == 0o640,
            f"image mode under umask 027: {oct(os.stat(img2).st_mode)}")

    # --keep-owner keeps owners, so it keeps modes too
    img3 = os.path.join(tmp, "vkeep.sqfs")
    T.pack("--keep-owner", venv, img3)
    dump = T.inspect("dump", img3).stdout
    T.check("/lib/python3.11/site-packages/toml/secret.py\tf\t600\t" in dump,
            "--keep-owner keeps a 0600 file as it is")


def editables(tmp):
    """Real editable installs by the venv's pip (offline, from local
    projects), in the three forms pip 23 with setuptools 66 leaves."""
    T.require(os.path.isdir(os.path.join(T.DIST, "wheel")),
              "python3-wheel missing (setuptools needs it for pip -e)")
    venv = os.path.join(tmp, "ev")
    T.run([T.SYS_PYTHON, "-m", "venv", "--system-site-packages", venv])
    src = os.path.join(tmp, "src")
    for name in ("foo", "bar", "baz"):
        os.makedirs(os.path.join(src, name, name))
        open(os.path.join(src, name, name, "__init__.py"), "w").close()
        if name == "baz":
            with open(os.path.join(src, name, "setup.py"), "w") as f:
                f.write("from setuptools import setup\n"
                        "setup(name='baz', version='1.0', packages=['baz'])\n")
            continue
        with open(os.path.join(src, name, "pyproject.toml"), "w") as f:
            f.write('[build-system]\nrequires = ["setuptools"]\n'
                    'build-backend = "setuptools.build_meta"\n'
                    f'[project]\nname = "{name}"\nversion = "1.0"\n')
    pip = [os.path.join(venv, "bin", "pip"), "install", "-q", "--no-index",
           "--no-build-isolation"]
    # the finder kind: __editable__.foo-1.0.pth + __editable___*_finder.py
    T.run(pip + ["-e", os.path.join(src, "foo")])
    # a path line in __editable__.bar-1.0.pth
    T.run(pip + ["--config-settings", "editable_mode=compat",
                 "-e", os.path.join(src, "bar")])
    # legacy setup.py develop: baz.egg-link + easy-install.pth
    T.run(pip + ["--no-use-pep517", "-e", os.path.join(src, "baz")])
    sp = T.site_packages(venv)
    names = os.listdir(sp)
    T.check(any(n.startswith("__editable___foo") and n.endswith("_finder.py")
                for n in names) and "baz.egg-link" in names,
            f"pip left the expected files: {sorted(names)}")

    img = os.path.join(tmp, "ev.sqfs")
    r = T.pack(venv, img)
    for name, path in (("foo", os.path.join(src, "foo", "foo")),
                       ("bar", os.path.join(src, "bar")),
                       ("baz", os.path.join(src, "baz"))):
        want = f"sqvenvfs-pack: warning: {name}: editable install from {path}"
        T.check(want in r.stderr, f"{want!r} not in:\n{r.stderr}")
    os.unlink(img)
    r = T.pack("--strict", venv, img, check=False)
    lines = r.stderr.strip().splitlines()
    T.check(r.returncode == 1 and len(lines) == 1 and
            "editable install from" in lines[0] and "--strict" in lines[0],
            f"--strict: exit {r.returncode}, {r.stderr!r}")
    T.check(not os.path.exists(img), "--strict left an image")
    T.check(not [n for n in os.listdir(tmp) if n.endswith(".partial")],
            "--strict left a temporary image")


def staging_full(tmp, cleanups):
    if os.geteuid() != 0:
        return      # mounting a small tmpfs needs root
    venv = T.make_venv(os.path.join(tmp, "venvfull"))
    with open(os.path.join(T.site_packages(venv), "big.bin"), "wb") as f:
        f.write(os.urandom(512 * 1024))
    small = os.path.join(tmp, "smallstage")
    os.mkdir(small)
    T.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", small])
    cleanups.append(lambda: T.run(["umount", small]))
    img = os.path.join(tmp, "full.sqfs")
    r = T.pack("--tmpdir", small, venv, img, check=False)
    want = f"sqvenvfs-pack: {small}: staging directory full"
    T.check(r.returncode == 1 and r.stderr.startswith(want) and
            r.stderr.count("\n") == 1, f"want {want!r}, got {r.stderr!r}")
    T.check(os.listdir(small) == [], f"left in staging: {os.listdir(small)}")
    T.check(not os.path.exists(img), "an image was left")


def versions():
    progs = [(T.SQVENVFS, "sqvenvfs"), (T.PACK, "sqvenvfs-pack"),
             (T.INSPECT, "sqvenvfs-inspect")]
    # sqvenvfs-edit is built beside sqvenvfs-pack
    progs.append((os.path.join(os.path.dirname(T.PACK), "sqvenvfs-edit"),
                  "sqvenvfs-edit"))
    # the Slurm helper, where it was built (tools/slurm/ of the build tree)
    slurm = os.path.join(os.path.dirname(T.INSPECT), "slurm",
                         "sqvenvfs-slurm")
    if os.access(slurm, os.X_OK):
        progs.append((slurm, "sqvenvfs-slurm"))
    for prog, name in progs:
        r = T.run([prog, "-V"], check=False)
        T.check(r.returncode == 0 and r.stdout.startswith(name + " ") and
                r.stdout.strip().split()[1][0].isdigit(),
                f"{name} -V: exit {r.returncode}, {r.stdout!r} {r.stderr!r}")


def ls_root(tmp):
    venv = T.make_venv(os.path.join(tmp, "venvls"))
    img = os.path.join(tmp, "ls.sqfs")
    T.pack("--no-compile", venv, img)
    a = T.inspect("ls", img)
    b = T.inspect("ls", img, "/")
    T.check(a.stdout == b.stdout and "pyvenv.cfg" in a.stdout.split(),
            f"ls IMAGE: {a.stdout!r} vs ls IMAGE /: {b.stdout!r}")
    # a path is still a path
    c = T.inspect("ls", img, "/bin")
    T.check("python3" in c.stdout.split(), f"ls IMAGE /bin: {c.stdout!r}")

    # --block-size follows docs/sizes.md's grammar
    img2 = os.path.join(tmp, "bs.sqfs")
    T.pack("--no-compile", "--block-size", "64KiB", venv, img2)
    r = T.inspect(img2)
    T.check("64.0 KiB" in r.stdout, f"--block-size 64KiB: {r.stdout}")
    r = T.pack("--no-compile", "--block-size", "100B", venv,
               os.path.join(tmp, "bad.sqfs"), check=False)
    T.check(r.returncode == 2 and "docs/sizes.md" in r.stderr,
            f"--block-size 100B: {r.stderr!r}")


def pyc_reuse(tmp):
    """pycs the venv already has and that are valid for their sources are
    kept (header made unchecked-hash), stale ones recompiled."""
    import importlib.util
    venv = T.make_venv(os.path.join(tmp, "venvpyc"))
    toml = os.path.join(T.site_packages(venv), "toml")
    T.run([os.path.join(venv, "bin", "python3"), "-m", "compileall", "-q",
           toml])
    tz = os.path.join(toml, "tz.py")
    with open(tz, "a") as f:
        f.write("STALE = 1\n")
    os.utime(tz, (1_600_000_000, 1_600_000_000))
    # A valid pyc's new header is written in place only into a file of
    # its own: a hard link's other name, a symlink's target keep theirs.
    cache = os.path.join(toml, "__pycache__")
    os.link(os.path.join(cache, "decoder.cpython-311.pyc"),
            os.path.join(toml, "decoder-link.bin"))
    os.rename(os.path.join(cache, "encoder.cpython-311.pyc"),
              os.path.join(toml, "encoder-target.bin"))
    os.symlink("../encoder-target.bin",
               os.path.join(cache, "encoder.cpython-311.pyc"))
    kept = {}
    for n in ("decoder-link.bin", "encoder-target.bin"):
        with open(os.path.join(toml, n), "rb") as f:
            kept[n] = f.read()
    img = os.path.join(tmp, "pyc.sqfs")
    r = T.pack(venv, img)
    T.check(" with valid pycs kept" in r.stdout, r.stdout)
    spd = "/lib/python3.11/site-packages/toml"
    for n, data in kept.items():
        T.check(T.inspect("cat", img, f"{spd}/{n}", text=False).stdout ==
                data, f"{n}: its bytes as in the venv (a valid pyc's other "
                "name or symlink target)")
    for mod, reused in (("decoder", True), ("encoder", True),
                        ("tz", False)):
        pyc = T.inspect("cat", img, f"{spd}/__pycache__/{mod}.cpython-311.pyc",
                        text=False).stdout
        with open(os.path.join(toml, mod + ".py"), "rb") as f:
            h = importlib.util.source_hash(f.read())
        T.check(pyc[:4] == importlib.util.MAGIC_NUMBER and
                pyc[4:8] == b"\1\0\0\0" and pyc[8:16] == h,
                f"{mod}: not an unchecked-hash pyc of its source: {pyc[:16]}")
        # a reused pyc keeps the path it was compiled at; a recompiled
        # one records the path relative to the venv
        T.check((os.fsencode(toml) in pyc) == reused,
                f"{mod}: {'reused' if reused else 'recompiled'} expected")


def test(tmp, cleanups):
    T.require_pack_tools()
    pyc_reuse(tmp)
    versions()
    ls_root(tmp)
    modes(tmp)
    staging_full(tmp, cleanups)
    editables(tmp)


if __name__ == "__main__":
    T.main(test)
