"""The project's version, declared here only (CHANGELOG.md says what each version changed)."""
import argparse

__version__ = "0.4.0"


def add_version_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--version``: prints the script's name and the project's version, then exits."""
    parser.add_argument("--version", action="version", version=f"%(prog)s (AMTNet) {__version__}")
    return parser
