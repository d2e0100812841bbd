"""demo.py: online detection and linking equal test.py + build_tubes.py's offline chain on the
same frames; annotated videos written and read back with OpenCV."""
import cv2
import numpy as np
import pytest
import torch

import demo
from data import layout
from data.annotations import read_video_list
from engine.online import StreamSpec
from models import ModelConfig, build_model
from tests.reference import link_and_trim
from tests.test_train import run_script
from tubes.detections import frame_detections, read_video_detections
from tubes.tube_files import load_tubes
from utils.checkpoint import save_checkpoint

CLASSES = ["Walking", "Jumping", "Waving", "Spinning"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny random model (its scores are what they are: the test is about equal processing)."""
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("demo") / "tiny.pth"
    save_checkpoint(path, build_model(ModelConfig(num_classes=5, width_mult=0.0625)), classes=CLASSES)
    return path


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    ok, image = capture.read()
    while ok:
        frames.append(image)
        ok, image = capture.read()
    return frames


def test_online_chain_equals_test_py_and_build_tubes(toy_root, weights, tmp_path):
    result = run_script("test.py", "--data_root", str(toy_root), "--weights", str(weights), "--device", "cpu",
                        "--num_workers", "0", "--batch_size", "1", "--det_dir", str(tmp_path / "offline"))
    assert result.returncode == 0, result.stderr
    for video in read_video_list(layout.split_path(toy_root, "testlist01.txt"))[:2]:
        name = video.split("/")[1]
        out = tmp_path / f"{name}.avi"
        assert demo.main(["--video", str(layout.video_dir(toy_root, "rgb", video)), "--weights", str(weights),
                          "--out", str(out), "--det_out", str(tmp_path / f"{name}.npz"), "--device", "cpu",
                          "--alphas", "3,5"]) == 0
        offline = frame_detections(read_video_detections(tmp_path / "offline" / f"{video}.npz"))
        online = frame_detections(read_video_detections(tmp_path / f"{name}.npz"))
        assert len(online) == len(offline)
        for (loc_a, scores_a), (loc_b, scores_b) in zip(online, offline):
            np.testing.assert_array_equal(loc_a, loc_b)
            np.testing.assert_array_equal(scores_a, scores_b)
        _, want = link_and_trim(offline, 4, [3.0, 5.0])
        for alpha in (3.0, 5.0):
            _, got = load_tubes(tmp_path / f"{name}-tubes-alpha{alpha:g}.npz")
            assert len(got[name]) == len(want[alpha]) > 0
            for a, b in zip(got[name], want[alpha]):
                assert (a.class_id, a.start, a.score) == (b.class_id, b.start, b.score)
                np.testing.assert_array_equal(a.boxes, b.boxes)
        annotated = read_video(out)
        assert len(annotated) == len(online) and annotated[0].shape == (240, 320, 3)


def test_video_file_two_stream_fastof(toy_root, tmp_path):
    """A real video file in, a fused rgb + fastOF model (flow computed online), an mp4 out."""
    torch.manual_seed(3)
    weights = tmp_path / "fused.pth"
    save_checkpoint(weights, build_model(ModelConfig(num_classes=5, width_mult=0.0625, fusion_type="SUM",
                                                     input_frames_extra=3)))
    video = read_video_list(layout.split_path(toy_root, "testlist01.txt"))[0]
    frames = [cv2.imread(str(p)) for p in sorted(layout.video_dir(toy_root, "rgb", video).glob("*.jpg"))]
    source = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 12, (320, 240))
    for frame in frames:
        writer.write(frame)
    writer.release()
    out = tmp_path / "clip-annotated.mp4"
    assert demo.main(["--video", str(source), "--weights", str(weights), "--out", str(out), "--device", "cpu",
                      "--classes", str(_classes(tmp_path)),
                      "--show_thresh", "0", "--det_out", str(tmp_path / "clip.npz")]) == 0
    annotated = read_video(out)
    assert len(annotated) == len(frames) and annotated[0].shape == (240, 320, 3)
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FPS) == pytest.approx(12, abs=0.5)
    # with --show_thresh 0 every extended path is drawn: the output differs from the input
    assert any(np.abs(a.astype(int) - f.astype(int)).max() > 100 for a, f in zip(annotated[5:], read_video(source)[5:]))
    det = read_video_detections(tmp_path / "clip.npz")
    assert det.num_frames == len(frames) and det.scores.shape[1] == 5
    _, tubes = load_tubes(tmp_path / "clip-annotated-tubes-alpha3.npz")
    assert list(tubes) == ["clip"]


def _classes(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return path


def test_bad_inputs_are_named(weights, tmp_path):
    with pytest.raises(SystemExit, match="demo.py: --video .*missing.avi: no such video file or frame folder"):
        demo.main(["--video", str(tmp_path / "missing.avi"), "--weights", str(weights), "--out", str(tmp_path / "o.avi")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="demo.py: --video .*empty: no .jpg frames"):
        demo.main(["--video", str(tmp_path / "empty"), "--weights", str(weights), "--out", str(tmp_path / "o.avi")])
    with pytest.raises(SystemExit, match="demo.py: --weights .*nope.pth: no such checkpoint file"):
        demo.main(["--video", str(tmp_path), "--weights", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "o.avi")])
    with pytest.raises(ValueError, match="'brox' images, which cannot be computed online"):
        StreamSpec({"base": ("rgb", 1), "extra": ("brox", 5)})
    assert not (tmp_path / "o.avi").exists()


@pytest.mark.parametrize("num_frames, windows", [(2, 0), (3, 1), (6, 3), (7, 3)])
def test_short_videos_emit_every_frame_once(num_frames, windows):
    """Windows as data/windows.py's full_test (starts 0, 2, ... below numf - 3, plus numf - 3)."""
    from engine.online import OnlineDetector
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, width_mult=0.0625))
    runs = []
    model.register_forward_hook(lambda module, args, output: runs.append(1))
    detector = OnlineDetector(model, StreamSpec({"base": ("rgb", 1)}), torch.device("cpu"), frame_cache=False)
    rng = np.random.default_rng(0)
    emitted = []
    for _ in range(num_frames):
        emitted += detector.push(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    emitted += detector.finish()
    assert [f for f, _, _ in emitted] == list(range(num_frames))
    assert all(scores.shape[1] == 3 for _, _, scores in emitted)
    assert sum(len(loc) > 0 for _, loc, _ in emitted) == (0 if windows == 0 else num_frames)
    assert len(runs) == windows  # 6 frames: starts 0, 2 and 3; 7 frames: 0, 2 and 4


def test_online_micro_tube_linking_equals_build_tubes(toy_root, weights, tmp_path):
    """demo.py --link micro --eval_gap 3 (the network on every 4th frame) gives build_tubes.py --link
    micro's tubes of test.py --eval_gaps 3's detections of the same video."""
    from tubes.micro import link_micro_tubes
    from tubes.trimming import trim_paths
    result = run_script("test.py", "--data_root", str(toy_root), "--weights", str(weights), "--device", "cpu",
                        "--num_workers", "0", "--batch_size", "1", "--eval_gaps", "3", "--det_dir", str(tmp_path / "off"))
    assert result.returncode == 0, result.stderr
    video = read_video_list(layout.split_path(toy_root, "testlist01.txt"))[1]
    name = video.split("/")[1]
    assert demo.main(["--video", str(layout.video_dir(toy_root, "rgb", video)), "--weights", str(weights),
                      "--out", str(tmp_path / f"{name}.avi"), "--device", "cpu", "--alphas", "3", "--eval_gap", "3",
                      "--link", "micro", "--link_score", "0.05"]) == 0
    det = read_video_detections(tmp_path / "off" / f"{video}.npz")
    assert (np.diff(det.frames, axis=1) == 4).all()
    import build_tubes
    results = build_tubes.main(["--det_dir", str(tmp_path / "off"), "--det_format", "npz", "--link", "micro",
                                "--annot", str(layout.split_path(toy_root, "pyannot.pkl")), "--alphas", "3",
                                "--link_score", "0.05", "--out_dir", str(tmp_path / "tubes")])
    assert results["linking"]["mode"] == "micro"
    _, offline = load_tubes(tmp_path / "tubes" / "tubes_alpha3.npz")
    want = trim_paths(link_micro_tubes(det, 4, link_score=0.05), 3.0)
    _, got = load_tubes(tmp_path / f"{name}-tubes-alpha3.npz")
    assert len(got[name]) == len(want) == len(offline[video]) > 0
    for a, b, c in zip(got[name], want, offline[video]):
        assert (c.class_id, c.start, c.score) == (b.class_id, b.start, b.score)
        np.testing.assert_array_equal(c.boxes, a.boxes)
        assert (a.class_id, a.start, a.score) == (b.class_id, b.start, b.score)
        np.testing.assert_array_equal(a.boxes, b.boxes)


def test_backend_choice(monkeypatch):
    """auto: onnxruntime on the CPU when its packages are installed, else PyTorch; CUDA: PyTorch."""
    from engine import export
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    for installed in (True, False):
        monkeypatch.setattr(export, "onnx_available", lambda: installed)
        assert export.use_onnxruntime("auto", cpu) is installed
        assert export.use_onnxruntime("auto", cuda) is False
        assert export.use_onnxruntime("torch", cpu) is False
        assert export.use_onnxruntime("onnxruntime", cpu) is True
    with pytest.raises(ValueError, match="--backend onnxruntime runs on the CPU"):
        export.use_onnxruntime("onnxruntime", cuda)


def test_annot_draws_the_ground_truth_beside_the_paths(toy_root, weights, tmp_path):
    """--annot: the GT boxes of the dataset video the path names (Class/video) in white, read back from the
    written video along a GT box's left edge, where the input frame is not white; the video's own name checked."""
    from engine.drawing import GT_COLOUR
    from tubes.runner import load_annotations
    annot = layout.split_path(toy_root, "pyannot.pkl")
    video = read_video_list(layout.split_path(toy_root, "testlist01.txt"))[0]
    frames_dir = layout.video_dir(toy_root, "rgb", video)
    out = tmp_path / "annotated.avi"
    assert demo.main(["--video", str(frames_dir), "--weights", str(weights), "--out", str(out), "--device", "cpu",
                      "--annot", str(annot)]) == 0
    annotated = read_video(out)
    tube = load_annotations(annot)[video].tubes[0]
    index = tube.start + len(tube.boxes) // 2
    x1, y1, x2, y2 = (int(round(v)) for v in tube.boxes[len(tube.boxes) // 2])
    rows = np.arange(y1 + 4, y2 - 3)  # the left edge below the label tab
    assert len(rows) > 10

    def white(image):  # pixels within 60 of the GT colour in every channel (the video is compressed)
        return (np.abs(image[rows, x1].astype(int) - GT_COLOUR).max(axis=1) < 60).mean()
    source = cv2.imread(str(frames_dir / f"{index + 1:05d}.jpg"))
    assert white(annotated[index]) > 0.9 and white(source) < 0.2
    with pytest.raises(SystemExit, match=r"pyannot.pkl: no video Waving/nope \(named by the last two parts"):
        demo.main(["--video", str(tmp_path / "Waving" / "nope"), "--weights", str(weights), "--out",
                   str(tmp_path / "o.avi"), "--annot", str(annot)])
    with pytest.raises(SystemExit, match="--annot draws each frame's ground truth: not with --realtime"):
        demo.main(["--video", str(frames_dir), "--weights", str(weights), "--out", str(tmp_path / "o.avi"),
                   "--annot", str(annot), "--realtime"])
