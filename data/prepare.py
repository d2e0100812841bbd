"""Frames and optical flow from a user's own videos, in the UCF24 layout.

Videos are found under ``videos_dir`` as ``<Class>/<video>.<ext>`` (UCF101's layout)
or directly as ``<video>.<ext>`` (placed in class ``default_class``). Each video's
frames go to ``rgb-images/<Class>/<video>/%05d.jpg`` and its flow to
``<flow>-images/<Class>/<video>/``; each folder is written under a temporary name and
renamed when complete, so a folder that exists is finished and a rerun skips it.
"""
import logging
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from . import layout
from .flow import flow_images
from utils.errors import InputError
from utils.io import atomic_dir, remove_stale_temporaries

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".mpg", ".mpeg", ".webm", ".m4v")


class VideoError(InputError, RuntimeError):
    """A video that cannot be turned into frames; the message names the file."""


@dataclass
class PrepareConfig:
    videos_dir: str
    out: str
    flows: tuple = ("fastOF",)
    workers: int = 1
    default_class: str = "videos"
    resize: tuple = None  # (width, height), or None to keep the video's size


@dataclass
class VideoJob:
    path: Path
    name: str  # Class/video


def find_videos(videos_dir: str | Path, default_class: str = "videos") -> list:
    """Video files under ``videos_dir`` with their dataset names, sorted."""
    root = Path(videos_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"videos directory not found: {root}")
    jobs = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()):
        relative = path.relative_to(root)
        class_name = relative.parts[0] if len(relative.parts) > 1 else default_class
        jobs.append(VideoJob(path, f"{class_name}/{path.stem}"))
    names = [job.name for job in jobs]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise VideoError(f"{root}: several videos map to the same name: {', '.join(clashes)}")
    return jobs


def write_frames(frames: list, directory: Path) -> None:
    """Write frames as 1-based ``%05d.jpg`` files into a directory that appears only when complete."""
    with atomic_dir(directory) as tmp:
        for i, frame in enumerate(frames):
            if not cv2.imwrite(str(tmp / layout.FRAME_PATTERN.format(i + 1)), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                raise OSError(f"could not write frame {i + 1} into {directory}")


def read_video(path: Path, resize: tuple | None = None) -> list:
    """All frames of a video as BGR arrays; raises ``VideoError`` naming the file."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(f"cannot open video {path}")
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.resize(frame, tuple(resize), interpolation=cv2.INTER_AREA) if resize else frame)
    finally:
        capture.release()
    if not frames:
        raise VideoError(f"video {path} has no readable frames")
    return frames


def read_frame_folder(directory: Path) -> list:
    paths = sorted(Path(directory).glob("*.jpg"))
    frames = [cv2.imread(str(p)) for p in paths]
    bad = [str(p) for p, f in zip(paths, frames) if f is None]
    if bad or not frames:
        raise VideoError(f"unreadable frames in {directory}: {bad[:3] or 'none found'}")
    return frames


def prepare_video(job: VideoJob, cfg: PrepareConfig) -> str:
    """Extract one video's frames and flow. Returns 'done' or 'skipped'."""
    rgb_dir = layout.video_dir(cfg.out, "rgb", job.name)
    todo = [d for d in [rgb_dir] + [layout.video_dir(cfg.out, f, job.name) for f in cfg.flows] if not d.is_dir()]
    if not todo:
        return "skipped"
    for directory in todo:
        remove_stale_temporaries(directory)
    frames = read_video(job.path, cfg.resize) if rgb_dir in todo else read_frame_folder(rgb_dir)
    if rgb_dir in todo:
        write_frames(frames, rgb_dir)
    for flow in cfg.flows:
        directory = layout.video_dir(cfg.out, flow, job.name)
        if directory in todo:
            write_frames(list(flow_images(frames, flow)), directory)
    return "done"


def _run(job, cfg):
    try:
        return job, prepare_video(job, cfg), None
    except Exception as error:  # one bad video must not stop the others
        return job, "failed", f"{job.path}: {error}"


def prepare_videos(cfg: PrepareConfig, progress: bool = True) -> dict:
    """Prepare every video; returns ``{'done': [...], 'skipped': [...], 'failed': [(name, message)]}``."""
    jobs = find_videos(cfg.videos_dir, cfg.default_class)
    if not jobs:
        raise VideoError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {cfg.videos_dir}")
    summary = {"done": [], "skipped": [], "failed": []}

    def record(job, status, message):
        if message:
            log.error("failed: %s", message)
            summary["failed"].append((job.name, message))
        else:
            summary[status].append(job.name)

    bar = tqdm(total=len(jobs), desc="videos", disable=not progress)
    if cfg.workers <= 1:
        for job in jobs:
            record(*_run(job, cfg))
            bar.update()
    else:
        with ProcessPoolExecutor(cfg.workers) as pool:
            for future in as_completed([pool.submit(_run, job, cfg) for job in jobs]):
                record(*future.result())
                bar.update()
    bar.close()
    return summary
