# SPDX-License-Identifier: BSD-2-Clause
"""The same venv packed twice gives one sha256, whatever -j and the staging
directory, and a module compiles to the same pyc in any process;
SOURCE_DATE_EPOCH fixes the creation time and clamps newer mtimes; a
changed input changes the image; the compression and block size options
reach the image.

With --faketime DATE the test runs itself again under faketime(1), the
clock set to DATE for every program it starts (meson runs it so at a day 1
to 9 of another year: a formatted date once made this test fail on those
days)."""

import os
import re
import shutil
import struct
import sys
import time

import sqvtest as t


def image_sha(path):
    return t.sha256(path)


# Reduced from Debian's scipy/stats/tests/test_sampling.py, the pyc that
# differed between -j 1 and -j 2: one frozenset constant in two class
# bodies. CPython rebuilds such a frozenset per code object when one of
# its strings is already interned in the compiling process ('randint' is,
# in a pool worker that imported multiprocessing), which changes how
# marshal writes it.
SETS_MODULE = """class TestDiscreteAliasUrn:
    basic_fail_dists = {
        'nchypergeom_fisher',
        'nchypergeom_wallenius',
        'randint'
    }


class TestDiscreteGuideTable:
    basic_fail_dists = {
        'nchypergeom_fisher',
        'nchypergeom_wallenius',
        'randint'
    }
"""
WORKER = os.path.join(os.path.dirname(os.path.abspath(t.PACK)),
                      "sqvenvfs_tools", "pycworker.py")


def check_jobs(tmp):
    """-j 1, 2 and 4, each in its own staging directory: one sha256."""
    venv = t.make_venv(os.path.join(tmp, "venv-j"))
    with open(os.path.join(t.site_packages(venv), "dists.py"), "w") as f:
        f.write(SETS_MODULE)
    shas = {}
    for j in ("1", "2", "4"):
        stage = os.path.join(tmp, "stage-j" + j)
        os.mkdir(stage)
        img = os.path.join(tmp, f"j{j}.sqfs")
        t.pack("--tmpdir", stage, "-j", j, venv, img)
        shas[j] = image_sha(img)
    t.check(len(set(shas.values())) == 1, "-j 1, -j 2 and -j 4 in other "
            "staging directories give one image", shas)


def check_process(tmp):
    """The pack's compiler (pycworker.py) writes the same pyc in a fresh
    interpreter and in one that already holds the module's strings, as a
    worker does after other modules or imports."""
    if not os.path.isfile(WORKER):
        raise AssertionError(f"{WORKER}: missing beside {t.PACK}")
    pycs = []
    for held in ([], ["randint", "nchypergeom_fisher"]):
        d = os.path.join(tmp, f"compile-{len(held)}")
        os.mkdir(d)
        with open(os.path.join(d, "dists.py"), "w") as f:
            f.write(SETS_MODULE)
        code = ("import runpy, sys\n"
                f"held = [sys.intern(''.join(s)) for s in {held!r}]\n"
                f"sys.argv = [{WORKER!r}, {d!r}, '', '1', '0']\n"
                f"runpy.run_path({WORKER!r}, run_name='__main__')\n")
        t.run([t.SYS_PYTHON, "-S", "-B", "-c", code],
              env=t.clean_env(PYTHONHASHSEED="0"))
        pyc = os.path.join(d, "__pycache__", "dists.cpython-311.pyc")
        with open(pyc, "rb") as f:
            pycs.append(f.read())
    t.check(pycs[0] == pycs[1], "a module compiles to the same pyc whether "
            "or not the compiling process holds its strings already")


def mkfs_time(image):
    """The superblock's creation time: the field itself (offset 8,
    little-endian u32), not a formatted date, which would depend on the
    day's padding and the time zone."""
    with open(image, "rb") as f:
        return struct.unpack_from("<I", f.read(96), 8)[0]


