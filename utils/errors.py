"""Errors a user's input causes, and the one place where the scripts turn them into exit messages.

Packages raise ``InputError`` subclasses (``AnnotationError``, ``CheckpointError``,
``DetectionError``, ``FrameError``, ...), or ``ValueError`` / ``OSError``, whose message names the
file, video or field; a script's ``main`` is wrapped in ``exits_on_input_errors``, which ends the
run with one line naming the script, the flag and the file instead of a traceback. Other exceptions
are bugs and keep their traceback; ``AMTNET_TRACEBACK=1`` keeps it for these too.
"""
import argparse
import functools
import os
import re
import sys
from pathlib import Path


class InputError(Exception):
    """A file, folder or value a user gave is missing, unreadable or of the wrong kind; the message names it."""


def _flag_values(parser, args):
    """(flag, value as text) of every option of ``parser`` (and its sub-commands) that holds a path-like value."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _flag_values(sub, args)
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), None) or action.dest
        value = getattr(args, action.dest, None)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            text = str(item) if isinstance(item, (str, Path)) else ""
            if text and (os.sep in text or "." in text or isinstance(item, Path)):
                yield flag, text


def _mentions(message, text):
    """``message`` names the path ``text`` (or a path inside it) as a whole word."""
    return re.search(rf"(^|[\s'\"(]){re.escape(text)}($|[\s'\"):;,/])", message) is not None


def describe(error, parser=None, args=None):
    """One line for ``error``: its message, led by the flag whose file or folder it names (the longest match;
    the flags, joined by '/', that were given the same path)."""
    if isinstance(error, OSError) and error.filename is not None and not isinstance(error, InputError):
        message = f"{error.filename}: {error.strerror or error}"
    else:
        message = str(error) or type(error).__name__
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    if parser is None:
        return message
    named = [(flag, text) for flag, text in _flag_values(parser, args) if _mentions(message, text)]
    if not named:
        return message
    text = max((text for _, text in named), key=len)
    flag = "/".join(dict.fromkeys(f for f, t in named if t == text))
    return f"{flag} {message}" if message.startswith(text) else f"{flag} {text}: {message}"


def exits_on_input_errors(get_args_parser, also=()):
    """Decorate a script's ``main(argv=None)``: an ``InputError``, ``ValueError`` or ``OSError`` (and the exception
    types ``also``) ends it with exit status 1 and one line, ``<script>: <flag> <file>: <what is wrong>``, instead of
    a traceback. ``get_args_parser`` is the script's parser, parsed again (only on an error) to find the flag that
    names the file."""
    caught = (InputError, ValueError, OSError, *also)

    def decorate(main):
        script = Path(getattr(sys.modules.get(main.__module__), "__file__", None) or main.__module__).name

        @functools.wraps(main)
        def wrapped(argv=None):
            try:
                return main(argv)
            except caught as error:
                if os.environ.get("AMTNET_TRACEBACK"):
                    raise
                parser = get_args_parser()
                args = parser.parse_args(argv)
                raise SystemExit(f"{script}: {describe(error, parser, args)}") from None
        return wrapped
    return decorate
