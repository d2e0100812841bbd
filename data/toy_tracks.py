"""A harder synthetic action dataset in the UCF101-24 layout: real tube tracks, classes told apart by motion only.

Each video borrows the tubes of one real UCF101-24 video (``pyannot.pkl``): its number of
frames (a window of at most ``max_frames`` that holds tube frames), its actors, and each
actor's box over time, so tubes start and end mid-video, several actors share a video and
boxes move and change size as in the real data. A stick figure (ellipse body, head, two
arms, two legs) follows each real box, scaled so its silhouette roughly fills it, and
performs the video's class's motion. Every class uses the same figure; colours and
textures are drawn independently of the class, so only pose over time tells the classes
apart, and at some phases a single frame of one class looks like another's.
Annotations are the tight boxes of each actor's mask before occlusion; an actor whose
mask is smaller than ``MIN_BOX`` pixels (e.g. pushed out of the frame) is not drawn
there and its tube is split. Training videos borrow tracks from the real training
groups, test videos from the real test groups (UCF101 split 1: groups 1-7). The same
seed gives the same files byte for byte.
"""
import logging
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from . import layout
from .annotations import AnnotationError, Tube, VideoAnnotation, load_pyannot
from .flow import flow_images
from .prepare import write_frames
from .toy import HEIGHT, WIDTH, _background, _pan_offset, write_splits
from utils.io import atomic_dir

log = logging.getLogger(__name__)

CLASS_NAMES = ("JumpingJack", "Wave", "Walk", "Bow", "Kick", "Box")
DEFAULT_ANNOT = Path(__file__).parent / "ucf24" / "pyannot.pkl"
MIN_BOX = 4          # pixels: a smaller mask is "not visible" and splits the tube
MIN_TUBE_FRAMES = 3  # shorter visible runs are not drawn (nor annotated)
TEST_GROUPS = 7      # UCF101 split 1 tests groups 1-7 (testlist01.txt)
MAX_ASPECT = 1.6     # the figure is stretched at most this much more in one direction than the other
SUBPIXEL = 4         # cv2 drawing with 4 fractional bits, so slow motion is smooth


@dataclass
class TracksConfig:
    num_videos: int = 48
    seed: int = 0
    num_classes: int = 6
    max_frames: int = 96
    test_fraction: float = 0.25
    flow: bool = True
    annot: str = None  # a pyannot.pkl with real tubes; None: DEFAULT_ANNOT
    workers: int = 2  # threads writing frames and flow

    def __post_init__(self):
        _check(self)


@dataclass
class Pose:
    """The figure's joint angles in radians, measured from straight down, positive towards +x.

    ``arms`` and ``legs``: ``((upper, lower), (upper, lower))`` for the limb on the image's
    left and right; ``lower`` (forearm, shin) is relative to ``upper``. ``tilt``: torso
    rotation about the hips (positive: head to +x); ``lift``: vertical shift in figure
    heights (negative: up); ``width``: shoulder and hip spacing (1 front view, small: side view).
    """
    arms: tuple = ((-0.3, 0.0), (0.3, 0.0))
    legs: tuple = ((-0.15, 0.0), (0.15, 0.0))
    tilt: float = 0.0
    lift: float = 0.0
    width: float = 1.0


# The figure in units of its height (about 1), y down, origin at the hips.
NECK_Y, HIP_X, SHOULDER_X, SHOULDER_DROP = -0.36, 0.05, 0.075, 0.035
BODY_AXES, HEAD_R, LIMB_T = (0.085, 0.2), 0.075, 0.05
UPPER_ARM, FOREARM, THIGH, SHIN = 0.17, 0.15, 0.24, 0.24
NEUTRAL = Pose()


@dataclass
class Motion:
    """One actor's rhythm: period in frames, phase in cycles, amplitude factor, leading side (-1 or 1)."""
    period: float
    phase: float
    amp: float
    side: int


def _rotate(x, y, angle):
    c, s = math.cos(angle), math.sin(angle)
    return x * c - y * s, x * s + y * c


def _limb(start, upper, lower, len_upper, len_lower):
    joint = (start[0] + len_upper * math.sin(upper), start[1] + len_upper * math.cos(upper))
    end = (joint[0] + len_lower * math.sin(upper + lower), joint[1] + len_lower * math.cos(upper + lower))
    return [start, joint, end]


