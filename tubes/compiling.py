"""Say, once per process, that numba is compiling this package's loops: the first run on a machine (or after
an update of their code) compiles them for about 12 s; later runs load them from numba's on-disk cache
(``cache=True``) and say nothing. numba announces a compilation only when the cache had nothing to load."""
import logging

from numba.core import event

log = logging.getLogger(__name__)

MESSAGE = "compiling the linking code (first run only: numba keeps it in its on-disk cache)"


class _FirstCompilation(event.Listener):
    said = False

    def on_start(self, ev):
        function = getattr(ev.data.get("dispatcher"), "py_func", None) if isinstance(ev.data, dict) else None
        if not self.said and getattr(function, "__module__", "").startswith(__package__ + "."):
            self.said = True
            log.info(MESSAGE)

    def on_end(self, ev):
        pass


_listener = None


def announce_compilation() -> None:
    """Log ``MESSAGE`` at the first compilation of a numba function of this package (idempotent)."""
    global _listener
    if _listener is None:
        _listener = _FirstCompilation()
        event.register("numba:compile", _listener)
