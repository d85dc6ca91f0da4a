# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs-pack --hot's bad input (docs/tools.md, "Laying out"): a
missing input and malformed traces give one line in the trace's terms,
and leave nothing behind.
test_hot.py tests the workflow on a single image and the prefetch."""

import os

import sqvtest as t

def refused(label, args, want, out, stage):
    """pack ARGS fails in one line naming want, leaving nothing in out
    (where NEW goes) or stage (its --tmpdir)."""
    before = sorted(os.listdir(out))
    r = t.pack("--tmpdir", stage, *args, check=False)
    t.check_error(label, r, want, prefix="sqvenvfs-pack: ")
    t.check(sorted(os.listdir(out)) == before and not os.listdir(stage),
            f"{label}: nothing left behind",
            (os.listdir(out), os.listdir(stage)))


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
    out = os.path.join(tmp, "out")
    stage = os.path.join(tmp, "stage")
    os.mkdir(out)
    os.mkdir(stage)
    bad_input(tmp, out, stage)


if __name__ == "__main__":
    t.main(test)
