# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs-inspect without mounting: dump agrees with the source tree path
by path (odd names included), ls/stat/cat show what is there, info reports
the image, its Python, missing pycs, relocation problems, whiteouts and
whether a stack resolves, and verify finds a damaged file by name."""

import os
import re
import stat

import sqvtest as t


def esc(b):
    return "".join(chr(c) if 0x20 <= c <= 0x7E and c != 0x5C else
                   "\\x%02x" % c for c in b)


def source_dump(root):
    lines = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        dirnames.sort()
        top = [b""] if dirpath == os.fsencode(root) else []
        for n in top + dirnames + filenames:
            p = os.path.join(dirpath, n) if n else dirpath
            rel = b"/" + os.path.relpath(p, os.fsencode(root)) \
                if p != os.fsencode(root) else b"/"
            st = os.lstat(p)
            m = st.st_mode
            kind = ("f" if stat.S_ISREG(m) else "d" if stat.S_ISDIR(m) else
                    "l" if stat.S_ISLNK(m) else "p")
            size = st.st_size if kind in "fl" else 0
            target = esc(os.readlink(p)) if kind == "l" else ""
            h = t.sha256(p) if kind == "f" else "-"
            lines.append("\t".join([esc(rel), kind, "%o" % stat.S_IMODE(m),
                                    "0", "0", str(size),
                                    str(int(st.st_mtime)), target, h]))
    return sorted(lines)


def test(tmp, cleanups):
    t.require_pack_tools()

    # a tree with odd names, links, empty and multi-block files
    src = os.path.join(tmp, "src")
    os.makedirs(os.path.join(src, "dir with space", "sub"))
    odd = [b"tab\there", b"new\nline", b"back\\slash", "é-utf8".encode(),
           b"\xff-latin1"]
    for n in odd:
        with open(os.path.join(os.fsencode(src), b"dir with space", n),
                  "wb") as f:
            f.write(n * 3)
    with open(os.path.join(src, "big.txt"), "w") as f:
        for i in range(200000):
            f.write(f"line {i} of a file that spans several blocks\n")
    open(os.path.join(src, "empty"), "w").close()
    os.symlink("big.txt", os.path.join(src, "link"))
    os.symlink("dir with space/sub/../../big.txt", os.path.join(src, "deep"))
    os.symlink("/usr/bin/python3", os.path.join(src, "abs"))
    os.chmod(os.path.join(src, "empty"), 0o4751)
    image = os.path.join(tmp, "tree.sqfs")
    t.run(["mksquashfs", src, image, "-all-root", "-no-xattrs",
           "-comp", "zstd", "-Xcompression-level", "3", "-quiet",
           "-no-progress", "-noappend", "-no-recovery"])

    r = t.inspect("dump", "--hash", image)
    got = sorted(r.stdout.splitlines())
    want = source_dump(src)
    t.check(got == want, "dump --hash agrees with the source tree path by "
            "path", "differs:\n" + "\n".join(sorted(set(got) ^ set(want))))

    r = t.inspect("ls", image, "/")
    t.check(r.stdout.split("\n")[:6] == ["abs", "big.txt", "deep",
                                         "dir with space", "empty", "link"],
            "ls lists the root in order", r.stdout)
    r = t.inspect("ls", "-l", image, "/link")
    t.check(re.match(r"lrwxrwxrwx +1 +0 +0 +7 \S+ \S+ link -> big.txt\n$",
                     r.stdout), "ls -l shows a symlink and its target",
            r.stdout)
    r = t.inspect("stat", image, "/empty")
    t.check("Mode: 4751 (-rwsr-x--x)" in r.stdout,
            "stat shows a setuid mode", r.stdout)
    t.check("Type: regular file" in r.stdout and "Size: 0" in r.stdout,
            "stat shows the type and size of an empty file", r.stdout)
    r = t.inspect("cat", image, "/deep", text=False)
    t.check(r.stdout == open(os.path.join(src, "big.txt"), "rb").read(),
            "cat through a relative symlink gives the multi-block file")
    r = t.inspect("cat", image, "/dir with space/back\\slash", text=False)
    t.check(r.stdout == b"back\\slash" * 3, "cat of a name with a backslash",
            r.stdout[:100])
    for args, msg in ((["cat", image, "/nope"], "/nope: no such path"),
                      (["cat", image, "/abs"], "outside the image"),
                      (["cat", image, "/dir with space"],
                       "not a regular file"),
                      (["ls", image, "/big.txt/x"], "/big.txt/x: "),
                      (["info", os.path.join(tmp, "missing.sqfs")],
                       "missing.sqfs: No such file"),
                      (["info", src], "is a directory"),
                      (["dump", "--bogus", image], "--bogus: unknown option")):
        r = t.inspect(*args, check=False)
        t.check(r.returncode != 0 and msg in r.stderr,
                f"inspect {' '.join(args[:1] + args[2:])}: fails naming "
                f"{msg!r}", (r.returncode, r.stderr))

    # verify: fine, then damaged in the middle of big.txt's first block
    r = t.inspect("verify", image)
    t.check("ok:" in r.stdout, "verify: an intact image is ok", r.stdout)
    bad = os.path.join(tmp, "bad.sqfs")
    data = bytearray(open(image, "rb").read())
    data[2048:2048 + 512] = b"\xa5" * 512
    open(bad, "wb").write(data)
    r = t.inspect("verify", image, bad, check=False)
    t.check(r.returncode == 1, "verify of a damaged image exits 1", r)
    t.check(re.search(r"bad\.sqfs: /big\.txt: damaged at offset 0",
                      r.stderr),
            "verify names the damaged file and offset", r.stderr)
    t.check(f"{image}: ok:" in r.stdout,
            "verify still says ok for the intact image beside it", r.stdout)
    trunc = os.path.join(tmp, "trunc.sqfs")
    open(trunc, "wb").write(data[:len(data) // 2])
    r = t.inspect("verify", trunc, check=False)
    t.check(r.returncode == 1 and len(r.stderr.splitlines()) == 1,
            "verify of a truncated image: one line, exit 1", r)

    # info on a venv squashed by hand: no pycs, pinned to its path
    venv = t.make_venv(os.path.join(tmp, "venv"))
    raw = os.path.join(tmp, "raw.sqfs")
    t.run(["mksquashfs", venv, raw, "-quiet", "-no-progress", "-noappend"])
    r = t.inspect(raw)
    t.check("python:       3.11.2" in r.stdout,
            "info reports the venv's Python", r.stdout)
    m = re.search(r"without \.pyc: (\d+) of (\d+) modules", r.stdout)
    t.check(m and m.group(1) == m.group(2) and int(m.group(1)) > 5,
            "info counts every module as without a .pyc", r.stdout)
    t.check("/bin/whereami: absolute shebang #!" + venv in r.stdout,
            "info reports the absolute shebang", r.stdout)
    t.check("/bin/activate: sets a fixed VIRTUAL_ENV" in r.stdout,
            "info reports activate's fixed VIRTUAL_ENV", r.stdout)
    t.check(re.search(r"compression:\s+gzip", r.stdout),
            "info reports the compression", r.stdout)

    # a stack: a layer with a whiteout that hides something, one that hides
    # nothing, and an opaque directory
    up = os.path.join(tmp, "up")
    os.makedirs(os.path.join(up, "dir with space"))
    open(os.path.join(up, ".wh.big.txt"), "w").close()
    open(os.path.join(up, ".wh.ghost"), "w").close()
    open(os.path.join(up, "dir with space", ".wh..wh..opq"), "w").close()
    open(os.path.join(up, "dir with space", "new"), "w").close()
    upimg = os.path.join(tmp, "up.sqfs")
    t.run(["mksquashfs", up, upimg, "-quiet", "-no-progress", "-noappend"])
    r = t.inspect(image, upimg)
    t.check("whiteouts:    2 (and 1 opaque" in r.stdout,
            "info of a stack counts whiteouts and opaque directories",
            r.stdout)
    t.check("resolves:     yes" in r.stdout, "the stack resolves", r.stdout)
    t.check("dangling:     /.wh.ghost hides nothing below" in r.stdout,
            "info names a whiteout that hides nothing", r.stdout)
    r = t.inspect("ls", image, upimg, "/")
    t.check("big.txt" not in r.stdout.split() and
            ".wh.ghost" not in r.stdout,
            "ls of the stack: the whited-out file and the whiteouts are "
            "hidden", r.stdout)
    r = t.inspect("ls", image, upimg, "/dir with space")
    t.check(r.stdout.split() == ["new"],
            "ls of an opaque directory shows the top layer only", r.stdout)
    r = t.inspect("ls", "--raw", upimg, "/")
    t.check(".wh.ghost" in r.stdout.split(), "ls --raw shows whiteouts",
            r.stdout)
    # --raw of a stack: whiteouts and opaque markers are plain entries and
    # hide nothing, in a subdirectory as at the root: every layer's entries
    r = t.inspect("ls", "--raw", image, upimg, "/")
    t.check({"big.txt", ".wh.big.txt", ".wh.ghost"} <= set(r.stdout.split()),
            "ls --raw of a stack: the root shows both layers and the "
            "whiteouts", r.stdout)
    r = t.inspect("ls", "--raw", image, upimg, "/dir with space")
    t.check({".wh..wh..opq", "new", "sub"} <= set(r.stdout.split()),
            "ls --raw of a stack: an opaque subdirectory shows the marker, "
            "the top layer's entries and the lower layer's", r.stdout)
    r = t.inspect("dump", "--raw", image, upimg)
    paths = {line.split("\t")[0] for line in r.stdout.splitlines()}
    want = {"/dir with space/.wh..wh..opq", "/dir with space/new",
            "/dir with space/sub", "/dir with space/tab\\x09here", "/big.txt",
            "/.wh.big.txt"}
    t.check(want <= paths, "dump --raw of a stack: every layer's paths, "
            f"below the root too (missing {sorted(want - paths)})")
    r = t.inspect("stat", "--raw", image, upimg, "/dir with space/sub",
                  check=False)
    t.check(r.returncode == 0 and "Layer: 0" in r.stdout,
            "stat --raw of a stack: a lower layer's subdirectory below an "
            "upper one is found", r.stdout + r.stderr)
    r = t.inspect("stat", image, upimg, "/dir with space/new")
    t.check(re.search(r"Layer: 1 \(.*up\.sqfs\)", r.stdout),
            "stat in a stack names the layer", r.stdout)


if __name__ == "__main__":
    t.main(test)
