"""Logging set-up for the scripts: the console on the main process, and a log file."""
import logging
from pathlib import Path


def setup_logging(log_file: str | Path | None = None, is_main: bool = True) -> None:
    """Console logging on the main process; also into ``log_file`` when given."""
    handlers = [logging.StreamHandler()]
    if log_file is not None and is_main:
        handlers.append(logging.FileHandler(log_file, mode="a"))
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
