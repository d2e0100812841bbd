"""Two torchrun nodes on this machine (one process each, c10d rendezvous on 127.0.0.1, gloo): training and
test.py end to end, as on a cluster of two machines sharing a file system."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.test_train import TINY, _free_port, run_script, train
from tubes.detections import read_video_detections
from engine.inference import process_share
from utils.checkpoint import load_checkpoint


def two_nodes(*argvs, timeout=600):
    """Two torchrun 'nodes' of one process each, started together, node n running ``argvs[n]`` (script and
    flags); fails unless both succeed."""
    port = _free_port()
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
              "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", f"amtnet-{port}"]
    nodes = [subprocess.Popen([*launch, *argv], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for argv in argvs]
    for node in nodes:
        _, err = node.communicate(timeout=timeout)
        assert node.returncode == 0, err


def test_two_nodes_train_as_one_process_and_only_rank_0_writes(toy_root, tmp_path):
    args = ["--max_iter", "2", "--val_step", "2", "--batch_size", "4", "--val_samples", "1"]
    result, one = train(toy_root, tmp_path / "one", *args, exp="exp")
    assert result.returncode == 0, result.stderr
    # each node gets its own --save_root, so whatever a node writes is seen apart
    node_args = [["train.py", "--data_root", str(toy_root), "--save_root", str(tmp_path / f"node{n}"),
                  "--exp_name", "exp", *TINY, *args] for n in range(2)]
    two_nodes(*node_args)
    written = [sorted(p.name for p in (tmp_path / f"node{n}").rglob("*") if p.is_file()) for n in range(2)]
    assert sorted(map(len, written))[0] == 0, written  # one node wrote nothing
    main = tmp_path / f"node{0 if written[0] else 1}" / "exp"
    assert {"AMTNet_2.pth", "training.log", "validation.json"} <= set(p.name for p in main.iterdir())
    a, b = load_checkpoint(one / "AMTNet_2.pth")["model"], load_checkpoint(main / "AMTNet_2.pth")["model"]
    for key in a:  # the global batch of 4 split over the nodes: the same samples, the same step
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    assert "2 process(es)" in (main / "training.log").read_text()


def test_two_nodes_share_the_test_videos(toy_root, tmp_path):
    result, exp = train(toy_root, tmp_path, "--max_iter", "1", "--val_step", "1", "--val_samples", "1", exp="exp")
    assert result.returncode == 0, result.stderr
    common = ["--data_root", str(toy_root), "--weights", str(exp / "AMTNet_1.pth"), "--device", "cpu",
              "--num_workers", "0", "--batch_size", "4"]
    one = run_script("test.py", *common, "--det_dir", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    # each node writes into its own folder, so each node's share is seen apart (a cluster shares one)
    two_nodes(*[["test.py", *common, "--det_dir", str(tmp_path / f"node{n}")] for n in range(2)])
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.npz"))
    shares = [sorted(p.relative_to(tmp_path / f"node{n}") for p in (tmp_path / f"node{n}").rglob("*.npz"))
              for n in range(2)]
    assert len(files) >= 2 and all(shares) and sorted(shares[0] + shares[1]) == files  # disjoint, together all
    for n, share in enumerate(shares):
        for f in share:
            a, b = read_video_detections(tmp_path / "one" / f), read_video_detections(tmp_path / f"node{n}" / f)
            np.testing.assert_array_equal(a.frames, b.frames)
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-6)
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    written = [tmp_path / f"node{n}-frame_map.json" for n in range(2)]
    assert sum(p.is_file() for p in written) == 1  # only the global rank 0 writes the frame-mAP, over all videos
    results = [json.loads(p.read_text()) for p in [tmp_path / "one-frame_map.json"] + [p for p in written if p.is_file()]]
    assert results[0]["videos"] == results[1]["videos"] == len(files)
    assert results[0]["frame_map_voc"] == pytest.approx(results[1]["frame_map_voc"], abs=1e-6)
    assert results[0]["ap"] == pytest.approx(results[1]["ap"], abs=1e-6)


def test_process_share_deals_whole_videos_evenly():
    from types import SimpleNamespace
    # videos 1, 3, 5, 7 (the test videos of a list that alternates train and test), with 5, 3, 3, 1 windows
    windows = [SimpleNamespace(video_index=v) for v, n in ((1, 5), (3, 3), (5, 3), (7, 1)) for _ in range(n)]
    shares = [process_share(windows, r, 2) for r in range(2)]
    videos = [sorted({windows[i].video_index for i in share}) for share in shares]
    # longest first to the least loaded: 1 (5) -> rank 0; 3 (3) -> rank 1; 5 (3) -> rank 1 (3 < 5); 7 (1) -> rank 0
    assert videos == [[1, 7], [3, 5]] and [len(s) for s in shares] == [6, 6]
    assert sorted(shares[0] + shares[1]) == list(range(len(windows)))
    assert process_share(windows, 0, 1) == list(range(len(windows)))
    # more processes than videos: the extra ones get nothing, and nothing is lost
    shares = [process_share(windows, r, 6) for r in range(6)]
    assert sorted(sum(shares, [])) == list(range(len(windows))) and shares[4] == shares[5] == []