def _skeleton(pose):
    """Figure parts in figure units: ``legs`` and ``arms`` (polylines), ``body`` (centre, axes, angle), ``head`` (centre, r)."""
    lift = pose.lift

    def torso(x, y):
        x, y = _rotate(x, y, pose.tilt)
        return x, y + lift

    legs = [_limb((side * HIP_X * pose.width, lift), *pose.legs[i], THIGH, SHIN) for i, side in enumerate((-1, 1))]
    arms = [_limb(torso(side * SHOULDER_X * pose.width, NECK_Y + SHOULDER_DROP), *pose.arms[i], UPPER_ARM, FOREARM)
            for i, side in enumerate((-1, 1))]
    body = (torso(0.0, NECK_Y / 2), BODY_AXES, pose.tilt)
    head = (torso(0.0, NECK_Y - HEAD_R * 1.1), HEAD_R)
    return {"legs": legs, "body": body, "arms": arms, "head": head}


def _extent(pose):
    """(x1, y1, x2, y2) of the figure in figure units."""
    parts = _skeleton(pose)
    points = np.array([p for line in parts["legs"] + parts["arms"] for p in line])
    lo, hi = points.min(0) - LIMB_T / 2, points.max(0) + LIMB_T / 2
    (bx, by), (ax, ay), angle = parts["body"]
    half = (math.hypot(ax * math.cos(angle), ay * math.sin(angle)),
            math.hypot(ax * math.sin(angle), ay * math.cos(angle)))
    (hx, hy), r = parts["head"]
    lo = np.minimum(lo, [min(bx - half[0], hx - r), min(by - half[1], hy - r)])
    hi = np.maximum(hi, [max(bx + half[0], hx + r), max(by + half[1], hy + r)])
    return (*lo, *hi)


NEUTRAL_EXTENT = _extent(NEUTRAL)


