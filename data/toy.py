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

import cv2
import numpy as np
from tqdm import tqdm

from . import layout
from .annotations import Tube, VideoAnnotation, to_pyannot_entry
from .flow import flow_images
from .prepare import write_frames
from utils.io import atomic_path

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 320, 240


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


@dataclass
class ToyConfig:
    num_videos: int = 32
    seed: int = 0
    min_frames: int = 48
    max_frames: int = 80
    test_fraction: float = 0.25
    flow: bool = True


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


def _background(rng):
    """A textured canvas larger than the frame, so a slowly moving crop looks like a pan."""
    canvas = rng.integers(0, 256, size=(HEIGHT // 8 + 8, WIDTH // 8 + 8, 3), dtype=np.uint8)
    canvas = cv2.resize(canvas, (WIDTH + 64, HEIGHT + 64), interpolation=cv2.INTER_CUBIC)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 3)
    base = rng.integers(70, 170, size=3)
    canvas = (base + (canvas.astype(np.float32) - 128) * 0.35).clip(0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(6, 14))):
        p = rng.integers(0, [WIDTH + 64, HEIGHT + 64])
        q = p + rng.integers(-60, 60, size=2)
        colour = tuple(int(c) for c in (base + rng.integers(-40, 40, size=3)).clip(0, 255))
        cv2.line(canvas, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, int(rng.integers(1, 4)))
    return canvas


def _make_actors(rng, class_index, num_frames):
    actors = []
    for _ in range(int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))):
        length = int(rng.integers(int(num_frames * 0.4), int(num_frames * 0.8) + 1))
        start = int(rng.integers(2, num_frames - length - 1))
        approaching = rng.random() < 0.25
        actors.append(_Actor(
            class_index=class_index, start=start, length=length,
            x0=float(rng.uniform(70, WIDTH - 70)), y0=float(rng.uniform(95, HEIGHT - 60)),
            scale=float(rng.uniform(0.75, 1.2)), growth=float(rng.uniform(0.006, 0.012)) if approaching else 0.0,
            direction=float(rng.choice([-1.0, 1.0])), phase=float(rng.uniform(0, 2 * math.pi))))
    return actors


def render_video(rng, class_index, num_frames):
    """Render one video. Returns (BGR frames list, tubes with 0-based inclusive pixel boxes)."""
    actor_class = CLASSES[class_index]
    canvas = _background(rng)
    pan = rng.uniform(-0.4, 0.4, size=2)
    actors = _make_actors(rng, class_index, num_frames)
    shade = rng.uniform(0.85, 1.15, size=len(actors))
    pole = None
    if rng.random() < 0.35:
        pole = (float(rng.uniform(0, WIDTH)), float(rng.choice([-1.5, 1.5])), int(rng.integers(10, 22)))
    frames, boxes = [], [[] for _ in actors]
    for f in range(num_frames):
        ox, oy = 32 + pan[0] * f, 32 + pan[1] * f
        frame = canvas[int(round(oy)):int(round(oy)) + HEIGHT, int(round(ox)):int(round(ox)) + WIDTH].copy()
        for a, actor in enumerate(actors):
            t = f - actor.start
            if not 0 <= t < actor.length:
                continue
            mask = np.zeros((HEIGHT, WIDTH), np.uint8)
            _draw_actor(mask, actor_class, *actor.pose(t))
            ys, xs = np.nonzero(mask)
            boxes[a].append((xs.min(), ys.min(), xs.max(), ys.max()))
            colour = np.array(actor_class.colour, np.float32) * shade[a]
            texture = 0.85 + 0.15 * np.sin(xs * 0.5 + ys * 0.3)
            frame[ys, xs] = (colour[None] * texture[:, None]).clip(0, 255).astype(np.uint8)
        if pole is not None:
            px = int(round(pole[0] + pole[1] * f)) % (WIDTH + 40) - 20
            cv2.rectangle(frame, (px, 0), (px + pole[2], HEIGHT - 1), (90, 90, 90), -1)
        frames.append(frame)
    tubes = [Tube(class_index, actor.start, np.array(b, np.float32)) for actor, b in zip(actors, boxes)]
    return frames, tubes


def video_name(class_index, index):
    name = CLASSES[class_index].name
    return f"{name}/v_{name}_g{index // 4 + 1:02d}_c{index % 4 + 1:02d}"


def make_toy_dataset(root, cfg=ToyConfig(), progress=True):
    """Render the toy dataset into ``root`` (UCF24 layout). Returns ``{name: VideoAnnotation}``."""
    num_classes = len(CLASSES)
    if cfg.num_videos < 2 * num_classes:
        raise ValueError(f"the toy dataset needs at least {2 * num_classes} videos (two per class), got {cfg.num_videos}")
    seeds = np.random.SeedSequence(cfg.seed).spawn(cfg.num_videos)
    videos, test_videos = {}, []
    per_class = [0] * num_classes
    for v in tqdm(range(cfg.num_videos), desc="toy videos", disable=not progress):
        rng = np.random.default_rng(seeds[v])
        class_index = v % num_classes
        name = video_name(class_index, per_class[class_index])
        per_class[class_index] += 1
        num_frames = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
        frames, tubes = render_video(rng, class_index, num_frames)
        write_frames(frames, layout.video_dir(root, "rgb", name))
        if cfg.flow:
            write_frames(list(flow_images(frames, "fastOF")), layout.video_dir(root, "fastOF", name))
        videos[name] = VideoAnnotation(name, num_frames, class_index, tubes)
    # Every class gets test videos: the last ceil(test_fraction * n) of each class.
    for c in range(num_classes):
        names = [n for n, a in videos.items() if a.class_id == c]
        test_videos += names[len(names) - max(1, int(math.ceil(cfg.test_fraction * len(names)))):]
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
