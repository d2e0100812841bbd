"""Training logs: running averages, a log file, and visdom plots."""
import logging

import numpy as np

log = logging.getLogger(__name__)


class AverageMeter:
    """Current value and running average (reset every ``--loss_reset_step`` prints, as the original)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.val, self.sum, self.count = 0.0, 0.0, 0

    def update(self, value, n=1):
        self.val = float(value)
        self.sum += float(value) * n
        self.count += n

    @property
    def avg(self):
        return self.sum / max(1, self.count)


def setup_logging(log_file=None, is_main=True):
    """Console logging on the main process; also into ``log_file`` when given."""
    handlers = [logging.StreamHandler()]
    if log_file is not None and is_main:
        handlers.append(logging.FileHandler(log_file, mode="a"))
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


class VisdomPlots:
    """The original's two windows: losses (current and averaged) and validation mAP with per-class APs."""

    LOSS_LEGEND = ["REG", "CLS", "AVG", "S-REG", "S-CLS", "S-AVG"]

    def __init__(self, env, port, class_names, server="http://127.0.0.1"):
        import visdom  # optional at import time: only needed with --visdom
        # Without the incoming socket: these plots receive no events, and its thread would try to
        # reconnect, logging ConnectionRefusedError every 3 s, for as long as the process outlives the server.
        visdom_log = logging.getLogger("visdom")
        level = visdom_log.level
        visdom_log.setLevel(logging.ERROR)  # its warning that events cannot be received without the socket
        try:
            self.viz = visdom.Visdom(server=server, port=port, env=env, raise_exceptions=True, use_incoming_socket=False)
        finally:
            visdom_log.setLevel(level)
        self.env = env
        self.loss_win = self.viz.line(X=np.zeros(1), Y=np.zeros((1, 6)), win="loss", opts=dict(
            xlabel="Iteration", ylabel="Loss", title="Training loss", legend=self.LOSS_LEGEND))
        self.map_win = self.viz.line(X=np.zeros(1), Y=np.zeros((1, len(class_names) + 1)), win="map", opts=dict(
            xlabel="Iteration", ylabel="AP", title="Validation frame-mAP", legend=["meanAP"] + list(class_names)))

    def loss(self, iteration, values):
        self.viz.line(X=np.full((1, 6), iteration), Y=np.asarray(values, dtype=np.float64)[None],
                      win=self.loss_win, update="append")

    def map(self, iteration, mean_ap, class_aps):
        values = np.concatenate([[mean_ap], class_aps])[None]
        self.viz.line(X=np.full(values.shape, iteration), Y=values, win=self.map_win, update="append")