def pose_at(class_name, motion, t):
    """The class's motion pattern: the pose at frame ``t`` of the tube."""
    w = 2 * math.pi * (t / motion.period + motion.phase)
    o = 0.5 - 0.5 * math.cos(w)  # 0 at rest, 1 at the extreme of the movement
    s, amp = motion.side, motion.amp

    def pair(value):  # symmetric left/right limbs: outward is -x on the left
        return ((-value[0], -value[1]), value)

    if class_name == "JumpingJack":  # both arms over the head and legs apart, together
        return Pose(arms=pair((0.3 + 2.3 * amp * o, 0.15 * o)), legs=pair((0.15 + 0.35 * amp * o, 0.0)),
                    lift=-0.04 * abs(math.sin(w)))
    if class_name == "Wave":  # one arm raised, the forearm swinging side to side
        arms = [(-0.3, 0.0), (0.3, 0.0)]
        arms[(s + 1) // 2] = (s * (2.3 + 0.15 * math.sin(w)), 0.7 * amp * math.sin(w))
        return Pose(arms=tuple(arms))
    if class_name == "Walk":  # side view: legs and the opposite arms swing, the back knee bends
        swing = 0.45 * amp * math.sin(w)
        legs = ((s * swing, -s * 0.5 * max(0.0, -math.sin(w))), (-s * swing, -s * 0.5 * max(0.0, math.sin(w))))
        arms = ((-s * 1.3 * swing, s * 0.2), (s * 1.3 * swing, s * 0.2))
        return Pose(arms=arms, legs=legs, width=0.3, lift=-0.02 * abs(math.sin(w)))
    if class_name == "Bow":  # the torso bends over at the hips, arms hanging
        return Pose(arms=pair((0.2, 0.0)), legs=pair((0.12, 0.0)), tilt=s * 1.0 * amp * o)
    if class_name == "Kick":  # one leg kicks out sideways after a wind-up, arms out for balance
        kick = max(0.0, math.sin(w)) ** 2
        chamber = 0.8 * amp * max(0.0, -math.sin(w))  # the knee comes up, the shin hangs
        legs = [(-0.12, 0.0), (0.12, 0.0)]
        legs[(s + 1) // 2] = (s * (0.12 + 1.5 * amp * kick + chamber), -s * chamber)
        return Pose(arms=pair((0.3 + 0.6 * kick, 0.0)), legs=tuple(legs), tilt=-s * 0.25 * kick)
    if class_name == "Box":  # from a guard, the arms punch out in turn
        arms = []
        for i, side in enumerate((-1, 1)):
            punch = max(0.0, math.sin(w + (math.pi if side == s else 0.0))) ** 3
            arms.append((side * (0.4 + 1.15 * amp * punch), -side * 2.3 * (1 - punch)))
        return Pose(arms=tuple(arms), legs=pair((0.2, 0.0)), lift=-0.015 * abs(math.sin(2 * w)))
    raise ValueError(f"unknown class {class_name!r}; choose from {CLASS_NAMES}")


def _placement(box):
    """Figure units -> pixels so that the neutral figure fills ``box`` (x1, y1, x2, y2): (sx, sy, ox, oy)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    ex1, ey1, ex2, ey2 = NEUTRAL_EXTENT
    sx, sy = (x2 - x1 + 1) / (ex2 - ex1), (y2 - y1 + 1) / (ey2 - ey1)
    if max(sx / sy, sy / sx) > MAX_ASPECT:  # keep the area, limit the stretch
        scale, stretch = math.sqrt(sx * sy), math.sqrt(MAX_ASPECT) if sx > sy else 1 / math.sqrt(MAX_ASPECT)
        sx, sy = scale * stretch, scale / stretch
    return sx, sy, (x1 + x2) / 2 - sx * (ex1 + ex2) / 2, (y1 + y2) / 2 - sy * (ey1 + ey2) / 2


def draw_figure(mask, pose, placement):
    """Draw the figure into ``mask`` (uint8 [H, W]): 1 legs, 2 body and arms, 3 head."""
    sx, sy, ox, oy = placement
    one = 1 << SUBPIXEL

    def px(p):
        return int(round((ox + sx * p[0]) * one)), int(round((oy + sy * p[1]) * one))

    parts = _skeleton(pose)
    thick = max(1, int(round(LIMB_T * math.sqrt(sx * sy))))
    for label, lines in ((1, parts["legs"]), (2, parts["arms"])):
        for line in lines:
            for a, b in zip(line[:-1], line[1:]):
                cv2.line(mask, px(a), px(b), label, thick, cv2.LINE_8, SUBPIXEL)
        if label == 1:
            centre, (ax, ay), angle = parts["body"]
            cv2.ellipse(mask, px(centre), (int(round(ax * sx * one)), int(round(ay * sy * one))),
                        math.degrees(angle), 0, 360, 2, -1, cv2.LINE_8, SUBPIXEL)
    centre, r = parts["head"]
    cv2.circle(mask, px(centre), int(round(r * math.sqrt(sx * sy) * one)), 3, -1, cv2.LINE_8, SUBPIXEL)


@dataclass
class _Appearance:
    """Colours (BGR, per mask label 1..3) and a stripe texture, drawn without knowing the class."""
    colours: np.ndarray  # [3, 3] float32
    angle: float
    frequency: float  # stripes per figure height
    contrast: float


def _random_colour(rng, saturation, value):
    hsv = np.array([[[rng.integers(0, 180), rng.integers(*saturation), rng.integers(*value)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _appearance(rng, saturation=(40, 256), value=(60, 256)):
    colours = np.stack([_random_colour(rng, saturation, value) for _ in range(3)])
    return _Appearance(colours, float(rng.uniform(0, math.pi)), float(rng.uniform(3, 12)),
                       float(rng.uniform(0.05, 0.35)))


def _paint(frame, mask, appearance, placement):
    ys, xs = np.nonzero(mask)
    sx, sy, ox, oy = placement
    along = (xs - ox) / sx * math.cos(appearance.angle) + (ys - oy) / sy * math.sin(appearance.angle)
    texture = 1.0 + appearance.contrast * np.sin(2 * math.pi * appearance.frequency * along)
    colour = appearance.colours[mask[ys, xs] - 1] * texture[:, None]
    frame[ys, xs] = colour.clip(0, 255).astype(np.uint8)


def _bounding_box(mask):
    """Tight (x1, y1, x2, y2) of the mask's pixels, or None when smaller than ``MIN_BOX`` either way."""
    x, y, w, h = cv2.boundingRect(mask)
    if w < MIN_BOX or h < MIN_BOX:
        return None
    return (x, y, x + w - 1, y + h - 1)


def _window(rng, real, max_frames):
    """First frame and length of a window of the real video that holds tube frames.

    Half the windows are placed around a tube's first or last frame, so that windows cut
    from long tubes still show actions starting and ending."""
    if real.num_frames <= max_frames:
        return 0, real.num_frames
    tube = real.tubes[int(rng.integers(len(real.tubes)))]
    frame = int(rng.integers(tube.start, tube.end))
    if rng.random() < 0.5:
        frame = tube.start if rng.random() < 0.5 else tube.end - 1
    first = frame - int(rng.integers(0, max_frames))
    return int(np.clip(first, 0, real.num_frames - max_frames)), max_frames


def _runs(valid):
    """(start, end) of the runs of True in a boolean list."""
    runs, start = [], None
    for i, ok in enumerate(list(valid) + [False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            runs.append((start, i))
            start = None
    return runs


def render_video(rng, class_index, real, max_frames=96, class_names=CLASS_NAMES):
    """Render one video on the tracks of ``real`` (a ``VideoAnnotation`` with 0-based pixel boxes).

    Returns (BGR frames, tubes): the tubes are the tight boxes of the actors' masks, split
    where an actor is not visible; empty when no actor is ever visible.
    """
    first, num_frames = _window(rng, real, max_frames)
    class_name = class_names[class_index]
    canvas = _background(rng, WIDTH, HEIGHT)
    pan = rng.uniform(-1, 1, size=2) * min(0.4, 31.0 / max(num_frames, 1))  # the canvas has a 32-pixel margin
    distractors = []
    for _ in range(int(rng.choice([0, 1, 2], p=[0.6, 0.3, 0.1]))):
        height = float(rng.uniform(50, 150))
        x, y = float(rng.uniform(20, WIDTH - 20)), float(rng.uniform(height / 2, HEIGHT - height / 3))
        box = (x - 0.2 * height, y - height / 2, x + 0.2 * height, y + height / 2)
        distractors.append((_placement(box), rng.uniform(-0.3, 0.3, size=2), _appearance(rng, (0, 40), (60, 200))))
    actors = []  # per real tube: appearance, motion, {frame: (mask, placement, box)}
    for tube in real.tubes:
        appearance = _appearance(rng)
        motion = Motion(float(rng.uniform(12, 24)), float(rng.uniform()), float(rng.uniform(0.8, 1.15)),
                        int(rng.choice([-1, 1])))
        drawn = {}
        for f in range(max(tube.start, first), min(tube.end, first + num_frames)):
            placement = _placement(tube.boxes[f - tube.start])
            mask = np.zeros((HEIGHT, WIDTH), np.uint8)
            draw_figure(mask, pose_at(class_name, motion, f - tube.start), placement)
            drawn[f - first] = (mask, placement, _bounding_box(mask))
        actors.append((appearance, drawn))
    # Only runs of visible frames long enough to be tubes are drawn and annotated.
    tubes = []
    for appearance, drawn in actors:
        frames_in = sorted(drawn)
        visible = [drawn[f][2] is not None for f in frames_in]
        keep = set()
        for a, b in _runs(visible):
            if b - a >= MIN_TUBE_FRAMES:
                run = frames_in[a:b]
                keep.update(run)
                tubes.append(Tube(class_index, run[0], np.array([drawn[f][2] for f in run], np.float32)))
        for f in frames_in:
            if f not in keep:
                del drawn[f]
    tubes.sort(key=lambda t: (t.start, t.end))
    frames = []
    for f in range(num_frames):
        ox, oy = _pan_offset(pan[0] * f), _pan_offset(pan[1] * f)  # stays on the canvas however long the video
        frame = canvas[oy:oy + HEIGHT, ox:ox + WIDTH].copy()
        for (sx, sy, dx, dy), drift, appearance in distractors:
            placement = (sx, sy, dx + drift[0] * f, dy + drift[1] * f)
            mask = np.zeros((HEIGHT, WIDTH), np.uint8)
            draw_figure(mask, NEUTRAL, placement)
            _paint(frame, mask, appearance, placement)
        for appearance, drawn in actors:
            if f in drawn:
                mask, placement, _ = drawn[f]
                _paint(frame, mask, appearance, placement)
        frames.append(frame)
    return frames, tubes


def video_name(class_name, index):
    return f"{class_name}/v_{class_name}_g{index // 4 + 1:02d}_c{index % 4 + 1:02d}"


def _group(name):
    match = re.search(r"_g(\d+)_c\d+$", name)
    return int(match.group(1)) if match else None


def real_pools(real_videos, rng):
    """Real video names with tubes, shuffled, split into (training pool, test pool) by UCF101 group.

    Names without a ``_gNN_cNN`` group go to the test pool with probability 0.25."""
    train, test = [], []
    for name in sorted(real_videos):
        if not real_videos[name].tubes:
            continue
        group = _group(name)
        is_test = group <= TEST_GROUPS if group is not None else rng.random() < 0.25
        (test if is_test else train).append(name)
    return [train[i] for i in rng.permutation(len(train))], [test[i] for i in rng.permutation(len(test))]


def _check(cfg):
    if not 1 <= cfg.num_classes <= len(CLASS_NAMES):
        raise ValueError(f"num_classes must be 1..{len(CLASS_NAMES)}, got {cfg.num_classes}")
    if cfg.num_videos < 2 * cfg.num_classes:
        raise ValueError(f"the tracks dataset needs at least {2 * cfg.num_classes} videos (two per class), "
                         f"got {cfg.num_videos}")
    if cfg.max_frames < 2 * MIN_TUBE_FRAMES:
        raise ValueError(f"max_frames must be at least {2 * MIN_TUBE_FRAMES}, got {cfg.max_frames}")
    if not 0 < cfg.test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {cfg.test_fraction}")
    if cfg.workers < 1:
        raise ValueError(f"workers must be at least 1, got {cfg.workers}")


def make_tracks_dataset(root, cfg=TracksConfig(), progress=True):
    """Render the tracks dataset into ``root`` (UCF24 layout). Returns ``{name: VideoAnnotation}``.

    Everything is written into a temporary folder beside ``root`` that replaces it when complete.
    """
    annot = Path(cfg.annot).expanduser() if cfg.annot else DEFAULT_ANNOT
    if not annot.is_file():
        raise FileNotFoundError(f"real UCF101-24 annotations (the tracks) not found: {annot}; "
                                "pass a pyannot.pkl as annot (--annot)")
    real = load_pyannot(annot)
    class_names = CLASS_NAMES[:cfg.num_classes]
    master, *seeds = np.random.SeedSequence(cfg.seed).spawn(cfg.num_videos + 1)
    pools = dict(zip(("train", "test"), real_pools(real, np.random.default_rng(master))))
    # Class v % C; the last ceil(test_fraction * n) videos of each class are test videos.
    classes = [v % cfg.num_classes for v in range(cfg.num_videos)]
    is_test = [False] * cfg.num_videos
    for c in range(cfg.num_classes):
        members = [v for v in range(cfg.num_videos) if classes[v] == c]
        for v in members[len(members) - max(1, int(math.ceil(cfg.test_fraction * len(members)))):]:
            is_test[v] = True
    for split, needed in (("train", is_test.count(False)), ("test", is_test.count(True))):
        if len(pools[split]) < needed:
            raise AnnotationError(f"{annot}: too few real {split} videos with tubes: {len(pools[split])} for {needed} "
                             f"{split} videos")
    videos, test_videos = {}, []
    with atomic_dir(root) as tmp, _Writer(cfg.workers) as writer:
        for v in tqdm(range(cfg.num_videos), desc="tracks videos", disable=not progress):
            rng = np.random.default_rng(seeds[v])
            split = "test" if is_test[v] else "train"
            while True:
                if not pools[split]:
                    raise AnnotationError(f"{annot}: too few real {split} videos with visible tubes "
                                     f"for {cfg.num_videos} videos")
                source = pools[split].pop()
                frames, tubes = render_video(rng, classes[v], real[source], cfg.max_frames, class_names)
                if tubes:
                    break
            class_name = class_names[classes[v]]
            name = video_name(class_name, v // cfg.num_classes)
            log.debug("%s: tracks of %s", name, source)
            writer.submit(tmp, name, frames, cfg.flow)
            videos[name] = VideoAnnotation(name, len(frames), classes[v], tubes)
            if is_test[v]:
                test_videos.append(name)
        writer.wait()
        write_splits(tmp, videos, test_videos, class_names)
    return videos


def _write_video(root, name, frames, flow):
    write_frames(frames, layout.video_dir(root, "rgb", name))
    if flow:
        write_frames(list(flow_images(frames, "fastOF")), layout.video_dir(root, "fastOF", name))


class _Writer:
    """Writes frames and flow (the slow part) in ``workers`` threads while the next videos are
    drawn, holding at most two videos per worker in memory; ``workers`` 1 writes in the caller."""

    def __init__(self, workers):
        # Threads: OpenCV's flow and JPEG encoding release the GIL, and a forked child
        # can hang in cv2 once the parent has started OpenCV's own threads.
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None
        self.limit, self.pending = 2 * workers, []

    def submit(self, *args):
        if self.pool is None:
            _write_video(*args)
            return
        self.pending.append(self.pool.submit(_write_video, *args))
        while len(self.pending) > self.limit:
            self.pending.pop(0).result()

    def wait(self):
        while self.pending:
            self.pending.pop(0).result()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
