# SPDX-License-Identifier: BSD-2-Clause
"""--hot: lay an image out hot-first from read traces (docs/tools.md,
"Hot-first images").

A trace (sqvenvfs -o record=FILE) lists the files a workload read, in the
order it first read them, with the byte ranges read. mksquashfs -sort
writes file data by priority, highest first, so the traced files get
priorities in trace order above every other file's 0: their data blocks
come first in the image. Tails of small files go into fragment blocks,
filled in the same order: the hot files' tails fill the first fragments,
written as soon as they are full, among the hot data; only the last,
partly filled hot fragment comes after the first cold blocks. The hot
range recorded in the image covers the blocks that hold what was read.

The record (.sqvenvfs-hot in the root, lib/hot.h) is one block of
incompressible bytes with the lowest priority: mksquashfs stores it
uncompressed, after all other data, so its text can be written into the
finished image in place, without moving a byte of anything else."""

import hashlib
import os
import re
import shutil
import struct
import subprocess
import time

from .delta import BaseRead, check_bases, find_inspect
from .dumpfmt import parse_dump, unescape
from .seal import finish_image, seal_image
from .errors import PackError
from .imagefile import TempImage
from .mksquashfs import (COMPRESSORS, SquashOptions, find_mksquashfs,
                         write_squashfs)
from .out import human
from .stage import make_staging, pick_tmpdir

HOT_NAME = ".sqvenvfs-hot"
HOT_MAGIC = "sqvenvfs-hot 1"
TRACE_MAGIC = "sqvenvfs-trace 1"
MAX_RANGES = 256          # lib/hot.h SQV_HOT_MAX_RANGES
GAP = 256 * 1024          # cold bytes worth reading to save a request
PRIO_TOP = 32767
PRIO_RECORD = -32768


def read_trace(path):
    """[(path bytes, size)] of one trace, in its order."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PackError(f"{path}: {e.strerror}")
    if not data:
        raise PackError(f"{path}: empty file, not a read trace")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise PackError(f"{path}: not a read trace (not text)")
    lines = text.split("\n")
    if lines[0] != TRACE_MAGIC:
        what = "a newer trace format" if lines[0].startswith(
            "sqvenvfs-trace ") else "not a read trace"
        raise PackError(f"{path}: {what} (first line {lines[0][:40]!r}, "
                        f"expected {TRACE_MAGIC!r})")
    if lines[-1] != "":
        raise PackError(f"{path}: truncated (the last line is cut)")
    out = []
    end = None
    for n, ln in enumerate(lines[1:-1], start=2):
        if ln.startswith("#"):
            continue
        if end is not None:
            raise PackError(f"{path}: line {n}: text after the 'end' line")
        if ln.startswith("end "):
            end = number(ln[4:])
            if end is None:
                raise PackError(f"{path}: line {n}: bad 'end' line "
                                f"{ln[:40]!r}: not a count")
            continue
        try:
            name, size, ranges = trace_line(ln)
        except ValueError as e:
            raise PackError(f"{path}: line {n}: {e}")
        out.append((name, size, ranges))
    if end is None:
        raise PackError(f"{path}: truncated (no 'end' line)")
    if end != len(out):
        raise PackError(f"{path}: truncated ('end {end}' but {len(out)} "
                        "files)")
    return out


def number(s):
    """The value of a count or offset written in decimal digits, or None:
    int() would also take signs, blanks and underscores."""
    return int(s) if s.isascii() and s.isdigit() else None


def trace_line(ln):
    """(path bytes, size, [(offset, length)]) of one file line; ValueError
    says what is wrong, in the format's terms (docs/tools.md, "Read
    traces")."""
    def short(s):
        s = s if len(s) <= 40 else s[:37] + "..."
        return f"'{s}'" if s.isprintable() else repr(s)
    f = ln.split("\t")
    if len(f) != 3:
        raise ValueError(f"{len(f)} tab-separated field(s), expected 3 "
                         "(path, size, ranges)")
    if not f[0] or f[0].startswith("/"):
        raise ValueError(f"bad path {short(f[0])}: must be relative to the "
                         "mount's root")
    if re.search(r"\\(?!x[0-9a-fA-F]{2})", f[0]):
        raise ValueError(f"bad path {short(f[0])}: a backslash not "
                         "followed by xHH")
    size = number(f[1])
    if size is None:
        raise ValueError(f"bad size {short(f[1])}: not a number")
    ranges = []
    for r in f[2].split(","):
        a, plus, b = r.partition("+")
        off, length = number(a), number(b)
        if not plus or off is None or length is None:
            raise ValueError(f"bad range {short(r)}: not OFFSET+LENGTH in "
                             "decimal")
        if length == 0:
            raise ValueError(f"bad range {short(r)}: empty")
        ranges.append((off, length))
    return unescape(f[0]), size, ranges


