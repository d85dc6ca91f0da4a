# SPDX-License-Identifier: BSD-2-Clause
"""The benchmark's edit row: sqvenvfs-edit adds one small wheel (a few
dozen files) to the packed bench venv, against a full sqvenvfs-pack of the
same venv in the same run.

Measured: the edit end to end (mount, pip, pack) and the full pack, and
their ratio; the delta's size against the change packed alone (the files
`pip install --target` writes for the same wheel, packed with the same
mksquashfs options); the disk the edit wrote in its work directory (kept
with --keep-work, summed in allocated blocks) against the size of the
change; what it created beside the images (the directory's new entries)
and the change in that file system's used inodes (other processes on the
machine count too: a sign, not a proof)."""

import os
import shutil
import subprocess
import time

WHEEL_MODULES = 24      # with their pycs, __init__, metadata: < 50 files
SETUP = """from setuptools import setup
setup(name="sqvbench_tiny", version="1.0", packages=["sqvbench_tiny"],
      entry_points={"console_scripts": ["sqvbench-tiny=sqvbench_tiny:main"]})
"""


def run_checked(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]}: exit {r.returncode}: "
                           f"{(r.stderr or r.stdout).strip()[-400:]}")
    return r


def tool_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_ROOT_USER_ACTION="ignore")
    return env


def write_modules(pkg):
    """The small package's modules into directory pkg: an __init__.py and
    WHEEL_MODULES others (also the bench's pack rows' small package)."""
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write("def main():\n    return 0\n")
    for i in range(WHEEL_MODULES):
        with open(os.path.join(pkg, f"m{i}.py"), "w") as f:
            f.write("".join(f"def f{j}(x):\n    return x * {j} + {i}\n\n"
                            for j in range(40)))
    return WHEEL_MODULES + 1


def build_wheel(d, python):
    src = os.path.join(d, "src")
    pkg = os.path.join(src, "sqvbench_tiny")
    os.makedirs(pkg)
    with open(os.path.join(src, "setup.py"), "w") as f:
        f.write(SETUP)
    write_modules(pkg)
    wheels = os.path.join(d, "wheels")
    run_checked([python, "-m", "pip", "wheel", "--no-index", "--no-deps",
                 "--no-build-isolation", "-q", "-w", wheels, src],
                env=tool_env())
    return os.path.join(wheels, os.listdir(wheels)[0])


def allocated(root):
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [""] + dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
            except OSError:
                pass
    return total


def tree_files(root):
    return sum(len(f) + len(d) for _, d, f in os.walk(root))


def edit_row(builddir, venv, work, python, mksquashfs, log):
    tools = os.path.join(builddir, "tools")
    pack, edit = (os.path.join(tools, n) for n in ("sqvenvfs-pack",
                                                   "sqvenvfs-edit"))
    d = os.path.join(work, "edit")
    shutil.rmtree(d, ignore_errors=True)
    images = os.path.join(d, "images")
    os.makedirs(images)
    # node-local storage for the change, as on a compute node
    local = "/dev/shm" if os.access("/dev/shm", os.W_OK) else d
    ework = os.path.join(local, f"sqvbench-edit-{os.getpid()}")
    os.makedirs(ework)
    row = {"row": "sqvenvfs-edit", "errors": {}}
    try:
        wheel = build_wheel(d, python)
        base = os.path.join(images, "base.sqfs")
        log("edit: full sqvenvfs-pack of the venv")
        t0 = time.perf_counter()
        run_checked([pack, "-q", venv, base], env=tool_env())
        row["pack_s"] = time.perf_counter() - t0
        row["base_bytes"] = os.path.getsize(base)

        target = os.path.join(d, "change")
        run_checked([python, "-m", "pip", "install", "-q", "--no-index",
                     "--no-deps", "--no-compile", "--target", target, wheel],
                    env=tool_env())
        row["change_files"] = tree_files(target)
        row["change_bytes"] = allocated(target)
        cimg = os.path.join(d, "change.sqfs")
        mksquashfs(target, cimg)
        row["change_packed_bytes"] = os.path.getsize(cimg)

        log("edit: sqvenvfs-edit ... -- pip install the wheel")
        before = set(os.listdir(images))
        st0 = os.statvfs(images)
        delta = os.path.join(images, "delta.sqfs")
        t0 = time.perf_counter()
        r = run_checked([edit, "--keep-work", "--work", ework, base, delta,
                         "--", "pip", "install", "-q", "--no-index",
                         "--no-deps", wheel], env=tool_env())
        row["edit_s"] = time.perf_counter() - t0
        st1 = os.statvfs(images)
        row["overlay"] = next((l.split("overlay:", 1)[1].strip()
                               for l in r.stdout.splitlines()
                               if l.strip().startswith("overlay:")), None)
        row["delta_bytes"] = os.path.getsize(delta)
        row["created_beside_images"] = sorted(set(os.listdir(images)) - before)
        row["image_fs_inodes_used"] = st0.f_ffree - st1.f_ffree
        row["work_written_bytes"] = allocated(ework)
        row["ratio"] = row["edit_s"] / row["pack_s"]
    except (RuntimeError, OSError) as e:
        row["errors"]["edit"] = str(e)
    finally:
        shutil.rmtree(ework, ignore_errors=True)
        shutil.rmtree(d, ignore_errors=True)
    return row


def edit_targets(row, add, fmt):
    if not row:
        return
    e = row.get("edit_s")
    add("edit: add one small wheel, end to end", f"{fmt(e)} s", "≤ 5 s",
        e is not None and e <= 5,
        f"full sqvenvfs-pack {fmt(row.get('pack_s'))} s, ratio "
        f"{fmt(row.get('ratio'), 'x')}; {row.get('change_files')} files; "
        f"{row.get('overlay')}")
    db, cp = row.get("delta_bytes"), row.get("change_packed_bytes")
    add("edit: delta size", f"{fmt(db, 'n')} B",
        f"≤ change packed + 64 KiB = {fmt(cp + 65536 if cp else None, 'n')} B",
        db is not None and cp is not None and db <= cp + 65536,
        f"change packed alone {fmt(cp, 'n')} B")
    w, c = row.get("work_written_bytes"), row.get("change_bytes")
    add("edit: disk written in the work directory", f"{fmt(w, 'n')} B",
        f"≤ change + 10 MiB = {fmt(c + (10 << 20) if c else None, 'n')} B",
        w is not None and c is not None and w <= c + (10 << 20),
        f"change {fmt(c, 'n')} B (pip --target, no pycs)")
    cr = row.get("created_beside_images")
    add("edit: created on the images' file system", str(cr), "['delta.sqfs']",
        cr == ["delta.sqfs"],
        f"used inodes of that file system changed by "
        f"{row.get('image_fs_inodes_used')} (whole machine)")


def edit_check(row):
    """The smoke's verdict on the row: there, and every value measured."""
    if row is None:
        return ["edit: row missing"]
    problems = [f"edit: {k}: {e}" for k, e in row.get("errors", {}).items()]
    for k in ("pack_s", "edit_s", "ratio", "delta_bytes",
              "change_packed_bytes", "work_written_bytes",
              "created_beside_images"):
        if row.get(k) is None:
            problems.append(f"edit: {k} missing")
    return problems
