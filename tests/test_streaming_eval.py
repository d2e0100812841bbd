"""build_tubes.py and eval_online.py keep a few numbers per tube, not the tubes: the tube files written one video at a
time equal np.savez's of all the tubes, and the evaluation from each video's matching equals the evaluation of all the
tubes at once (the Octave-checked ``evaluate``), under both protocols."""
import json
import os
import time

import numpy as np
import pytest

from tests.test_act_protocol import octave_case_files
from tubes import online_eval as oe
from tubes import runner as tr
from tubes.trimming import ActionTube, TubeArrays
from tubes.tube_files import TubeFileWriter, load_tubes, save_tubes, tube_file

KEYS = ("videos", "alpha", "video", "class_id", "score", "start", "length", "boxes", "box_dtype")


def random_tubes(rng, count, dtype):
    return [ActionTube(int(rng.integers(3)), float(rng.random()), int(rng.integers(50)),
                       (rng.random((int(rng.integers(1, 9)), 4)) * 300).astype(dtype)) for _ in range(count)]


def savez_reference(path, videos, tubes, alpha):
    """What build_tubes.py wrote before it wrote one video at a time: np.savez of all the tubes' arrays."""
    flat = [(i, t) for i, v in enumerate(videos) for t in tubes[v]]
    np.savez(path, videos=np.asarray(videos), alpha=np.float64(alpha), video=np.array([i for i, _ in flat], np.int32),
             class_id=np.array([t.class_id for _, t in flat], np.int32),
             score=np.array([t.score for _, t in flat], np.float64),
             start=np.array([t.start for _, t in flat], np.int32),
             length=np.array([len(t.boxes) for _, t in flat], np.int32),
             boxes=np.concatenate([t.boxes.astype(np.float64) - 1 for _, t in flat]) if flat else np.zeros((0, 4)),
             box_dtype="float32" if flat and all(t.boxes.dtype == np.float32 for _, t in flat) else "float64")


def packed(tubes):
    return TubeArrays(np.array([t.class_id for t in tubes]), np.array([t.score for t in tubes]),
                      np.array([t.start for t in tubes]), np.array([len(t.boxes) for t in tubes]),
                      np.concatenate([t.boxes for t in tubes]) if tubes else np.zeros((0, 4), np.float32))


@pytest.mark.parametrize("dtypes", [(np.float32, np.float32, np.float32), (np.float32, np.float64, np.float32)])
def test_tube_file_writer_equals_savez_of_all_tubes(tmp_path, dtypes):
    rng = np.random.default_rng(0)
    videos = ["A/a", "B/b", "C/c"]
    tubes = {v: random_tubes(rng, n, d) for v, n, d in zip(videos, (4, 3, 0), dtypes)}
    savez_reference(tmp_path / "want.npz", videos, tubes, 3.0)
    with TubeFileWriter(tmp_path / "got.npz", videos, 3.0) as writer:
        for i, v in enumerate(videos):  # a worker's TubeArrays or a list of ActionTube
            writer.add(i, packed(tubes[v]) if i % 2 else tubes[v])
    with np.load(tmp_path / "want.npz") as want, np.load(tmp_path / "got.npz") as got:
        assert sorted(got.files) == sorted(KEYS)
        for key in KEYS:
            assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
            assert np.array_equal(got[key], want[key]), key
    assert str(np.load(tmp_path / "got.npz")["box_dtype"]) == ("float32" if len(set(dtypes)) == 1 else "float64")
    alpha, loaded = load_tubes(tmp_path / "got.npz")
    assert alpha == 3.0 and list(loaded) == videos
    for v in videos:
        assert [(t.class_id, t.score, t.start, t.boxes.tolist()) for t in loaded[v]] == \
            [(t.class_id, t.score, t.start, t.boxes.tolist()) for t in tubes[v]]
    # save_tubes (demo.py's, the tests') is the same writer: no tubes at all is a file with empty arrays
    save_tubes(tmp_path / "empty.npz", videos, {}, 5.0)
    assert load_tubes(tmp_path / "empty.npz") == (5.0, {v: [] for v in videos})


def test_tube_file_writer_writes_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with TubeFileWriter(tmp_path / "t.npz", ["A/a"], 3.0) as writer:
            writer.add(0, random_tubes(np.random.default_rng(1), 3, np.float32))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # no file, no spilled boxes


