"""A small synthetic action dataset in the UCF101-24 layout (the embedded default).

Each video shows 1 to 3 actors of the video's class over a textured background
that pans slowly. An actor appears for the span of its action tube, which starts
and ends inside the video (untrimmed, so temporal trimming matters), performs the
class's motion pattern, and may be partly hidden by a moving pole (occlusion) or
approach the camera (scale change). Annotations are the tight boxes of the actor's
pixels before occlusion, as for the real datasets. Everything is drawn with a
seeded generator, so a seed gives the same files byte for byte.
"""
import logging
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from . import layout
from .annotations import AnnotationError, Tube, VideoAnnotation, load_pickle, to_pyannot_entry
from .flow import flow_images
from .prepare import write_frames
from utils.io import atomic_dir, atomic_path, remove_stale_temporaries

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 320, 240  # the default frame size, UCF101's
PAN_MARGIN = 32  # the background canvas extends this far beyond the frame on each side


@dataclass(frozen=True)
class ActorClass:
    name: str
    colour: tuple  # BGR
    shape: str  # body drawn for this class


# Distinct appearance (colour, body shape) and motion pattern (see _pose) per class.
CLASSES = (
    ActorClass("Walking", (60, 170, 60), "person"),
    ActorClass("Jumping", (50, 60, 210), "person"),
    ActorClass("Waving", (210, 130, 40), "person"),
    ActorClass("Spinning", (40, 200, 220), "star"),
)


# The shortest video for which _make_actors can place a tube that starts and ends inside it
# (start >= 2, at least one frame after the end, length up to 0.8 of the video).
MIN_FRAMES = 16
MIN_SIZE = 32  # smallest frame width and height
# The default toy set's (make demo's, prepare_data.py toy's) test videos beyond those among its 32: 8 per class in all,
# so that one video weighs 3 points of accuracy, not 12.5
EXTRA_TEST_VIDEOS = 24


