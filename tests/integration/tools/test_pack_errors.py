# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs-pack on bad input: one clear line naming the thing and the
reason, a non-zero exit, and nothing left behind: no IMAGE, no temporary
image, no staging directory. Also a run killed midway, and a full disk."""

import os
import re
import signal
import subprocess
import time

import sqvtest as t


def expect_error(args, pattern, env=None, image=None):
    r = t.pack(*args, check=False, env=env)
    t.check_error(f"pack {' '.join(os.path.basename(a) for a in args)}", r,
                  pattern, prefix="sqvenvfs-pack: ")
    if image:
        t.check(not os.path.exists(image), f"{image}: not left behind")
    return r


def leftovers(d):
    return [n for n in os.listdir(d) if ".partial" in n or
            n.startswith("sqvenvfs-pack.")]


def base_read_in_background(tmp, cleanups, venv, stage, junk, img,
                            fast_error):
    """A delta reads the base stack's listing before staging (it decides
    what to copy), and with --checksum the base's contents while the venv
    is staged. Through an inspect whose dump first sleeps SLOW_DUMP seconds
    (one process, the base's path in its command line): a bad base found
    late fails with the same line; a SIGTERM while either read runs ends
    the pack at once; with --checksum a staging error does not wait for
    the read; and nothing is left, no staging directory and no process
    reading the base."""
    slow = os.path.join(tmp, "slow-inspect")
    with open(slow, "w") as f:
        f.write("#!/usr/bin/python3\n"
                "import os, sys, time\n"
                "if sys.argv[1] == 'dump':\n"
                "    time.sleep(float(os.environ['SLOW_DUMP']))\n"
                f"os.execv({t.INSPECT!r}, [{t.INSPECT!r}] + sys.argv[1:])\n")
    os.chmod(slow, 0o755)

    def nothing_left(what):
        t.check(not leftovers(stage) and not os.path.exists(img),
                f"{what}: no staging directory or image left",
                os.listdir(stage))
        t.check(not t.pids_naming(slow), f"{what}: no process reading the "
                "base left", t.pids_naming(slow))

    for mode in ([], ["--checksum"]):
        label = " ".join(["delta"] + mode)
        env = t.clean_env(SQVENVFS_INSPECT=slow, SLOW_DUMP="1")
        r = expect_error(mode + ["--tmpdir", stage, "--base", junk, venv,
                                 img], "junk.sqfs", env=env, image=img)
        t.check(r.stderr == fast_error, f"{label}: a bad base read late: "
                "the same line", (r.stderr, fast_error))
        nothing_left(f"{label}: a bad base read late")

        env = t.clean_env(SQVENVFS_INSPECT=slow, SLOW_DUMP="600")
        p = subprocess.Popen([t.PACK] + mode + ["--tmpdir", stage, "--base",
                                                junk, venv, img],
                             env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
        cleanups.append(lambda p=p: p.poll() is None and
                        os.killpg(p.pid, signal.SIGKILL))
        # the slow dump runs (pack's own command line names the base too)
        t.wait_for(lambda: t.pids_naming(slow) or p.poll() is not None)
        p.send_signal(signal.SIGTERM)
        o, e = p.communicate(timeout=t.DEADLINE)
        t.check(p.returncode == 128 + signal.SIGTERM and "interrupted" in e,
                f"{label}: SIGTERM while the base is read: interrupted at "
                "once", (p.returncode, e))
        nothing_left(f"{label}: SIGTERM while the base is read")

    wh = os.path.join(t.site_packages(venv), ".wh.sneaky")
    open(wh, "w").close()
    t0 = time.monotonic()
    expect_error(["--checksum", "--tmpdir", stage, "--base", junk, venv,
                  img], ".wh.sneaky", env=env, image=img)
    os.unlink(wh)
    t.check(time.monotonic() - t0 < t.DEADLINE, "--checksum: a staging "
            "error does not wait for the base read")
    nothing_left("--checksum: a staging error while the base is read")


def test(tmp, cleanups):
    t.require_pack_tools()
    venv = t.make_venv(os.path.join(tmp, "venv"))
    out = os.path.join(tmp, "out")
    os.mkdir(out)
    stage = os.path.join(tmp, "stage")
    os.mkdir(stage)
    img = os.path.join(out, "v.sqfs")

    # not a venv, not a directory, missing
    plain = os.path.join(tmp, "plain")
    os.mkdir(plain)
    expect_error([plain, img], "not a Python venv (no pyvenv.cfg) nor a "
                 "conda prefix (no conda-meta/)", image=img)
    expect_error([os.path.join(tmp, "nope"), img], "no such directory",
                 image=img)
    expect_error([os.path.join(venv, "pyvenv.cfg"), img], "not a directory",
                 image=img)

    # bad options
    expect_error(["--block-size", "3K", venv, img], "power of two", image=img)
    expect_error(["--optimize", "3", venv, img], "--optimize 3", image=img)
    expect_error(["--comp", "lz4", "--level", "3", venv, img],
                 "not supported with lz4", image=img)
    expect_error([venv, os.path.join(venv, "x.sqfs")], "must not be inside",
                 image=img)

    # no mksquashfs
    empty = os.path.join(tmp, "emptybin")
    os.mkdir(empty)
    expect_error([venv, img], "mksquashfs: not found",
                 env=t.clean_env(PATH=empty), image=img)

    # a name the layer format reserves
    wh = os.path.join(t.site_packages(venv), ".wh.sneaky")
    open(wh, "w").close()
    expect_error(["--tmpdir", stage, venv, img], ".wh.sneaky", image=img)
    os.unlink(wh)
    t.check(not leftovers(stage) and not leftovers(out),
            "no staging directory or temporary image left",
            (os.listdir(stage), os.listdir(out)))

    # a venv whose interpreter cannot run: refused, --no-compile packs it
    broken = t.make_venv(os.path.join(tmp, "broken"), pkgs=("toml",))
    for n in ("python", "python3", "python3.11"):
        os.unlink(os.path.join(broken, "bin", n))
        os.symlink("/nonexistent/python3", os.path.join(broken, "bin", n))
    expect_error([broken, img], "use --no-compile", image=img)
    t.pack("--no-compile", broken, img)
    r = t.inspect(img)
    t.check(re.search(r"without \.pyc: (\d+) of \1 modules", r.stdout),
            "--no-compile: inspect counts every module without a .pyc",
            r.stdout)
    os.unlink(img)

    # a module this Python cannot compile: a warning, and inspect counts it
    with open(os.path.join(t.site_packages(venv), "py2only.py"), "w") as f:
        f.write('print "python 2"\n')
    r = t.pack(venv, img)
    t.check("1 file(s) could not be byte-compiled" in r.stderr and
            "py2only.py" in r.stderr,
            "a module that does not compile: a warning naming it", r.stderr)
    r = t.inspect(img)
    t.check(re.search(r"without \.pyc: 1 of \d+ modules", r.stdout) and
            "/py2only.py" in r.stdout,
            "inspect counts and names the module without a .pyc", r.stdout)
    os.unlink(img)
    os.unlink(os.path.join(t.site_packages(venv), "py2only.py"))

    # --checksum is about the base images: refused without one
    expect_error(["--checksum", venv, img], "--checksum: compares with base "
                 "images, and none was given", image=img)

    # a base that is not an image
    junk = os.path.join(tmp, "junk.sqfs")
    with open(junk, "wb") as f:
        f.write(b"not squashfs" * 100)
    fast = expect_error(["--base", junk, venv, img], "junk.sqfs", image=img)
    base_read_in_background(tmp, cleanups, venv, stage, junk, img,
                            fast.stderr)

    # output exists: refused and untouched; --force replaces it
    with open(img, "w") as f:
        f.write("precious")
    expect_error([venv, img], "exists (use --force")
    t.check(open(img).read() == "precious",
            "an existing IMAGE is left as it was without --force")
    t.pack("--force", venv, img)
    t.inspect("verify", img)
    os.unlink(img)

    # an output directory this user cannot write
    ro = os.path.join(tmp, "ro")
    os.mkdir(ro, 0o555)
    if os.geteuid() == 0:
        # root writes anywhere: run as nobody instead
        t.require(t.run(["setpriv", "--help"], check=False).returncode == 0,
                  "setpriv missing")
        r = t.run(["setpriv", "--reuid=65534", "--regid=65534",
                   "--clear-groups", t.PACK, venv, os.path.join(ro, "v.sqfs")],
                  check=False)
    else:
        r = t.pack(venv, os.path.join(ro, "v.sqfs"), check=False)
    t.check(r.returncode == 1 and r.stderr.strip() ==
            f"sqvenvfs-pack: {ro}: cannot write: Permission denied",
            "a read-only output directory: one line, exit 1", r)
    t.check(os.listdir(ro) == [], "nothing written there", os.listdir(ro))

    # killed midway: mksquashfs has written its output, then hangs; the
    # test stops pack there with SIGTERM, SIGINT and SIGKILL
    marker = os.path.join(tmp, "marker")
    fake = os.path.join(tmp, "slow-mksquashfs")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\n"
                f"mksquashfs \"$@\" >/dev/null 2>&1 || exit 1\n"
                f"touch '{marker}'\n"
                "exec sleep 600\n")
    os.chmod(fake, 0o755)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        if os.path.exists(marker):
            os.unlink(marker)
        env = t.clean_env(SQVENVFS_MKSQUASHFS=fake)
        p = subprocess.Popen([t.PACK, "--tmpdir", stage, venv, img], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        cleanups.append(lambda p=p: (p.poll() is None and
                                     os.killpg(p.pid, signal.SIGKILL)))
        t.wait_for(lambda: os.path.exists(marker) or p.poll() is not None)
        if not os.path.exists(marker):
            raise AssertionError(
                f"{sig.name}: pack never reached mksquashfs in "
                f"{t.DEADLINE:.0f} s" + (f" (it exited: {p.communicate()})"
                                          if p.poll() is not None else ""))
        t.check([n for n in os.listdir(out) if n.endswith(".partial")],
                f"{sig.name}: a temporary image while mksquashfs runs",
                os.listdir(out))
        p.send_signal(sig)
        o, e = p.communicate(timeout=t.DEADLINE)
        t.check(p.returncode in (128 + sig, -sig),
                f"{sig.name}: pack dies of it", (p.returncode, e))
        t.check(not os.path.exists(img), f"{sig.name}: no partial IMAGE")
        if sig != signal.SIGKILL:
            t.check("interrupted" in e, f"{sig.name}: says interrupted", e)
            t.check(not leftovers(out) and not leftovers(stage),
                    f"{sig.name}: no temporary image or staging left",
                    (os.listdir(out), os.listdir(stage)))
        else:
            os.killpg(p.pid, signal.SIGKILL)    # the orphaned fake
            for n in leftovers(out):
                os.unlink(os.path.join(out, n))
            t.run(["rm", "-rf"] + [os.path.join(stage, n)
                                   for n in leftovers(stage)])

    # a full disk: a small tmpfs as the output directory (root only)
    if os.geteuid() == 0:
        small = os.path.join(tmp, "small")
        os.mkdir(small)
        t.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", small])
        cleanups.append(lambda: t.run(["umount", small]))
        with open(os.path.join(t.site_packages(venv), "big.bin"), "wb") as f:
            f.write(os.urandom(512 * 1024))
        r = t.pack("--tmpdir", stage, venv, os.path.join(small, "v.sqfs"),
                   check=False)
        t.check(r.returncode == 1 and
                r.stderr.startswith("sqvenvfs-pack: mksquashfs: "),
                "a full disk: mksquashfs's error, exit 1", r)
        t.check(os.listdir(small) == [] and not leftovers(stage),
                "a full disk: nothing left behind",
                (os.listdir(small), os.listdir(stage)))


if __name__ == "__main__":
    t.main(test)
