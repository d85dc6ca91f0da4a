# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs-pack's command line: options, their checks, and how a run
ends (exit codes, the last message, cleanup after errors and signals)."""

import argparse
import os
import re
import signal

from . import VERSION
from .errors import (Interrupted, PackError, UsageError, ignore_signals,
                     trap_signals)
from .mksquashfs import COMPRESSORS, check_level
from .hot import Plan, Relayout, read_traces
from .out import Out
from .pack import Pack

PROG = "sqvenvfs-pack"


# docs/sizes.md: the one size grammar of sqvenvfs (lib/base/size.c in C)
SIZE_RE = re.compile(r"([0-9]+)(?:([KMGT])(I)?(B)?)?", re.IGNORECASE)


def parse_size(s):
    m = SIZE_RE.fullmatch(s)
    n = int(m.group(1)) * 1024 ** ("KMGT".index(m.group(2).upper()) + 1) \
        if m and m.group(2) else int(m.group(1)) if m else -1
    if n < 0 or n >= 1 << 64:
        raise UsageError(f"--block-size {s}: not a size (digits and K, M, "
                        "G or T, e.g. 128K, 1M; see docs/sizes.md)")
    if n < 4096 or n > (1 << 20) or n & (n - 1):
        raise UsageError(f"--block-size {s}: must be a power of two "
                        "from 4K to 1M")
    return n


def parse_levels(s):
    try:
        levels = sorted({int(x) for x in s.split(",") if x != ""})
    except ValueError:
        levels = []
    if not levels or any(x not in (0, 1, 2) for x in levels):
        raise UsageError(f"--optimize {s}: give levels among 0,1,2 "
                        "(for example 0 or 0,1,2)")
    return levels


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line, "PROG: what: why (see --help)",
    and exits with the tool's usage status (argparse's own: the usage
    text and 2), as the tools' own checks of values do."""

    def __init__(self, *a, usage_status=2, **kw):
        super().__init__(*a, **kw)
        self.usage_status = usage_status

    def error(self, message):
        self.exit(self.usage_status,
                  f"{self.prog}: {message} (see --help)\n")


def add_image_options(ap, output):
    """The options of how an image is made, shared by the tools that write
    one (output: what the tool calls the image it writes)."""
    ap.add_argument("--comp", choices=COMPRESSORS, default="zstd",
                    help="compressor (default zstd)")
    ap.add_argument("--level", type=int, default=None,
                    help="compression level (zstd 1-22, default 3; "
                         "gzip 1-9)")
    ap.add_argument("--block-size", default="128K",
                    help="data block size, 4K to 1M (default 128K)")
    ap.add_argument("--optimize", default="0", metavar="LEVELS",
                    help="byte-compile for these optimisation levels, "
                         "e.g. 0,1,2 (default 0)")
    ap.add_argument("--no-compile", action="store_true",
                    help="do not byte-compile")
    ap.add_argument("--mount-point", metavar="PATH",
                    help="where the image will usually be mounted: the path "
                         "recorded in pycs (default: paths relative to the "
                         "venv, so pycs do not depend on where it was made)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                    help="parallel processes (default: number of CPUs)")
    ap.add_argument("-f", "--force", action="store_true",
                    help=f"replace {output} if it exists")
    ap.add_argument("-q", "--quiet", action="store_true",
                    help="print only warnings and errors")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="list every file rewritten or added")


def parser():
    ap = Parser(
        prog=PROG,
        description="Pack a Python venv (or conda prefix) into a squashfs "
                    "image that works mounted at any path; with --base, "
                    "write only what differs from a stack of base images.")
    ap.add_argument("venv", metavar="VENV_DIR",
                    help="the venv; with --hot, may be an image instead "
                         "(OLD.sqfs NEW.sqfs: re-lay it out)")
    ap.add_argument("image", metavar="IMAGE")
    ap.add_argument("--hot", metavar="TRACE[,TRACE...]",
                    help="write the files these read traces (sqvenvfs -o "
                         "record=) name first, and record the hot range "
                         "that the daemon prefetches")
    ap.add_argument("--base", action="append", default=[], metavar="IMAGE",
                    help="base image (repeat, bottom first): write a delta; "
                         "with --hot and an image to re-lay out: the images "
                         "that delta lies on")
    ap.add_argument("--checksum", action="store_true",
                    help="with --base: compare every file with the base's "
                         "by content, not by size and mtime")
    add_image_options(ap, "IMAGE")
    ap.add_argument("--strict", action="store_true",
                    help="refuse what would not work elsewhere (editable "
                         "installs) instead of warning")
    ap.add_argument("--keep-owner", action="store_true",
                    help="keep file owners (default: all owned by root)")
    ap.add_argument("--tmpdir", metavar="DIR",
                    help="staging directory (default TMPDIR, or /dev/shm "
                         "when it has room)")
    ap.add_argument("-V", "--version", action="version",
                    version=f"{PROG} {VERSION}")
    return ap