@dataclass
class ToyConfig:
    num_videos: int = 32
    seed: int = 0
    # More test videos, rendered after the num_videos (whose last quarter per class is test too): the first
    # num_videos (names, frames, annotations, split) are the same for any number of them.
    test_videos: int = 0
    min_frames: int = 48
    max_frames: int = 80
    test_fraction: float = 0.25
    flow: bool = True
    frame_size: tuple = (WIDTH, HEIGHT)  # smaller frames render faster (the tests' sweeps)

    def __post_init__(self):
        num_classes = len(CLASSES)
        if self.num_videos < 2 * num_classes:
            raise ValueError(f"the toy dataset needs at least {2 * num_classes} videos (two per class), got {self.num_videos}")
        if not MIN_FRAMES <= self.min_frames <= self.max_frames:
            raise ValueError(f"toy videos need {MIN_FRAMES} <= min_frames <= max_frames, "
                             f"got min_frames={self.min_frames}, max_frames={self.max_frames}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.test_videos < 0:
            raise ValueError(f"test_videos must be >= 0, got {self.test_videos}")
        if min(self.frame_size) < MIN_SIZE:
            raise ValueError(f"frame_size must be at least {MIN_SIZE}x{MIN_SIZE}, got {self.frame_size}")


@dataclass
class _Actor:
    class_index: int
    start: int
    length: int
    x0: float
    y0: float
    scale: float
    growth: float  # scale change per frame (approaching the camera)
    direction: float
    phase: float

    def pose(self, t):
        """Centre, scale and limb angle at frame ``t`` of the tube (the class's motion pattern)."""
        name = CLASSES[self.class_index].name
        scale = self.scale * (1.0 + self.growth * t)
        x, y, angle = self.x0, self.y0, 0.0
        if name == "Walking":
            x += self.direction * 2.5 * t
            y += 2.0 * math.sin(0.6 * t + self.phase)
            angle = 0.6 * math.sin(0.5 * t + self.phase)
        elif name == "Jumping":
            period = 14.0
            u = ((t + self.phase * period) % period) / period
            y -= 45.0 * scale * 4 * u * (1 - u)
        elif name == "Waving":
            angle = 1.1 * math.sin(0.7 * t + self.phase)
        else:  # Spinning
            x += self.direction * 0.8 * t
            angle = self.direction * 0.25 * t + self.phase
        return x, y, scale, angle


def _draw_actor(mask, actor_class, x, y, scale, angle):
    """Draw the actor's silhouette into ``mask`` (uint8, 255 inside)."""
    if actor_class.shape == "star":
        radius = 26 * scale
        points = []
        for k in range(10):
            r = radius if k % 2 == 0 else radius * 0.45
            a = angle + k * math.pi / 5
            points.append((x + r * math.cos(a), y + r * math.sin(a)))
        cv2.fillPoly(mask, [np.round(np.array(points)).astype(np.int32)], 255)
        return
    body_w, body_h = 11 * scale, 24 * scale
    head_r = max(2, int(round(8 * scale)))
    cv2.ellipse(mask, (int(round(x)), int(round(y))), (int(round(body_w)), int(round(body_h))), 0, 0, 360, 255, -1)
    cv2.circle(mask, (int(round(x)), int(round(y - body_h - head_r + 2))), head_r, 255, -1)
    thick = max(2, int(round(4 * scale)))
    shoulder = (x, y - body_h * 0.6)
    arm = 26 * scale
    for side in (-1, 1):
        # Waving raises one arm and swings it; the others swing both arms and legs.
        a = (-math.pi / 2 - side * 0.3 + angle) if (actor_class.name == "Waving" and side == 1) else (math.pi / 2 + side * 0.5 + side * angle)
        end = (shoulder[0] + side * 0 + arm * math.cos(a), shoulder[1] + arm * math.sin(a))
        cv2.line(mask, (int(round(shoulder[0])), int(round(shoulder[1]))), (int(round(end[0])), int(round(end[1]))), 255, thick)
        hip = (x + side * body_w * 0.4, y + body_h * 0.8)
        leg_a = math.pi / 2 + side * 0.25 + (side * angle * 0.8 if actor_class.name == "Walking" else 0.0)
        foot = (hip[0] + 22 * scale * math.cos(leg_a), hip[1] + 22 * scale * math.sin(leg_a))
        cv2.line(mask, (int(round(hip[0])), int(round(hip[1]))), (int(round(foot[0])), int(round(foot[1]))), 255, thick)


def _background(rng, width, height):
    """A textured canvas larger than the frame, so a slowly moving crop looks like a pan."""
    canvas = rng.integers(0, 256, size=(height // 8 + 8, width // 8 + 8, 3), dtype=np.uint8)
    canvas = cv2.resize(canvas, (width + 2 * PAN_MARGIN, height + 2 * PAN_MARGIN), interpolation=cv2.INTER_CUBIC)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 3)
    base = rng.integers(70, 170, size=3)
    canvas = (base + (canvas.astype(np.float32) - 128) * 0.35).clip(0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(6, 14))):
        p = rng.integers(0, [width + 2 * PAN_MARGIN, height + 2 * PAN_MARGIN])
        q = p + rng.integers(-60, 60, size=2)
        colour = tuple(int(c) for c in (base + rng.integers(-40, 40, size=3)).clip(0, 255))
        cv2.line(canvas, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, int(rng.integers(1, 4)))
    return canvas


def _pan_offset(shift):
    """Crop offset of the panning background: ``PAN_MARGIN + shift`` while that stays on the
    canvas (the first 80 frames at any pan speed), reflected back and forth beyond."""
    if abs(shift) > PAN_MARGIN:
        u = (shift + PAN_MARGIN) % (4 * PAN_MARGIN)
        shift = (u if u <= 2 * PAN_MARGIN else 4 * PAN_MARGIN - u) - PAN_MARGIN
    return int(round(PAN_MARGIN + shift))


def _make_actors(rng, class_index, num_frames, width, height):
    # The margins are those of 320x240 frames scaled to the frame size (the same draws at 320x240).
    actors = []
    for _ in range(int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))):
        length = int(rng.integers(int(num_frames * 0.4), int(num_frames * 0.8) + 1))
        start = int(rng.integers(2, num_frames - length - 1))
        approaching = rng.random() < 0.25
        actors.append(_Actor(
            class_index=class_index, start=start, length=length,
            x0=float(rng.uniform(width * 70 / WIDTH, width - width * 70 / WIDTH)),
            y0=float(rng.uniform(height * 95 / HEIGHT, height - height * 60 / HEIGHT)),
            scale=float(rng.uniform(0.75, 1.2)), growth=float(rng.uniform(0.006, 0.012)) if approaching else 0.0,
            direction=float(rng.choice([-1.0, 1.0])), phase=float(rng.uniform(0, 2 * math.pi))))
    return actors


