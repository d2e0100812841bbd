"""train.py and test.py end to end on the toy dataset (CPU, tiny model)."""
import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from data.annotations import load_class_names, read_video_list
from data import layout
from tests.conftest import REPO_ROOT
from tubes.detections import read_video_detections
from utils.checkpoint import REQUIRED_KEYS, load_checkpoint

TINY = ["--width_mult", "0.0625", "--batch_size", "2", "--num_workers", "0", "--val_samples", "4",
        "--print_step", "1", "--device", "cpu", "--dataset", "toy"]


def run_script(script, *args, timeout=600):
    result = subprocess.run([sys.executable, script, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=timeout)
    return result


def train(toy_root, save_root, *args, exp="exp"):
    result = run_script("train.py", "--data_root", str(toy_root), "--save_root", str(save_root), "--exp_name", exp,
                        *TINY, *args)
    return result, save_root / exp


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def visdom_server(tmp_path_factory):
    """A real visdom server on a loopback port (``start_server`` directly: ``python -m
    visdom.server`` would first download web assets from the internet)."""
    import visdom
    port = _free_port()
    env_path = tmp_path_factory.mktemp("visdom")
    server = subprocess.Popen([sys.executable, "-c", "from visdom.server.run_server import start_server; "
                               f"start_server(port={port}, hostname='127.0.0.1', base_url='', env_path={str(env_path)!r})"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = None
    for _ in range(120):
        try:
            # no incoming socket: its thread would keep reconnecting (and logging errors) once the server stops
            client = visdom.Visdom(server="http://127.0.0.1", port=port, raise_exceptions=True,
                                   use_incoming_socket=False)
            break
        except Exception:
            time.sleep(0.5)
    assert client is not None and client.check_connection(), "visdom server did not start"
    yield port, client
    try:
        assert _visdom_socket_threads() == [], "a visdom client would reconnect to the stopped server"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _visdom_socket_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("Visdom-Socket")]


@pytest.fixture(scope="module")
def trained(toy_root, tmp_path_factory, visdom_server):
    """One 4-iteration run (validation at 2 and 4) logged to the visdom server; shared by the tests below."""
    save_root = tmp_path_factory.mktemp("train")
    result, exp = train(toy_root, save_root, "--max_iter", "4", "--val_step", "2", "--num_workers", "1",
                        "--visdom", "True", "--vis_port", str(visdom_server[0]), exp="shared")
    assert result.returncode == 0, result.stderr
    return save_root, exp


def test_train_then_test_single_stream(toy_root, trained):
    _, exp = trained
    state = load_checkpoint(exp / "AMTNet_4.pth")
    assert set(REQUIRED_KEYS) <= set(state)
    assert state["iteration"] == 4 and state["flags"]["max_iter"] == 4
    assert state["model_config"]["num_classes"] == 5 and state["model_config"]["width_mult"] == 0.0625
    assert state["classes"] == load_class_names(toy_root)  # demo.py labels its boxes with them
    assert state["optimizer"]["param_groups"][0]["lr"] > 0 and state["scheduler"]["last_epoch"] == 4
    assert (exp / "AMTNet_2.pth").is_file()
    log = (exp / "training.log").read_text()
    assert log.count("frame-mAP@0.50") == 2 and "iteration 4/4 loc-loss" in log and "ETA" in log

    result = run_script("test.py", "--data_root", str(toy_root), "--weights", str(exp / "AMTNet_4.pth"),
                        "--device", "cpu", "--num_workers", "0", "--batch_size", "4", "--save_mat")
    assert result.returncode == 0, result.stderr
    det_dir = exp / "detections-AMTNet_4-eg01"
    test_videos = read_video_list(layout.split_path(toy_root, "testlist01.txt"))
    assert sorted(str(p.relative_to(det_dir))[:-4] for p in det_dir.rglob("*.npz")) == sorted(test_videos)
    det = read_video_detections(det_dir / f"{test_videos[0]}.npz")
    assert det.frames.shape[1] == 2 and det.scores.shape[1] == 5 and det.boxes.shape[1:] == (2, 4)
    assert det.frames[:, 0].tolist() == sorted(set(det.frames[:, 0].tolist()))  # every start once
    assert (det.boxes >= 0).all() and (det.boxes <= 1).all()
    np.testing.assert_allclose(det.scores.sum(1), 1, atol=1e-4)  # full softmax rows
    mats = sorted((exp / "detections-AMTNet_4-eg01-mat" / test_videos[0]).iterdir())
    assert len(mats) == det.num_frames
    summary = json.loads((exp / "detections-AMTNet_4-eg01-frame_map.json").read_text())
    assert 0 <= summary["frame_map_voc"] <= 1 and summary["videos"] == len(test_videos)
    assert "frames/s network" in result.stderr


def test_two_stream_sum_fusion(toy_root, tmp_path):
    result, exp = train(toy_root, tmp_path, "--max_iter", "2", "--val_step", "2", "--fusion_type", "sum",
                        "--input_type_extra", "fastOF", "--input_frames_extra", "2")
    assert result.returncode == 0, result.stderr
    state = load_checkpoint(exp / "AMTNet_2.pth")
    assert state["model_config"]["fusion_type"] == "SUM" and state["model_config"]["input_frames_extra"] == 2
    assert any(k.startswith("core_extra.") for k in state["model"])
    result = run_script("test.py", "--data_root", str(toy_root), "--weights", str(exp / "AMTNet_2.pth"),
                        "--input_type_extra", "fastOF", "--device", "cpu", "--num_workers", "0")
    assert result.returncode == 0, result.stderr
    test_videos = read_video_list(layout.split_path(toy_root, "testlist01.txt"))
    assert len(list((exp / "detections-AMTNet_2-eg01").rglob("*.npz"))) == len(test_videos) == 4


def test_resume_reaches_the_same_weights(toy_root, trained):
    save_root, full = trained
    result, resumed = train(toy_root, save_root, "--max_iter", "4", "--val_step", "2",
                            "--resume", str(full / "AMTNet_2.pth"), exp="resumed")
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stderr
    a, b = load_checkpoint(full / "AMTNet_4.pth"), load_checkpoint(resumed / "AMTNet_4.pth")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    # and resuming really continued: the weights moved between iterations 2 and 4
    assert not torch.equal(load_checkpoint(full / "AMTNet_2.pth")["model"]["conf.0.weight"], a["model"]["conf.0.weight"])


def test_two_gloo_processes_equal_one_process(toy_root, tmp_path):
    args = ("--max_iter", "2", "--val_step", "2", "--batch_size", "4", "--val_samples", "1")
    result, one = train(toy_root, tmp_path, *args, exp="one")
    assert result.returncode == 0, result.stderr
    result, two = train(toy_root, tmp_path, *args, "--ngpu", "2", exp="two")
    assert result.returncode == 0, result.stderr
    a, b = load_checkpoint(one / "AMTNet_2.pth")["model"], load_checkpoint(two / "AMTNet_2.pth")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)


def test_nan_loss_stops_and_keeps_the_last_checkpoint(toy_root, tmp_path):
    result, exp = train(toy_root, tmp_path, "--max_iter", "30", "--val_step", "1", "--lr", "1e12", "--val_samples", "1")
    assert result.returncode != 0
    assert "loss is nan" in result.stderr or "loss is inf" in result.stderr
    assert "stopping (the last checkpoint is kept)" in result.stderr
    saved = sorted(int(p.stem.split("_")[1]) for p in exp.glob("AMTNet_*.pth"))
    assert saved and saved == list(range(1, saved[-1] + 1))
    assert all(torch.isfinite(v).all() for v in load_checkpoint(exp / f"AMTNet_{saved[-1]}.pth")["model"].values())


def test_resume_errors(toy_root, tmp_path):
    result, _ = train(toy_root, tmp_path, "--max_iter", "2", "--resume", str(tmp_path / "nope.pth"))
    assert result.returncode == 1 and f"train.py: --resume {tmp_path / 'nope.pth'}: no such checkpoint file" in result.stderr
    assert "Traceback" not in result.stderr


def test_visdom_windows_on_a_real_server(trained, visdom_server):
    _, client = visdom_server
    env = json.loads(client.get_window_data(env="shared"))
    loss = json.loads(client.get_window_data("loss", env="shared"))
    maps = json.loads(client.get_window_data("map", env="shared"))
    assert {"loss", "map"} <= set(env)
    assert [t["name"] for t in loss["content"]["data"]] == ["REG", "CLS", "AVG", "S-REG", "S-CLS", "S-AVG"]
    assert loss["content"]["data"][0]["x"] == [0, 1, 2, 3, 4]  # the origin, then one point per printed iteration
    assert maps["content"]["data"][0]["name"] == "meanAP" and maps["content"]["data"][0]["x"] == [0, 2, 4]
    assert [t["name"] for t in maps["content"]["data"][1:]] == ["Walking", "Jumping", "Waving", "Spinning"]


def test_visdom_plots_leave_no_reconnecting_thread(visdom_server):
    """train.py's plots open no incoming socket: once the server stops, nothing keeps reconnecting."""
    from engine.training import VisdomPlots
    port, client = visdom_server
    plots = VisdomPlots("plots_only", port, ["Walking", "Jumping"])
    plots.loss(1, [0.5, 1.0, 1.5, 0.5, 1.0, 1.5])
    assert json.loads(client.get_window_data("loss", env="plots_only"))["content"]["data"][0]["x"] == [0, 1]
    assert _visdom_socket_threads() == []


def test_test_py_split_across_two_processes(toy_root, trained, tmp_path):
    """torchrun with 2 gloo processes: each takes a share of the videos; the files and the
    frame-mAP equal a one-process run."""
    _, exp = trained
    common = ["--data_root", str(toy_root), "--weights", str(exp / "AMTNet_4.pth"), "--device", "cpu",
              "--num_workers", "0", "--batch_size", "4"]
    one = run_script("test.py", *common, "--det_dir", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(_free_port()), "test.py", *common, "--det_dir", str(tmp_path / "two")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.npz"))
    assert files and files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.npz"))
    for f in files:
        a, b = read_video_detections(tmp_path / "one" / f), read_video_detections(tmp_path / "two" / f)
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-6)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    results = [json.loads((tmp_path / f"{n}-frame_map.json").read_text()) for n in ("one", "two")]
    assert results[0]["videos"] == results[1]["videos"] == len(files)
    assert results[0]["frame_map_voc"] == pytest.approx(results[1]["frame_map_voc"], abs=1e-6)
    assert results[0]["ap"] == pytest.approx(results[1]["ap"], abs=1e-6)


def test_initialisation_from_basenet_and_from_two_stream_checkpoints(toy_root, trained, tmp_path):
    """--basenet (an SSD300-layout state dict) for one stream; --base_weights / --extra_weights
    (one-stream checkpoints) for fusion, the 2-frame flow stream's first convolution repeated
    and halved. With lr 0 the saved weights are the loaded ones."""
    _, exp = trained
    source = load_checkpoint(exp / "AMTNet_4.pth")["model"]
    ssd = {k[len("core_base."):]: v for k, v in source.items() if k.startswith("core_base.")}
    torch.save(ssd, tmp_path / "ssd300.pth")
    result, one = train(toy_root, tmp_path, "--max_iter", "1", "--val_step", "1", "--lr", "0",
                        "--basenet", str(tmp_path / "ssd300.pth"), exp="basenet")
    assert result.returncode == 0, result.stderr
    loaded = load_checkpoint(one / "AMTNet_1.pth")["model"]
    for k in ssd:
        torch.testing.assert_close(loaded[f"core_base.{k}"], ssd[k])
    assert not torch.equal(loaded["conf.0.weight"], source["conf.0.weight"])  # heads start fresh

    result, fused = train(toy_root, tmp_path, "--max_iter", "1", "--val_step", "1", "--lr", "0", "--fusion_type", "SUM",
                          "--input_type_extra", "fastOF", "--input_frames_extra", "2",
                          "--base_weights", str(exp / "AMTNet_4.pth"), "--extra_weights", str(exp / "AMTNet_4.pth"),
                          exp="fused")
    assert result.returncode == 0, result.stderr
    loaded = load_checkpoint(fused / "AMTNet_1.pth")["model"]
    torch.testing.assert_close(loaded["core_base.vgg.0.weight"], ssd["vgg.0.weight"])
    torch.testing.assert_close(loaded["core_extra.vgg.0.weight"], ssd["vgg.0.weight"].repeat(1, 2, 1, 1) / 2)
    torch.testing.assert_close(loaded["core_extra.extras.0.weight"], ssd["extras.0.weight"])