@pytest.mark.parametrize("workers", [1, 2])
def test_build_and_evaluate_equals_evaluating_all_tubes(tmp_path, workers):
    """Each video matched in its worker and only its matching kept gives evaluate()'s results of all the tubes
    (road and act, both alphas, frame-mAP) and the tube files save_tubes writes of them."""
    _, names, flags = octave_case_files(tmp_path)
    annot = flags[flags.index("--annot") + 1]
    annotations = tr.load_annotations(annot)
    cfg = tr.TubeConfig(det_dir=tmp_path / "dets", alphas=(3.0, 5.0), workers=workers, protocols=("road", "act"))
    num_classes = tr.num_classes_of(cfg, names, annotations)
    classes = tr.class_names_from(annotations, num_classes)
    got, run = tr.build_and_evaluate(cfg, annotations, names, num_classes, classes, tmp_path / "streamed")
    gts = [tr.gt_from_annotation(annotations[v]) for v in names]
    tubes, frame_aps, times, failed = tr.build_all(cfg, names, num_classes, gts)
    want, _ = tr.evaluate(annotations, names, {a: {v: tubes[v][a] for v in names} for a in cfg.alphas}, num_classes,
                          classes, frame_aps, cfg.protocols)
    assert json.dumps(got) == json.dumps(want)
    assert got["video_map"][0]["mAP"] > 0 and got["video_map_act"][0]["mAP"] > 0  # a case with matches
    assert run.failed == failed == {} and set(run.times) == set(times) | {"video-AP matching"}
    for a in cfg.alphas:
        save_tubes(tmp_path / f"want{a:g}.npz", names, tubes, a)
        with np.load(tube_file(tmp_path / "streamed", a)) as z, np.load(tmp_path / f"want{a:g}.npz") as w:
            assert all(np.array_equal(z[k], w[k]) and z[k].dtype == w[k].dtype for k in KEYS)
    # without frame-mAP: the same video-mAP, no frame-mAP keys
    alone, _ = tr.build_and_evaluate(cfg, annotations, names, num_classes, classes, tmp_path / "alone", frame_map=False)
    assert alone["video_map"] == want["video_map"] and "frame_map_frameap" not in alone


def test_online_curves_equal_evaluating_each_fractions_tubes(tmp_path):
    """eval_online's curves from each video's matching equal evaluate() of all videos' tubes at each fraction on
    the ground truth cut there (the former computation), for thresholds of build_tubes.py's list (0.85: its
    0.8500000000000001) and outside it (0.3)."""
    _, names, flags = octave_case_files(tmp_path)
    annotations = tr.load_annotations(flags[flags.index("--annot") + 1])
    cfg = tr.TubeConfig(det_dir=tmp_path / "dets", alphas=(3.0,), protocols=("road", "act"), workers=2)
    num_classes = tr.num_classes_of(cfg, names, annotations)
    classes = tr.class_names_from(annotations, num_classes)
    fractions, ious = (0.3, 0.6, 1.0), (0.2, 0.3, 0.85)
    got = oe.online_curves(cfg, annotations, names, num_classes, classes, fractions, ious)
    per_video = {v: oe.online_video(tr.read_frames(cfg, v)[0], (320, 240), annotations[v].num_frames, num_classes,
                                    cfg.alphas, fractions) for v in names}
    assert oe.online_thresholds(ious) == (0.2, 0.3, 0.5 + 7 * 0.05)
    for e in got["video_map"]:
        key = "video_map" if e["protocol"] == "road" else "video_map_act"
        for i, x in enumerate(fractions):
            cut = {v: oe.restrict(annotations[v], oe.observed_frames(x, annotations[v].num_frames)) for v in names}
            res, _ = tr.evaluate(cut, names, {3.0: {v: per_video[v][1][i][3.0] for v in names}}, num_classes,
                                 classes, protocols=(e["protocol"],),
                                 iou_thresholds=oe.online_thresholds((e["iou"],)))
            assert e["mAP"][i] == res[key][0]["mAP"], (e["protocol"], e["iou"], x)
    assert [(e["protocol"], e["iou"]) for e in got["video_map"]] == [(p, x) for p in ("road", "act") for x in ious]
    truth = np.array([annotations[v].class_id for v in names])
    assert got["accuracy"] == [float(np.mean([per_video[v][0][i] for v in names] == truth)) for i in range(3)]
    assert max(e["mAP"][-1] for e in got["video_map"]) > 0



CALLS = {}


def counted_process_video(*args):
    """tr.process_video that leaves a file per call in CALLS["dir"] (the workers are forked: they see CALLS)."""
    (CALLS["dir"] / f"{os.getpid()}-{time.monotonic_ns()}").touch()
    return CALLS["real"](*args)


def test_an_error_while_writing_cancels_the_videos_not_started(tmp_path, monkeypatch):
    """A failure in the main process (a full disk while writing the tube files) cancels the videos not started
    instead of waiting for the workers to build them all, and leaves no tube file."""
    _, names, flags = octave_case_files(tmp_path)
    annotations = tr.load_annotations(flags[flags.index("--annot") + 1])
    videos = names * 30  # far more work than the few videos the workers have begun when the error comes
    cfg = tr.TubeConfig(det_dir=tmp_path / "dets", alphas=(3.0,), workers=2)

    def full_disk(self, index, tubes):
        if index == 1:
            raise OSError("No space left on device")
    (tmp_path / "calls").mkdir()
    monkeypatch.setitem(CALLS, "dir", tmp_path / "calls")
    monkeypatch.setitem(CALLS, "real", tr.process_video)
    monkeypatch.setattr(tr, "process_video", counted_process_video)
    monkeypatch.setattr(TubeFileWriter, "add", full_disk)
    with pytest.raises(OSError, match="No space"):
        tr.build_and_evaluate(cfg, annotations, videos, 3, ["a", "b", "c"], tmp_path / "out")
    assert len(list((tmp_path / "calls").iterdir())) < len(videos) / 2
    assert not list((tmp_path / "out").iterdir())  # no tube file, no spilled boxes
