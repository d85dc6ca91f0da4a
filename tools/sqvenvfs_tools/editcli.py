# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs-edit's command line: options (the image options are
sqvenvfs-pack's own), the split at "--", exit codes, and how a run ends."""

from . import VERSION, cli, editns
from .edit import Edit, exit_status_doc
from .editns import EXIT_FAIL
from .out import Out

PROG = "sqvenvfs-edit"


def parser():
    ap = cli.Parser(
        prog=PROG, usage_status=EXIT_FAIL,
        usage="%(prog)s [OPTIONS] IMAGE [IMAGE...] DELTA.sqfs -- "
              "COMMAND [ARGS...]",
        description="Run COMMAND (e.g. pip install) in a writable view of "
                    "a stack of sqvenvfs images, then pack only what it "
                    "changed into DELTA.sqfs, a delta image to mount on "
                    "top of the stack. No unpacked copy of the venv is "
                    "ever written.",
        epilog=exit_status_doc())
    ap.add_argument("paths", nargs="+", metavar="IMAGE",
                    help="the image stack, bottom first, then DELTA.sqfs")
    ap.add_argument("--at", metavar="DIR",
                    help="show the venv at DIR, an existing directory (the "
                         "path where it is used; default: a new directory "
                         "in the work directory)")
    ap.add_argument("--work", metavar="DIR",
                    help="node-local directory for the overlay's writable "
                         "layer (default: TMPDIR, else /tmp)")
    ap.add_argument("--keep-work", action="store_true",
                    help="keep the work directory (the change, as packed)")
    ap.add_argument("--overlay", choices=("auto", "kernel", "fuse"),
                    default="auto",
                    help="kernel overlayfs in a user namespace, or "
                         "fuse-overlayfs (default auto: the kernel's, "
                         "fuse-overlayfs if it refuses)")
    cli.add_image_options(ap, "DELTA")
    ap.add_argument("-V", "--version", action="version",
                    version=f"{PROG} {VERSION}")
    return ap


def main(argv, bindir, launcher):
    """bindir: where sqvenvfs-edit is; launcher: its path, which the
    namespace runs again with --ns-inner."""
    if argv[:1] == ["--ns-inner"] and len(argv) == 2:
        return editns.main(argv[1])
    ap = parser()
    if "--" in argv:
        i = argv.index("--")
        args, command = ap.parse_args(argv[:i]), argv[i + 1:]
    else:
        args, command = ap.parse_args(argv), []
    out = Out(PROG, args.quiet, args.verbose)
    edit = Edit(out, args, command, bindir, launcher, PROG)

    def body():
        cli.check_options(args)
        rc = edit.run()
        if rc == 0:
            edit.report()
        return rc
    return cli.run_tool(out, body, edit.cleanup, EXIT_FAIL,
                        "no delta written", usage=EXIT_FAIL)