def read_traces(paths):
    """The traces' files, first-touch order of the first trace, then what
    the next ones add; each file once, with the byte ranges of all."""
    seen = {}
    for p in paths:
        for name, size, ranges in read_trace(p):
            if name in seen:
                seen[name][1].extend(ranges)
            else:
                seen[name] = (size, list(ranges))
    if not seen:
        raise PackError(f"{','.join(paths)}: the trace names no file")
    return [(n, size, ranges) for n, (size, ranges) in seen.items()]


class Plan:
    """Which traced files are in the staged tree, and the sort file."""

    def __init__(self, traces, entries):
        self.traces = traces
        self.entries = entries
        self.hot = []            # staged relative paths (bytes), in order
        self.first = []          # those of hot the sort file puts first
        self.missing = 0         # not in the tree
        self.changed = 0         # another size: a stale trace
        self.unsortable = 0      # a newline in the name: -sort cannot say it
        self.in_base = 0         # matched, but in a base image of a delta
        self.ranges = {}         # hot file -> byte ranges the workload read

    def match(self, root, label, left_to_base=(), stack=None,
              why="a trace of another image?"):
        """Keep the traced files that are regular files of root with the
        traced size, or that a delta leaves to its base on purpose
        (left_to_base: base paths such as b"/lib/.../x.pyc"; keep_present
        counts them as in the base). stack, for a delta re-laid out alone:
        the merged tree of its base images and itself (inspect dump), which
        the trace of a stack mount describes; a traced file that root lacks
        and the stack shows as it was traced is a lower layer's, counted
        as in the base. Fails when most of the trace fits neither: a trace
        of another image (why says so in the error)."""
        for name, size, ranges in self.entries:
            if b"/" + name in left_to_base:
                self.hot.append(name)
                self.ranges[name] = ranges
                continue
            p = os.path.join(os.fsencode(root), name)
            try:
                st = os.lstat(p)
            except OSError:
                e = stack.get(b"/" + name) if stack is not None else None
                if e is not None and e.type == "f" and e.size == size:
                    self.in_base += 1
                else:
                    self.missing += 1
                continue
            if not os.path.isfile(p) or os.path.islink(p):
                self.missing += 1
            elif st.st_size != size:
                self.changed += 1
            else:
                self.hot.append(name)
                self.ranges[name] = ranges
        found = len(self.hot) + self.in_base
        if found * 2 < len(self.entries):
            raise PackError(
                f"{','.join(self.traces)}: {found} of "
                f"{len(self.entries)} traced files match {label} "
                f"({why})")

    def keep_present(self, root):
        """After a delta dropped unchanged files: those still staged."""
        kept = [n for n in self.hot
                if os.path.isfile(os.path.join(os.fsencode(root), n))]
        self.in_base += len(self.hot) - len(kept)
        self.hot = kept

    def write_sort(self, root, sort_path, block_size, epoch):
        """The -sort file, and the record's placeholder in root."""
        broot = os.fsencode(os.path.abspath(root))
        rec = os.path.join(broot, HOT_NAME.encode())
        if os.path.lexists(rec):
            raise PackError(f"{HOT_NAME}: the tree already has one in its "
                            "root (a file of this name is reserved)")
        # The root's mtime is part of the tree: adding the record must not
        # change it.
        st = os.stat(broot)
        with open(rec, "wb") as f:
            f.write(placeholder(block_size))
        os.utime(rec, (epoch, epoch))
        os.utime(broot, ns=(st.st_atime_ns, st.st_mtime_ns))
        with open(sort_path, "wb") as f:
            prio = PRIO_TOP
            for name in self.hot:
                if b"\n" in name:
                    self.unsortable += 1
                    continue
                self.first.append(name)
                f.write(sort_escape(os.path.join(broot, name)) +
                        b" %d\n" % prio)
                prio = max(prio - 1, 1)
            f.write(sort_escape(rec) + b" %d\n" % PRIO_RECORD)