def render_video(rng, class_index, num_frames, frame_size=(WIDTH, HEIGHT)):
    """Render one video. Returns (BGR frames list, tubes with 0-based inclusive pixel boxes).

    An actor shows where its silhouette covers at least two pixels across and down inside the
    frame; elsewhere (walked out of the frame) it is neither drawn nor boxed, and its tube ends
    there (a new one starts if it comes back)."""
    width, height = frame_size
    actor_class = CLASSES[class_index]
    canvas = _background(rng, width, height)
    pan = rng.uniform(-0.4, 0.4, size=2)
    actors = _make_actors(rng, class_index, num_frames, width, height)
    shade = rng.uniform(0.85, 1.15, size=len(actors))
    pole = None
    if rng.random() < 0.35:
        pole = (float(rng.uniform(0, width)), float(rng.choice([-1.5, 1.5])), int(rng.integers(10, 22)))
    frames, boxes = [], [[] for _ in actors]
    for f in range(num_frames):
        ox, oy = _pan_offset(pan[0] * f), _pan_offset(pan[1] * f)
        frame = canvas[oy:oy + height, ox:ox + width].copy()
        for a, actor in enumerate(actors):
            t = f - actor.start
            if not 0 <= t < actor.length:
                continue
            mask = np.zeros((height, width), np.uint8)
            _draw_actor(mask, actor_class, *actor.pose(t))
            ys, xs = np.nonzero(mask)
            if not _visible(xs, ys):  # outside the frame: no box, and no pixels
                boxes[a].append(None)
                continue
            boxes[a].append((xs.min(), ys.min(), xs.max(), ys.max()))
            colour = np.array(actor_class.colour, np.float32) * shade[a]
            texture = 0.85 + 0.15 * np.sin(xs * 0.5 + ys * 0.3)
            frame[ys, xs] = (colour[None] * texture[:, None]).clip(0, 255).astype(np.uint8)
        if pole is not None:
            px = int(round(pole[0] + pole[1] * f)) % (width + 40) - 20
            cv2.rectangle(frame, (px, 0), (px + pole[2], height - 1), (90, 90, 90), -1)
        frames.append(frame)
    tubes = [tube for actor, b in zip(actors, boxes) for tube in _visible_tubes(class_index, actor.start, b)]
    return frames, tubes


def _visible(xs, ys):
    """Whether an actor whose pixels inside the frame are ``xs, ys`` shows: at least two pixels
    across and down, so its box has positive area (x2 > x1 and y2 > y1, as the readers require)."""
    return xs.size > 0 and xs.max() > xs.min() and ys.max() > ys.min()


def _visible_tubes(class_index, start, boxes):
    """One tube per run of frames where the actor shows (``boxes`` holds None where it does not),
    as the released annotations end a tube where the actor leaves and start another where it returns."""
    tubes, run = [], []
    for f, box in enumerate(boxes + [None]):
        if box is not None:
            run.append(box)
        elif run:
            tubes.append(Tube(class_index, start + f - len(run), np.array(run, np.float32)))
            run = []
    return tubes


def video_name(class_index, index):
    name = CLASSES[class_index].name
    return f"{name}/v_{name}_g{index // 4 + 1:02d}_c{index % 4 + 1:02d}"


