"""Annotation and tube pickles are data: one that would run code when unpickled is refused by every reader
(pyannot.pkl, ACT ground truth, ACT tube pickles) and by the scripts that take them; real files still load."""
import pickle
import shutil

import numpy as np
import pytest

import analyze
import build_tubes
import eval_video_ap
from data.annotations import AnnotationError, load_pickle
from tests.test_weights_are_data import _WritesAFile


@pytest.fixture
def evil(tmp_path):
    """A pickle holding numpy arrays and, inside, an object whose unpickling writes ``marker``."""
    marker = tmp_path / "marker"
    content = {"v_A_g01_c01": {"numf": 3, "label": 0, "annotations": [
        {"label": 0, "sf": 0, "ef": 2, "boxes": np.ones((2, 4), np.int32), "note": _WritesAFile(marker)}]}}
    path = tmp_path / "pyannot.pkl"
    path.write_bytes(pickle.dumps(content, protocol=2))
    pickle.loads(path.read_bytes())
    assert marker.read_text() == "code ran"  # the file really is dangerous
    marker.unlink()
    return marker, path


def test_load_pickle_refuses_code_and_reads_arrays(evil, tmp_path, ucf24_dir):
    marker, path = evil
    with pytest.raises(AnnotationError, match=r"pyannot.pkl.*builtin.*exec.*refused"):
        load_pickle(path)
    assert not marker.exists()
    plain = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.int64(4), np.float64(0.5), "s", None],
             "c": (1, 2.0, b"x"), "empty": np.zeros((0, 4), np.float32)}
    for protocol in (2, 4, 5):
        (tmp_path / "ok.pkl").write_bytes(pickle.dumps(plain, protocol=protocol))
        got = load_pickle(tmp_path / "ok.pkl")
        assert np.array_equal(got["a"], plain["a"]) and got["a"].dtype == np.float32
        assert got["b"] == plain["b"] and type(got["b"][0]) is np.int64 and got["c"] == plain["c"]
        assert got["empty"].shape == (0, 4)
    shipped = load_pickle(ucf24_dir / "pyannot.pkl")  # the released file (Python 2, numpy arrays) still loads
    assert len(shipped) > 3000 and isinstance(next(iter(shipped.values()))["annotations"][0]["boxes"], np.ndarray)


def test_scripts_refuse_a_crafted_annotation_or_tube_pickle(evil, tmp_path, capsys, ucf24_dir):
    marker, path = evil
    tubes = tmp_path / "act_tubes"
    (tubes / "Basketball").mkdir(parents=True)
    shutil.copy(path, tubes / "Basketball" / "v_Basketball_g01_c01_tubes.pkl")
    runs = [(build_tubes, ["--det_dir", str(tmp_path), "--annot", str(path), "--out_dir", str(tmp_path / "o1")]),
            (eval_video_ap, ["--tubes", str(tubes), "--annot", str(ucf24_dir / "pyannot.pkl"),
                             "--out_dir", str(tmp_path / "o2")]),
            (eval_video_ap, ["--tubes", str(tubes), "--annot", str(path), "--out_dir", str(tmp_path / "o3")]),
            (analyze, ["--tubes", str(tubes), "--annot", str(path), "--out_dir", str(tmp_path / "o4")])]
    for script, argv in runs:
        with pytest.raises(SystemExit) as exit_info:
            script.main(argv)
        message = str(exit_info.value.code)
        assert "refused" in message and "Traceback" not in capsys.readouterr().err, (script.__name__, message)
        assert not marker.exists(), script.__name__
