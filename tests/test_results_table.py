"""The pipeline's results table: a row per model or fusion, in the original's columns."""
import pytest

from tubes.results_table import rows_table, summary_row, table
from tubes.runner import VIDEO_IOU_THRESHOLDS


def results(alpha_maps, fmap=None):
    """build_tubes.py's results.json for ``{alpha: mAP at threshold t = 0.2 + ...}``: mAP 1 - t, accuracy 0.5 + alpha / 100."""
    out = {"protocol": "road", "video_map": [
        {"alpha": a, "iou": round(t, 4), "mAP": scale * (1 - t), "accuracy": 0.5 + a / 100}
        for a, scale in alpha_maps.items() for t in VIDEO_IOU_THRESHOLDS]}
    if fmap is not None:
        out["frame_map_frameap"] = {"iou": 0.5, "mAP": fmap}
    return out


def test_summary_row_reads_one_alpha_in_percent():
    row = summary_row(results({3: 1.0, 5: 0.5}, fmap=0.25), 5)
    # at alpha 5: mAP = 0.5 * (1 - t); thresholds 0.5..0.95 average to 0.725 -> 0.5 * 0.275
    assert row["mAP@0.2"] == pytest.approx(40.0) and row["mAP@0.5"] == pytest.approx(25.0)
    assert row["mAP@0.75"] == pytest.approx(12.5) and row["mAP@0.5:0.95"] == pytest.approx(13.75)
    assert row["frame-mAP"] == pytest.approx(25.0) and row["accuracy"] == pytest.approx(55.0)
    assert summary_row(results({3: 1.0}), 3)["frame-mAP"] is None
    with pytest.raises(ValueError, match="no video-mAP at alpha 4"):
        summary_row(results({3: 1.0}), 4)


def test_rows_table_one_line_per_row_in_the_original_columns():
    rows = {"RGB": summary_row(results({3: 1.0}, 0.5), 3), "RGB+FastOF boost": summary_row(results({3: 0.5}), 3)}
    lines = rows_table(rows).splitlines()
    assert lines[0].split() == ["model", "mAP@0.2", "mAP@0.5", "mAP@0.75", "mAP@0.5:0.95", "frame-mAP", "accuracy"]
    assert lines[1].split() == ["RGB", "80.00", "50.00", "25.00", "27.50", "50.00", "53.00"]
    assert lines[2].split() == ["RGB+FastOF", "boost", "40.00", "25.00", "12.50", "13.75", "-", "53.00"]
    # numbers right-aligned under their column names
    assert lines[1].index("80.00") + len("80.00") == lines[0].index("mAP@0.2") + len("mAP@0.2")


def test_table_keeps_the_per_alpha_layout():
    lines = table(results({3: 1.0, 5: 0.5}, 0.25)).splitlines()
    assert lines[2].split() == ["3", "80.00", "50.00", "25.00", "27.50", "53.00"]
    assert lines[3].split() == ["5", "40.00", "25.00", "12.50", "13.75", "55.00"]
    assert lines[-1].endswith("25.00")
