"""Convert checkpoints that an earlier version of this project wrote into this version's format, once.

  python tools/upgrade_checkpoint.py runs/exp/AMTNet_*.pth

Earlier training checkpoints kept numpy's RNG state as a numpy array, which ``torch.load(...,
weights_only=True)`` refuses; this version loads every weights file that way, so those
checkpoints stop with a message naming this tool. It rewrites each file in place (atomically) with
the state as plain data; while reading, it allows numpy's array and nothing else, so a file holding
any other object is still refused.
"""
import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.checkpoint import upgrade_checkpoint  # noqa: E402
from utils.errors import exits_on_input_errors  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoints to convert, each in place")
    return parser


@exits_on_input_errors(get_args_parser)
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in args.checkpoints:
        logging.info("%s: %s", path, "converted" if upgrade_checkpoint(path) else "already in this version's format")
    return 0


if __name__ == "__main__":
    sys.exit(main())