def video_names(cfg):
    """The videos ``cfg`` renders, in order: the classes in turn, each numbered on."""
    return [video_name(v % len(CLASSES), v // len(CLASSES)) for v in range(cfg.num_videos + cfg.test_videos)]


def has_toy_dataset(root, cfg):
    """Whether ``root`` holds a toy dataset with the videos and the test split ``cfg`` renders (a set rendered
    with another number of videos or test videos does not; one of another seed does)."""
    test_list = layout.split_path(root, layout.split_list_name("test", 1))
    if not (layout.split_path(root, layout.ANNOT_FILE).is_file() and test_list.is_file()):
        return False
    names = video_names(cfg)
    per_class = [names[c:cfg.num_videos:len(CLASSES)] for c in range(len(CLASSES))]
    test = [n for c in per_class for n in c[len(c) - _test_count(cfg, len(c)):]] + names[cfg.num_videos:]
    try:
        annotated = sorted(load_pickle(layout.split_path(root, layout.ANNOT_FILE)))
    except AnnotationError:
        return False
    return annotated == sorted(names) and sorted(test_list.read_text().split()) == sorted(test)


def _test_count(cfg, class_videos):
    """How many of a class's first videos are test videos: the last ceil(test_fraction * n), and at least one
    stays for training."""
    return max(1, min(class_videos - 1, int(math.ceil(cfg.test_fraction * class_videos))))


def make_toy_dataset(root, cfg=ToyConfig(), progress=True):
    """Render the toy dataset into ``root`` (UCF24 layout). Returns ``{name: VideoAnnotation}``.

    It is rendered into a temporary folder beside ``root`` and renamed to ``root`` when whole, so
    ``root`` never holds a partial dataset (what a killed run leaves is removed by the next run);
    an empty folder or a toy dataset already at ``root`` is replaced, anything else is an error."""
    root = Path(root)
    _check_replaceable(root)
    remove_stale_temporaries(root)
    with atomic_dir(root) as tmp:
        return _render_dataset(tmp, cfg, progress)


def _check_replaceable(root):
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return
    named = layout.split_path(root, layout.ANNOT_WITH_NAMES_FILE)
    try:
        toy = named.is_file() and load_pickle(named).get("classes") == [c.name for c in CLASSES]
    except (AnnotationError, AttributeError):
        toy = False
    if not toy:
        raise FileExistsError(f"{root} exists and is not a toy dataset (no {named} with the toy classes): "
                              "give a new or empty folder")


def _render_dataset(root, cfg, progress):
    num_classes = len(CLASSES)
    # spawn() gives the k-th video the same seed whatever the number of videos after it
    seeds = np.random.SeedSequence(cfg.seed).spawn(cfg.num_videos + cfg.test_videos)
    videos, test_videos = {}, []
    per_class = [0] * num_classes
    for v in tqdm(range(len(seeds)), desc="toy videos", disable=not progress):
        rng = np.random.default_rng(seeds[v])
        class_index = v % num_classes
        name = video_name(class_index, per_class[class_index])
        per_class[class_index] += 1
        num_frames = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
        frames, tubes = render_video(rng, class_index, num_frames, tuple(cfg.frame_size))
        write_frames(frames, layout.video_dir(root, "rgb", name))
        if cfg.flow:
            write_frames(list(flow_images(frames, "fastOF")), layout.video_dir(root, "fastOF", name))
        videos[name] = VideoAnnotation(name, num_frames, class_index, tubes)
    # Every class gets test videos, the last ceil(test_fraction * n) of each class, and keeps a training one.
    first = list(videos.values())[:cfg.num_videos]
    for c in range(num_classes):
        names = [a.name for a in first if a.class_id == c]
        test_videos += names[len(names) - _test_count(cfg, len(names)):]
    test_videos += list(videos)[cfg.num_videos:]
    write_splits(root, videos, test_videos, [c.name for c in CLASSES])
    return videos


def write_splits(root, videos, test_videos, class_names):
    """Write ``splitfiles/``: pyannot.pkl, pyannot_with_class_names.pkl, trainlist01.txt, testlist01.txt."""
    database = {name: to_pyannot_entry(video) for name, video in sorted(videos.items())}
    test = sorted(test_videos)
    train = sorted(set(videos) - set(test))
    files = {
        layout.ANNOT_FILE: lambda f: pickle.dump(database, f, protocol=2),
        layout.ANNOT_WITH_NAMES_FILE: lambda f: pickle.dump(
            {"db": database, "trainvideos": train, "classes": list(class_names)}, f, protocol=2),
        layout.split_list_name("train", 1): lambda f: f.write("".join(n + "\n" for n in train).encode()),
        layout.split_list_name("test", 1): lambda f: f.write("".join(n + "\n" for n in test).encode()),
    }
    for file_name, write in files.items():
        with atomic_path(layout.split_path(root, file_name)) as tmp, open(tmp, "wb") as f:
            write(f)
