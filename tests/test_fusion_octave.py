"""Late fusion against the original fusedActionPaths.m run under GNU Octave, with the original trimming
and evaluation (fixtures from tools/octave/make_fusion_fixtures.py): two streams that differ in boxes and
scores, with frames where one stream has nothing above the linking's threshold."""
import json
from pathlib import Path

import numpy as np
import pytest

from data.matlab_annots import load_final_annots
from tests.reference import assert_paths_equal_matlab, assert_tubes_equal_matlab, assert_video_map_equal_matlab
from tubes.detections import write_road_mat_frame
from tubes.fusion import link_fused
from tubes.trimming import trim_video
from tubes.video_map import gt_from_annotation

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "octave"
RUNS = ["boost", "union", "mean", "boost_fixed"]
FUSION_FIXTURES = ["fusion", "fusion_single"]  # double on exact grids; float32 off them (computed in single)


def stream_frames(det, v, prefix=""):
    ends = np.cumsum(det[f"{prefix}counts_{v}"])
    starts = ends - det[f"{prefix}counts_{v}"]
    return [(det[f"{prefix}loc_{v}"][a:b], det[f"{prefix}scores_{v}"][a:b]) for a, b in zip(starts, ends)]


@pytest.fixture(scope="module")
def det():
    return np.load(FIXTURES / "fusion.npz")


@pytest.fixture(scope="module", params=[(f, r) for f in FUSION_FIXTURES for r in RUNS], ids="-".join)
def run(request):
    fixture, fusion_run = request.param
    det = np.load(FIXTURES / f"{fixture}.npz")
    expected = json.loads((FIXTURES / f"{fixture}_{fusion_run}.json").read_text())
    names = [str(n) for n in det["names"]]
    num_classes = len(det["classes"])
    alphas = [float(a) for a in det["alphas"]]
    built = {}
    for v, name in enumerate(names):
        paths, _ = link_fused(stream_frames(det, v), stream_frames(det, v, "top_"), num_classes, expected["fusion"],
                              fuse_iou=expected["fuse_iou"] or 0.25, iou_thresh=float(det["iou_thresh"]),
                              fixed=expected["fixed"])
        built[name] = paths, trim_video(paths, alphas)
    gt = load_final_annots(FIXTURES / f"{fixture}_finalAnnots.mat")
    return names, num_classes, alphas, built, expected, [gt_from_annotation(gt[n]) for n in names]


@pytest.mark.parametrize("fixture", FUSION_FIXTURES)
def test_fixture_exercises_the_fusion(fixture):
    """The streams differ, share their rows, and each has frames with nothing the filtering keeps."""
    det = np.load(FIXTURES / f"{fixture}.npz")
    assert det["loc_0"].dtype == det["top_scores_0"].dtype == (np.float32 if fixture == "fusion_single" else np.float64)
    for v in range(len(det["names"])):
        base, top = stream_frames(det, v), stream_frames(det, v, "top_")
        assert [len(b[0]) for b in base] == [len(t[0]) for t in top]
        assert any(np.any(b[0] != t[0]) for b, t in zip(base, top))
        for frames in (base, top):
            assert any(len(s) and s[:, 1:].max() < 0.001 for _, s in frames)


def test_fused_paths_equal_matlab(run):
    names, num_classes, _, built, expected, _ = run
    assert assert_paths_equal_matlab({n: built[n][0] for n in names}, expected, num_classes) > 10


def test_fused_tubes_equal_matlab(run):
    names, _, alphas, built, expected, _ = run
    assert assert_tubes_equal_matlab({n: built[n][1] for n in names}, expected, alphas) > 0


def test_fused_video_map_equal_matlab(run):
    names, num_classes, alphas, built, expected, gts = run
    assert_video_map_equal_matlab(gts, {n: built[n][1] for n in names}, expected, num_classes, alphas)