def test(tmp, cleanups):
    t.require_pack_tools()
    date = os.environ.get("SQV_FAKETIME")
    if date:
        # Prove the clock really is faked, or this run tests nothing more.
        want = tuple(int(x) for x in date[:10].split("-"))
        t.check(tuple(time.gmtime()[:3]) == want,
                f"the clock is faked to {date}", time.gmtime())
    venv = t.make_venv(os.path.join(tmp, "venv"))

    a, b = os.path.join(tmp, "a.sqfs"), os.path.join(tmp, "b.sqfs")
    t.pack(venv, a)
    # a second run in another staging directory, with other workers
    os.mkdir(os.path.join(tmp, "stage"))
    t.pack("--tmpdir", os.path.join(tmp, "stage"), "-j", "1", venv, b)
    t.check(image_sha(a) == image_sha(b),
            "two packs of one venv (other staging directory, -j 1) are "
            "identical")
    check_jobs(tmp)
    check_process(tmp)

    # the creation time is the newest mtime of the input, not the clock
    newest = 0
    for dirpath, dirnames, filenames in os.walk(venv):
        for n in dirnames + filenames + [""]:
            newest = max(newest, int(os.lstat(os.path.join(dirpath, n))
                                     .st_mtime))
    r = t.inspect("dump", a)
    mtimes = [int(l.split("\t")[6]) for l in r.stdout.splitlines()]
    t.check(max(mtimes) == newest, "the newest mtime in the image is the "
            "input's newest", (max(mtimes), newest))
    t.check(mkfs_time(a) == newest, "the superblock's creation time is the "
            "input's newest mtime (under faketime: not the clock)",
            (mkfs_time(a), newest))

    # SOURCE_DATE_EPOCH: reproducible too, and nothing newer than it
    epoch = newest - 3600
    env = t.clean_env(SOURCE_DATE_EPOCH=str(epoch))
    c, d = os.path.join(tmp, "c.sqfs"), os.path.join(tmp, "d.sqfs")
    t.pack(venv, c, env=env)
    t.pack(venv, d, env=env)
    t.check(image_sha(c) == image_sha(d),
            "two SOURCE_DATE_EPOCH packs are identical")
    t.check(image_sha(c) != image_sha(a),
            "SOURCE_DATE_EPOCH changes the image")
    r = t.inspect("dump", c)
    mtimes = [int(l.split("\t")[6]) for l in r.stdout.splitlines()]
    t.check(max(mtimes) == epoch, "SOURCE_DATE_EPOCH clamps every mtime",
            (max(mtimes), epoch))
    t.check(mkfs_time(c) == epoch, "the superblock's creation time is "
            "SOURCE_DATE_EPOCH", (mkfs_time(c), epoch))

    # a change of one byte changes the image
    with open(os.path.join(t.site_packages(venv), "toml", "tz.py"), "a") as f:
        f.write("#\n")
    e = os.path.join(tmp, "e.sqfs")
    t.pack(venv, e)
    t.check(image_sha(e) != image_sha(a),
            "a change of one byte changes the image")

    # compressors and block sizes
    for comp, extra in (("lz4", []), ("xz", []), ("gzip", ["--level", "6"]),
                        ("zstd", ["--level", "19", "--block-size", "1M"])):
        img = os.path.join(tmp, f"{comp}.sqfs")
        t.pack("--comp", comp, *extra, venv, img)
        r = t.inspect(img)
        t.check(re.search(rf"compression:\s+{comp}\b", r.stdout),
                f"--comp {comp} reaches the image", r.stdout)
        bs = "1.0 MiB" if "1M" in extra else "128.0 KiB"
        t.check(re.search(rf"block size:\s+{re.escape(bs)}", r.stdout),
                f"{comp}: the block size is {bs}", r.stdout)
        t.run(["unsquashfs", "-n", "-d", os.path.join(tmp, "x-" + comp),
               img])


def refake(date):
    """Run this test again with the clock at date (libfaketime, with its
    thread-safe library: mksquashfs and pack use threads)."""
    faketime = shutil.which("faketime")
    t.require(faketime, "faketime (package faketime) is not installed")
    os.environ["SQV_FAKETIME"] = date
    # Already under faketime (the whole suite run so): start from the real
    # clock, or date would count from the faked one.
    preload = [p for p in os.environ.pop("LD_PRELOAD", "").split()
               if "libfaketime" not in p]
    if preload:
        os.environ["LD_PRELOAD"] = " ".join(preload)
    for k in [k for k in os.environ if k.startswith("FAKETIME")]:
        del os.environ[k]
    os.execv(faketime, [faketime, "-m", date, sys.executable,
                        os.path.abspath(__file__)])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--faketime"]:
        refake(sys.argv[2])
    t.main(test)