def sort_escape(p):
    """mksquashfs's sort file reads a backslash as "take the next byte"."""
    out = bytearray()
    for c in p:
        if c in b" \t\\":
            out.append(0x5C)
        out.append(c)
    return bytes(out)


def placeholder(n):
    """n bytes no compressor shrinks, the same every time (reproducible)."""
    out = bytearray()
    seed = b"sqvenvfs-hot placeholder"
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed + i.to_bytes(8, "little")).digest()
        i += 1
    return bytes(out[:n])


def parse_extents(text):
    """{path bytes: ([block (offset, size, uncompressed)], fragment or
    None)} from inspect extents; blocks in file order, a hole (0, 0)."""
    def one(e):
        a, b = e.rstrip("u").split("+")
        return int(a), int(b), e.endswith("u")
    out = {}
    for ln in text.split("\n"):
        if not ln:
            continue
        path, blocks, frag = ln.split("\t")
        out[unescape(path)] = ([one(e) for e in blocks.split(",")]
                               if blocks != "-" else [],
                               one(frag) if frag != "-" else None)
    return out


def read_extents(blocks, frag, ranges, block_size):
    """The stored blocks (and fragment) that hold the byte ranges read:
    a file read only in part (a library mapped by the loader) brings only
    the blocks that were read into the hot range."""
    out = set()
    for off, n in ranges:
        last = (off + n - 1) // block_size
        for i in range(off // block_size, min(last, len(blocks) - 1) + 1):
            if blocks[i][1]:
                out.add(blocks[i])
        if last >= len(blocks) and frag:
            out.add(frag)
    return out


def ranges_of(extents, gap=GAP, most=MAX_RANGES):
    """Sorted, merged (offset, length) ranges covering extents; gaps of up
    to gap bytes are read through, and more are merged until at most
    `most` ranges remain."""
    spans = sorted({(a, a + n) for a, n, _ in extents})
    merged = []
    for a, b in spans:
        if merged and a <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    while len(merged) > most:
        i = min(range(len(merged) - 1),
                key=lambda k: merged[k + 1][0] - merged[k][1])
        merged[i][1] = merged[i + 1][1]
        del merged[i + 1]
    return [(a, b - a) for a, b in merged]


def write_record(image, inspect, plan, block_size):
    """Find where the hot files went in image and write the record in
    place. Returns (hot files placed first, hot range bytes, number of
    ranges). The range holds what was read of every hot file, also of one
    the sort file could not put first: wherever it lies, it is read."""
    r = subprocess.run([inspect, "extents", image], capture_output=True,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise PackError(f"sqvenvfs-inspect extents: "
                        f"{msg[0] if msg else 'exit %d' % r.returncode}")
    ext = parse_extents(r.stdout.decode("ascii"))
    blocks, frag = ext.get(HOT_NAME.encode(), ([], None))
    if len(blocks) != 1 or frag or not blocks[0][2] or \
            blocks[0][1] != block_size:
        raise PackError(f"{image}: mksquashfs did not store {HOT_NAME} as "
                        "one uncompressed block; cannot record the hot range")
    rec = blocks
    hot = set()
    inside = [n for n in plan.hot if n in ext]
    for n in inside:
        hot |= read_extents(*ext[n], plan.ranges[n], block_size)
    rs = ranges_of(hot)
    text = (f"{HOT_MAGIC}\n# {len(inside)} files, "
            f"{sum(n for _, n, _ in hot)} stored bytes read\n" +
            "".join(f"range {a} {n}\n" for a, n in rs) + "end\n").encode()
    if len(text) > block_size:
        raise PackError(f"{HOT_NAME}: {len(rs)} ranges do not fit one block")
    fd = os.open(image, os.O_WRONLY)
    try:
        os.pwrite(fd, text, rec[0][0])
    finally:
        os.close(fd)
    return (sum(n in ext for n in plan.first), sum(n for _, n in rs),
            len(rs))




def hot_summary(out, plan, hot, where):
    files, nbytes, nranges = hot
    notes = [f"{plan.missing} not in {where}", f"{plan.changed} changed"]
    if plan.in_base:
        notes.append(f"{plan.in_base} in the base")
    if plan.unsortable:
        notes.append(f"{plan.unsortable} unsortable")
    out.info(f"  hot: {files} files first ({', '.join(notes)}; ignored); "
             f"hot range {human(nbytes)} in {nranges} range(s)")


def image_params(path):
    """(compression, level or None, block size, creation time, whether it
    has xattrs) of a squashfs image, from its superblock and compression
    options. It has xattrs when its xattr id table start is not "none"
    (mksquashfs writes the table only when some inode has xattrs)."""
    comps = {1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}
    try:
        with open(path, "rb") as f:
            sb = f.read(96)
            opts = f.read(2 + 64)
    except OSError as e:
        raise PackError(f"{path}: {e.strerror}")
    if len(sb) < 96 or sb[:4] != b"hsqs":
        raise PackError(f"{path}: not a squashfs image")
    (_, _, mtime, block_size, _, comp, _, flags, _, major) = \
        struct.unpack_from("<IIIIIHHHHH", sb)
    if major != 4 or comp not in comps or comps[comp] not in COMPRESSORS:
        raise PackError(f"{path}: a squashfs image this tool cannot write "
                        f"again (version {major}, compression {comp})")
    level = None
    if flags & 0x0400 and comps[comp] in ("zstd", "gzip") and len(opts) >= 6:
        # an uncompressed metadata block: a 2-byte header, then the options,
        # which for both start with the compression level
        level = struct.unpack_from("<i", opts, 2)[0]
    has_xattrs = struct.unpack_from("<Q", sb, 56)[0] != (1 << 64) - 1
    return comps[comp], level, block_size, mtime, has_xattrs


# unsquashfs 4.5.1 on an xattr it cannot set: "write_xattr: could not write
# xattr trusted.x for file DIR/a because you're not superuser!", or "...
# failed to write xattr user.x for file DIR/a because Operation not
# supported" (a staging file system without user xattrs).
UNSQUASHFS_XATTR = re.compile(
    r"write_xattr: .*? xattr (\S+) for file (.*) because (.*?)!?$")


def unsquashfs_failure(shown, root, msg, status):
    """The one line for a failed unpack of image shown into root: an
    xattr that cannot be kept is said in the image's terms."""
    for ln in msg:
        m = UNSQUASHFS_XATTR.search(ln)
        if not m:
            continue
        name, where, why = m.groups()
        if where.startswith(root):
            where = where[len(root):] or "/"
        if "superuser" in why:
            return (f"{shown}: has the xattr {name} (on {where}), which "
                    "only root can set; re-laying it out keeps xattrs, "
                    "which needs root")
        return (f"{shown}: cannot keep the xattr {name} (on {where}) in "
                f"the staging directory: {why}")
    return f"unsquashfs {shown}: {msg[0] if msg else 'exit %d' % status}"


class Relayout:
    """--hot TRACE OLD.sqfs NEW.sqfs: the same tree, hot-first, without the
    venv: unpack OLD, pack it again with OLD's compression, block size,
    creation time, owners and xattrs. With --base, OLD is a delta over those
    images, and the trace may name their files (a stack mount's). Owns
    its staging directory and temporary image, as Pack does; cleanup()
    removes them."""

    def __init__(self, out, args, bindir, plan):
        self.out, self.args, self.bindir, self.plan = out, args, bindir, plan
        self.t0 = time.monotonic()
        self.stage_top = None
        self.tmp = None
        self.stack = None        # BaseRead of --base... OLD, for a delta

    def run(self):
        args = self.args
        old = os.path.abspath(args.venv)
        image = os.path.abspath(args.image)
        if os.path.realpath(old) == os.path.realpath(image):
            raise PackError(f"{args.image}: is also the image to re-lay out")
        self.tmp = TempImage(image, args.image, args.force)
        self.tmp.check()
        check_bases(args.base, image)
        comp, level, block_size, epoch, xattrs = image_params(old)
        mksquashfs = find_mksquashfs()
        unsquashfs = shutil.which("unsquashfs")
        if not unsquashfs:
            raise PackError("unsquashfs: not found (install Debian's "
                            "squashfs-tools)")
        inspect = find_inspect(self.bindir)
        r = subprocess.run([inspect, "dump", old], stdin=subprocess.DEVNULL,
                           capture_output=True)
        if r.returncode != 0:
            msg = r.stderr.decode("utf-8", "replace").strip().splitlines()
            raise PackError(msg[0].split(": ", 1)[-1] if msg else
                            f"{args.venv}: cannot read it")
        owners = {(e.uid, e.gid) for e in
                  parse_dump(r.stdout.decode("ascii")).values()}
        all_root = owners <= {(0, 0)}
        if not all_root and os.geteuid() != 0:
            raise PackError(f"{args.venv}: has files not owned by root; "
                            "re-laying it out keeps owners, which needs root")
        if args.base:
            # OLD is a delta: the trace of its stack's mount names the
            # files of the stack, most of them in the base images
            self.stack = BaseRead(inspect, args.base + [old], hashes=False)
            self.stack.start()
        self.stage_top = make_staging(
            pick_tmpdir(args.tmpdir, 3 * os.path.getsize(old)))
        root = os.path.join(self.stage_top, "root")
        self.out.progress(f"unpacking {args.venv} ...", force=True)
        # Xattrs are part of the tree: kept, or the re-layout fails (with
        # -strict-errors unsquashfs stops at an xattr it cannot write,
        # where it would otherwise drop it and go on). An image without
        # them is unpacked and packed without, as before.
        r = subprocess.run([unsquashfs, "-no-progress", "-strict-errors",
                            "-xattrs" if xattrs else "-no-xattrs", "-d",
                            root, old], stdin=subprocess.DEVNULL,
                           capture_output=True)
        if r.returncode != 0:
            msg = [ln for ln in r.stderr.decode("utf-8", "replace")
                   .splitlines() if ln.strip()]
            raise PackError(unsquashfs_failure(args.venv, root, msg,
                                               r.returncode))
        # Only now the temporary image: an image that cannot be unpacked
        # as it is leaves nothing beside NEW.
        self.tmp.create()
        rec = os.path.join(root, HOT_NAME)
        if os.path.lexists(rec):
            st = os.stat(root)
            os.unlink(rec)  # OLD's own record: replaced below
            os.utime(root, ns=(st.st_atime_ns, st.st_mtime_ns))
        if self.stack is not None:
            self.plan.match(root, args.venv, stack=self.stack.tree(
                self.out, "reading the stack of images"))
        else:
            self.plan.match(root, args.venv, why="a trace of another image? "
                            "for a delta, give its base images with --base")
        sort_file = os.path.join(self.stage_top, "sort")
        self.plan.write_sort(root, sort_file, block_size, epoch)
        self.squash = SquashOptions(comp=comp, level=level,
                                    block_size=block_size, all_root=all_root,
                                    jobs=args.jobs, epoch=epoch,
                                    xattrs=xattrs)
        write_squashfs(self.out, mksquashfs, root, self.tmp.path, self.squash,
                       ["-sort", sort_file])
        finish_image(self.out, inspect, root, self.tmp.path)
        self.hot = write_record(self.tmp.path, inspect, self.plan, block_size)
        # The record was written into the image: digest it afresh.
        seal_image(inspect, self.tmp.path)
        self.size_after = self.tmp.size()
        self.tmp.commit()

    def cleanup(self):
        if self.tmp is not None:
            self.tmp.discard()
        if self.stage_top:
            shutil.rmtree(self.stage_top, ignore_errors=True)
            self.stage_top = None
        if self.stack is not None:
            self.stack.stop()

    def report(self):
        out = self.out
        out.info(f"{out.prog}: {self.args.image}: {self.args.venv} laid out "
                 f"hot-first ({human(self.size_after)}, "
                 f"{self.squash.describe()}) in "
                 f"{time.monotonic() - self.t0:.1f} s")
        hot_summary(out, self.plan, self.hot, "the image")
