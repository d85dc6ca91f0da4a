# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs-pack --hot TRACE OLD.sqfs NEW.sqfs on a delta, and --hot's bad
input (docs/tools.md, "Laying out"). The trace of a stack mount (base +
delta) names mostly the base's files: with --base the delta is re-laid out
(the same tree, the delta's traced files first, mountable on the base) and
the summary counts the base's files as in the base and a file the sort
file cannot name (a newline) as unsortable, not as first; without --base,
or with a trace of another image, it is refused in one line. An image
with xattrs (user.*, security.*, overlayfs's trusted.overlay.opaque) keeps
every one, as root and, for user.* alone, as an ordinary user, who is
refused an image with trusted.* in one line, nothing left; so is root
whose staging file system takes no xattrs (ramfs). A missing
input and malformed traces: one line in the trace's terms, nothing left.
test_hot.py tests the workflow on a single image and the prefetch."""

import os
import random
import shutil

import sqvtest as t

NL_NAME = "new\nline.py"


def make_stack(tmp):
    """base.sqfs from a venv, delta.sqfs over it: six.py and newpkg (two
    incompressible files, cold.bin first in the delta as packed, and a
    module with a newline in its name)."""
    venv = t.make_venv(os.path.join(tmp, "venv"))
    base = os.path.join(tmp, "base.sqfs")
    t.pack("-q", "--no-compile", venv, base)
    sp = t.site_packages(venv)
    t.copy_pkg(venv, "six.py")
    new = os.path.join(sp, "newpkg")
    os.mkdir(new)
    rnd = random.Random(3)
    for name in ("cold.bin", "hot.bin"):
        with open(os.path.join(new, name), "wb") as f:
            f.write(rnd.randbytes(300 << 10))
    with open(os.path.join(new, NL_NAME), "w") as f:
        f.write("X = 1\n" * 100)
    delta = os.path.join(tmp, "delta.sqfs")
    t.pack("-q", "--no-compile", "--base", base, venv, delta)
    return venv, base, delta


def record(images, mnt, trace, paths, cleanups):
    t.mount(images, mnt, ["-o", f"record={trace}"], cleanups=cleanups)
    for p in paths:
        with open(os.path.join(mnt, p), "rb") as f:
            f.read()
    t.unmount(mnt)
    t.check(t.wait_daemons_gone(mnt), "the recording daemon exits")


def first_block(image, path):
    """Offset of the first stored block of path in image."""
    for ln in t.inspect("extents", image).stdout.splitlines():
        p, blocks, _ = ln.split("\t")
        if p == path:
            return int(blocks.split(",")[0].split("+")[0])
    raise AssertionError(f"{image}: no extents for {path}")


def refused(label, args, want, out, stage):
    """pack ARGS fails in one line naming want, leaving nothing in out
    (where NEW goes) or stage (its --tmpdir)."""
    before = sorted(os.listdir(out))
    r = t.pack("--tmpdir", stage, *args, check=False)
    t.check_error(label, r, want, prefix="sqvenvfs-pack: ")
    t.check(sorted(os.listdir(out)) == before and not os.listdir(stage),
            f"{label}: nothing left behind",
            (os.listdir(out), os.listdir(stage)))


def relayout_delta(tmp, cleanups, out, stage):
    venv, base, delta = make_stack(tmp)
    sp = "lib/python3.11/site-packages"
    lower = [f"{sp}/toml/__init__.py", f"{sp}/toml/decoder.py",
             f"{sp}/toml/encoder.py", f"{sp}/pyflakes/checker.py",
             f"{sp}/pyflakes/messages.py"]
    upper = [f"{sp}/six.py", f"{sp}/newpkg/hot.bin", f"{sp}/newpkg/{NL_NAME}"]
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    trace = os.path.join(tmp, "stack.trace")
    record([base, delta], mnt, trace, lower + upper, cleanups)
    with open(trace) as f:
        t.check(f.read().count("\n") == 2 + len(lower + upper),
                "the trace names every file read, of both layers")

    new = os.path.join(out, "new.sqfs")
    refused("a stack's trace without --base", ["--hot", trace, delta, new],
            ["stack.trace", "3 of 8", "--base"], out, stage)
    refused("a base that is not there",
            ["--hot", trace, "--base", os.path.join(tmp, "nope.sqfs"),
             delta, new], "nope.sqfs: no such image", out, stage)
    r = t.pack("--hot", trace, "--base", base, delta, new, check=False)
    t.check(r.returncode == 0, "--hot TRACE --base BASE DELTA NEW",
            r.stderr.strip())
    # six.py and hot.bin first; the newline's file stays where it is
    t.check("hot: 2 files first (0 not in the image, 0 changed, 5 in the "
            "base, 1 unsortable; ignored)" in r.stdout,
            "the summary counts the base's files and the unsortable one "
            "apart from the files first", r.stdout.strip())
    t.check(t.inspect("dump", "--hash", new).stdout ==
            t.inspect("dump", "--hash", delta).stdout,
            "inspect dump --hash: the re-laid-out delta's tree is the "
            "delta's")
    hot, cold = f"{sp}/newpkg/hot.bin", f"{sp}/newpkg/cold.bin"
    t.check(first_block(delta, cold) < first_block(delta, hot) and
            first_block(new, hot) < first_block(new, cold),
            "the traced file's blocks moved before the untraced one's")
    with t.mounted([base, delta], mnt):
        want = t.dump_tree(mnt)
    with t.mounted([base, new], mnt):
        t.compare_trees(want, t.dump_tree(mnt),
                        "base + re-laid-out delta through sqvenvfs")
        t.check(".sqvenvfs-hot" not in os.listdir(mnt),
                "the record does not show in the stack")

    # a trace of another image is still refused with --base
    other = os.path.join(tmp, "other.trace")
    six = os.path.getsize(os.path.join(t.site_packages(venv), "six.py"))
    with open(other, "w") as f:
        f.write("sqvenvfs-trace 1\n" + "".join(
            f"{sp}/numpy/mod{i}.py\t100\t0+100\n" for i in range(6)) +
            f"{sp}/six.py\t{six}\t0+10\nend 7\n")
    os.unlink(new)
    refused("a trace of another image, with --base",
            ["--hot", other, "--base", base, delta, new],
            ["other.trace", "1 of 7", "another image"], out, stage)


def xattrs_of(image, tmp):
    """{path: {name: value}} of every entry of image that has xattrs, as
    unsquashfs (run as root, so every namespace) writes them; the hot
    record is left out."""
    d = os.path.join(tmp, "xattrs-of")
    shutil.rmtree(d, ignore_errors=True)
    t.run(["unsquashfs", "-q", "-no-progress", "-d", d, image])
    got = {}
    for dirpath, dirnames, filenames, _ in os.fwalk(d):
        for name in [""] + dirnames + filenames:
            p = os.path.join(dirpath, name) if name else dirpath
            rel = "/" + os.path.relpath(p, d) if p != d else "/"
            if rel == "/.sqvenvfs-hot":
                continue
            x = {n: os.getxattr(p, n, follow_symlinks=False)
                 for n in os.listxattr(p, follow_symlinks=False)}
            if x:
                got[rel] = x
    shutil.rmtree(d)
    return got


def xattr_image(tmp, name, trusted):
    """An image made by mksquashfs of a tree with user.* xattrs (a binary
    value, one on the root), and with trusted a security.* one and an
    overlay upper's opaque directory (trusted.overlay.opaque). Returns
    (image, trace naming its hot file)."""
    src = os.path.join(tmp, name + "-src")
    os.makedirs(os.path.join(src, "pkg"))
    for f, data in (("hot.py", "H = 1\n" * 50), ("cold.py", "C = 2\n"),
                    ("pkg/mod.py", "M = 3\n")):
        with open(os.path.join(src, f), "w") as fh:
            fh.write(data)
    os.setxattr(src, "user.root", b"top")
    os.setxattr(os.path.join(src, "hot.py"), "user.mime", b"text/x-python")
    os.setxattr(os.path.join(src, "pkg/mod.py"), "user.bin", b"\0\xff\n\t")
    if trusted:
        os.setxattr(os.path.join(src, "pkg"), "trusted.overlay.opaque", b"y")
        os.setxattr(os.path.join(src, "cold.py"), "security.sqvtest", b"s")
    image = t.mksquashfs(src, os.path.join(tmp, name + ".sqfs"))
    os.chmod(image, 0o644)
    trace = os.path.join(tmp, name + ".trace")
    with open(trace, "w") as f:
        f.write(f"sqvenvfs-trace 1\nhot.py\t{6 * 50}\t0+300\nend 1\n")
    os.chmod(trace, 0o644)
    return image, trace


def relayout_xattrs(tmp, cleanups, out, stage):
    """Re-laying out keeps every xattr; as a user, one the user cannot
    set is refused, not dropped."""
    old, trace = xattr_image(tmp, "xattrs", trusted=True)
    want = xattrs_of(old, tmp)
    t.check({"trusted.overlay.opaque", "security.sqvtest", "user.root",
             "user.mime", "user.bin"} <=
            {n for x in want.values() for n in x},
            "the image made by mksquashfs holds every xattr set", want)
    new = os.path.join(out, "xattrs-new.sqfs")
    r = t.pack("--tmpdir", stage, "--hot", trace, old, new, check=False)
    t.check(r.returncode == 0, "as root: --hot TRACE OLD NEW of an image "
            "with xattrs", r.stderr.strip())
    if r.returncode == 0:
        t.check(xattrs_of(new, tmp) == want,
                "as root: NEW has OLD's xattrs, every namespace (unsquashfs)",
                (want, xattrs_of(new, tmp)))
        mnt = os.path.join(tmp, "xmnt")
        os.mkdir(mnt)
        with t.mounted([new], mnt):
            got = {}
            for f, n in (("hot.py", "user.mime"), ("pkg/mod.py", "user.bin")):
                try:
                    got[n] = os.getxattr(os.path.join(mnt, f), n)
                except OSError as e:
                    got[n] = e.strerror
            t.check(got == {"user.mime": b"text/x-python",
                            "user.bin": b"\0\xff\n\t"},
                    "as root: sqvenvfs serves NEW's user xattrs", got)
        os.unlink(new)

    # a staging file system that takes no xattrs at all (ramfs)
    ram = os.path.join(tmp, "ramfs")
    os.mkdir(ram)
    if t.run(["mount", "-t", "ramfs", "ramfs", ram], check=False).returncode:
        t.log("note: cannot mount ramfs; its case is left out")
    else:
        cleanups.append(lambda: t.run(["umount", "-l", ram], check=False))
        before = sorted(os.listdir(out))
        r = t.pack("--tmpdir", ram, "--hot", trace, old, new, check=False)
        t.check_error("staging on ramfs, an image with xattrs", r,
                      ["xattrs.sqfs: cannot keep the xattr ", "(on /",
                       "in the staging directory"], prefix="sqvenvfs-pack: ")
        t.check(sorted(os.listdir(out)) == before and not os.listdir(ram),
                "staging on ramfs: nothing left behind",
                (os.listdir(out), os.listdir(ram)))

    uid = t.ensure_test_user()
    if uid is None:
        t.log("note: no test user (useradd missing); the user case is "
              "left out")
        return
    uout, ustage = os.path.join(tmp, "uout"), os.path.join(tmp, "ustage")
    for d in (uout, ustage):
        os.mkdir(d)
        os.chown(d, uid, uid)
    unew = os.path.join(uout, "new.sqfs")

    def as_user(*args):
        return t.run(t.as_user([t.PACK, "--tmpdir", ustage, *args], uid),
                     check=False)

    r = as_user("--hot", trace, old, unew)
    t.check_error("as a user, an image with trusted.* and security.* "
                  "xattrs", r, ["xattrs.sqfs: has the xattr ",
                                "which only root can set", "needs root"],
                  prefix="sqvenvfs-pack: ")
    t.check("trusted.overlay.opaque (on /pkg)" in r.stderr or
            "security.sqvtest (on /cold.py)" in r.stderr,
            "as a user: the refusal names the xattr and its path in OLD",
            r.stderr.strip())
    t.check(not os.listdir(uout) and not os.listdir(ustage),
            "as a user, refused: nothing left behind",
            (os.listdir(uout), os.listdir(ustage)))
    uold, utrace = xattr_image(tmp, "user-xattrs", trusted=False)
    r = as_user("--hot", utrace, uold, unew)
    t.check(r.returncode == 0, "as a user: --hot TRACE OLD NEW of an "
            "image with user xattrs", r.stderr.strip())
    if r.returncode == 0:
        uwant = xattrs_of(uold, tmp)
        t.check(uwant and xattrs_of(unew, tmp) == uwant,
                "as a user: NEW has OLD's user xattrs",
                (uwant, xattrs_of(unew, tmp)))


def bad_input(tmp, out, stage):
    src = os.path.join(tmp, "src")
    os.mkdir(src)
    with open(os.path.join(src, "a.py"), "w") as f:
        f.write("A = 1\n")
    image = os.path.join(tmp, "a.sqfs")
    t.mksquashfs(src, image)
    new = os.path.join(out, "bad.sqfs")
    good = os.path.join(tmp, "good.trace")
    with open(good, "w") as f:
        f.write("sqvenvfs-trace 1\na.py\t6\t0+6\nend 1\n")
    missing = os.path.join(tmp, "missing.sqfs")
    refused("an input that does not exist", ["--hot", good, missing, new],
            f"{missing}: no such file or directory", out, stage)
    # Where NEW cannot go is said before the image is read (a re-layout
    # unpacks it first, minutes for a big one): here, OLD is no image.
    nodir = os.path.join(tmp, "nodir")
    refused("NEW in a missing directory", ["--hot", good, good, os.path.join(nodir, "n.sqfs")],
            f"{nodir}: no such directory", out, stage)
    refused("NEW below a file", ["--hot", good, good, os.path.join(good, "n.sqfs")],
            f"{good}: not a directory", out, stage)
    bad = os.path.join(tmp, "bad.trace")
    for line, want in (
            ("a.py\tx\t0+1", "bad size 'x': not a number"),
            ("a.py\t-1\t0+1", "bad size '-1': not a number"),
            ("a.py\t10\t0-4", "bad range '0-4': not OFFSET+LENGTH"),
            ("a.py\t10\t0+4,5", "bad range '5': not OFFSET+LENGTH"),
            ("a.py\t10\t0+4+1", "bad range '0+4+1': not OFFSET+LENGTH"),
            ("a.py\t10\t3+0", "bad range '3+0': empty"),
            ("a.py\t10", "2 tab-separated field(s), expected 3"),
            ("/a.py\t10\t0+1", "bad path '/a.py': must be relative"),
            ("a\\xZZ.py\t10\t0+1", "bad path 'a\\xZZ.py': a backslash"),
            ("end x", "bad 'end' line 'end x': not a count")):
        with open(bad, "w") as f:
            f.write(f"sqvenvfs-trace 1\n{line}\nend 1\n")
        refused(f"trace line {line!r}", ["--hot", bad, image, new],
                f"bad.trace: line 2: {want}", out, stage)


def test(tmp, cleanups):
    t.require_pack_tools()
    t.require_mount_capability()
    out = os.path.join(tmp, "out")
    stage = os.path.join(tmp, "stage")
    os.mkdir(out)
    os.mkdir(stage)
    relayout_delta(tmp, cleanups, out, stage)
    relayout_xattrs(tmp, cleanups, out, stage)
    bad_input(tmp, out, stage)


if __name__ == "__main__":
    t.main(test)