def check_options(args):
    """Turn option strings into values; one line on the first bad one."""
    args.block_size = parse_size(args.block_size)
    args.levels = parse_levels(args.optimize)
    args.level = check_level(args.comp, args.level)
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: must be at least 1")
    # pycs record it as their source's directory: a relative one would name
    # a place that depends on the importer's working directory
    if args.mount_point is not None and not os.path.isabs(args.mount_point):
        raise UsageError(f"--mount-point {args.mount_point}: not an absolute "
                         "path")
    if getattr(args, "checksum", False) and not args.base:
        raise UsageError("--checksum: compares with base images, and "
                         "none was given (--base IMAGE)")


# How to pack a venv: an image re-laid out keeps its own compression, block
# size and pycs, and has no editable installs to check, so these cannot
# apply to it. (--keep-owner can stay: re-laying out keeps owners anyway.)
VENV_ONLY = ("checksum", "comp", "level", "block_size", "optimize",
             "no_compile", "mount_point", "strict")


def given_options(argv, dests):
    """The dests among these that argv sets itself, to the default value
    or not: parsed again with every default None."""
    ap = parser()
    ap.set_defaults(**{d: None for d in dests})
    args = ap.parse_args(argv)
    return [d for d in dests if getattr(args, d) is not None]


def check_relayout_options(argv, args):
    """With --hot and an image: refuse the options only a venv takes."""
    if not args.hot or not os.path.isfile(args.venv):
        return
    given = given_options(argv, VENV_ONLY)
    if given:
        opt = "--" + given[0].replace("_", "-")
        raise UsageError(f"{opt}: only for packing a venv; re-laying out "
                         "an image keeps its compression, block size and "
                         "pycs")


def run_tool(out, body, cleanup, fail, nothing, usage=2):
    """How a tool's run ends, for every tool: body() does the work and
    returns the exit status; a UsageError becomes one line and the status
    `usage`, a PackError or OSError one line and the status `fail`, a
    signal one line ("interrupted by SIGINT; <nothing>") and 128+N;
    cleanup() runs last, whatever happened, safe from a second signal."""
    try:
        trap_signals()
        return body()
    except UsageError as e:
        out.error(str(e))
        return usage
    except PackError as e:
        out.error(str(e))
        return fail
    except Interrupted as e:
        out.error(f"interrupted by {signal.Signals(e.signum).name}; "
                  f"{nothing}")
        return 128 + e.signum
    except OSError as e:
        out.error(f"{e.filename or 'error'}: {e.strerror}")
        return fail
    finally:
        ignore_signals()
        cleanup()


def main(argv, bindir):
    """bindir: where the running sqvenvfs-pack is (to find its siblings)."""
    args = parser().parse_args(argv)
    out = Out(PROG, args.quiet, args.verbose)
    pack = None

    def body():
        nonlocal pack
        check_options(args)
        check_relayout_options(argv, args)
        plan = None
        if args.hot:
            # Read the traces first: a bad one fails before the long work.
            traces = [t for t in args.hot.split(",") if t]
            if not traces:
                raise UsageError("--hot: give one or more trace files")
            plan = Plan(traces, read_traces(traces))
            # a venv directory or an image: say neither if it is not there
            try:
                os.stat(args.venv)
            except OSError as e:
                raise PackError(f"{args.venv}: {e.strerror.lower()}")
        if plan is not None and os.path.isfile(args.venv):
            pack = Relayout(out, args, bindir, plan)
        else:
            pack = Pack(out, args, bindir, plan)
        pack.run()
        pack.report()
        return 0

    def cleanup():
        if pack is not None:
            pack.cleanup()
    return run_tool(out, body, cleanup, 1, "nothing written")