@pytest.mark.parametrize("fixture", FUSION_FIXTURES)
def test_fusion_types_differ(fixture):
    """Each fusion gives other paths on these fixtures (else the comparisons above prove less)."""
    paths = [json.dumps(json.loads((FIXTURES / f"{fixture}_{r}.json").read_text())["paths"]) for r in RUNS]
    assert len(set(paths)) == len(RUNS)


def write_streams(det, root):
    """The fixture's two streams as road_mat folders ROOT/rgb and ROOT/flow, and its video list."""
    names = [str(n) for n in det["names"]]
    for stream, prefix in (("rgb", ""), ("flow", "top_")):
        for v, name in enumerate(names):
            for f, (loc, scores) in enumerate(stream_frames(det, v, prefix), 1):
                write_road_mat_frame(root / stream / name / f"{f:05d}.mat", loc, scores)
    (root / "videos.txt").write_text("\n".join(names) + "\n")
    return names


def build(root, *flags):
    import build_tubes
    return build_tubes.main(["--det_dir", str(root / "rgb"), "--fuse_det_dir", str(root / "flow"),
                             "--annot", str(FIXTURES / "fusion_finalAnnots.mat"), "--video_list", str(root / "videos.txt"),
                             "--out_dir", str(root / "out"), "--alphas", "3,5", "--strict", *flags])


@pytest.mark.parametrize("flag,run,more", [("nwsum-plus", "boost", []), ("cat", "union", []),
                                           ("nwsum-plus", "boost_fixed", ["--fuse_fixed"])])
def test_build_tubes_fusion_equals_matlab(tmp_path, det, flag, run, more, capsys):
    """build_tubes.py end to end on the road_mat files, with the Matlab's fusion names."""
    write_streams(det, tmp_path)
    res = build(tmp_path, "--fusion", flag, *more)
    expected = json.loads((FIXTURES / f"fusion_{run}.json").read_text())
    got = np.array([[r["alpha"], r["iou"], r["mAP"], r["mean_iou"], r["accuracy"]] for r in res["video_map"]])
    np.testing.assert_allclose(got, np.asarray(expected["results"]["rows"]), rtol=0, atol=1e-12)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["fusion"]["type"] == run.split("_")[0] and saved["fusion"]["matlab_name"] == flag
    assert saved["fusion"]["fixed"] == {"boost": False, "boost_fixed": True}.get(run)  # None: not boost
    assert f"late fusion: {run.split('_')[0]} ({flag}" in capsys.readouterr().out
    assert 0 < saved["frame_map_frameap"]["mAP"] < 1


def test_mean_fusion_names_the_file_whose_rows_differ(tmp_path, det):
    names = write_streams(det, tmp_path)
    f = tmp_path / "flow" / names[1] / "00003.mat"
    import scipy.io
    m = scipy.io.loadmat(f)
    scipy.io.savemat(f, {"loc": m["loc"][1:], "scores": m["scores"][1:]})
    with pytest.raises(SystemExit, match=f"{f} has {len(m['loc']) - 1} detections, .*rgb/{names[1]}/00003.mat has"):
        build(tmp_path, "--fusion", "mean")
    assert build(tmp_path, "--fusion", "union")["fusion"]["type"] == "union"  # the others need no alignment


def test_fusion_needs_both_flags(tmp_path, det):
    import build_tubes
    write_streams(det, tmp_path)
    with pytest.raises(SystemExit, match="late fusion needs both"):
        build_tubes.main(["--det_dir", str(tmp_path / "rgb"), "--fusion", "mean", "--annot",
                          str(FIXTURES / "fusion_finalAnnots.mat"), "--out_dir", str(tmp_path / "out")])


def test_streams_with_other_classes_are_an_error(tmp_path, det):
    names = write_streams(det, tmp_path)
    for f in (tmp_path / "flow" / names[0]).iterdir():
        write_road_mat_frame(f, np.zeros((1, 4)), np.full((1, 3), 1 / 3))
    with pytest.raises(SystemExit, match=f"flow/{names[0]}: scores have 3 columns, .*rgb/{names[0]} 4"):
        build(tmp_path, "--fusion", "union")
