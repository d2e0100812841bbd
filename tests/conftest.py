import os
from pathlib import Path

import pytest

# Before torch loads: its OpenMP threads spin while they wait, which on a busy machine makes a step tens of
# times slower (BENCHMARKS.md, "Real time"); demo.py and pipeline.py set the same.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# demo.py's network: PyTorch, as test.py's, whether or not the optional ONNX packages are installed (the tests
# that compare demo.py with test.py need the same backend); tests of the onnxruntime backend ask for it.
os.environ["AMTNET_BACKEND"] = "torch"

REPO_ROOT = Path(__file__).resolve().parents[1]
LONG_FIRST = "tests/test_pipeline.py"  # the suite's one long test (make demo's whole pipeline)


def pytest_collection_modifyitems(items):
    """The long file first: under `make test`'s two workers (pytest-xdist, whole files per worker) it runs
    beside all the others instead of after them; a plain pytest run only starts with it."""
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_FIRST))


def optional(available: bool, what: str):
    """Skip a test whose optional dependency ``what`` is missing (a user's pytest without them); CI sets
    ``$AMTNET_REQUIRE_OPTIONAL`` (.ci/run), and there the test fails instead, so no optional path goes
    untested unnoticed."""
    if available:
        return
    if os.environ.get("AMTNET_REQUIRE_OPTIONAL"):
        pytest.fail(f"missing: {what} (and $AMTNET_REQUIRE_OPTIONAL is set)")
    pytest.skip(f"missing: {what}")


@pytest.fixture(scope="session")
def ucf24_dir():
    """The real UCF101-24 annotations shipped in ``data/ucf24`` (read-only: copy before changing)."""
    from data.layout import UCF24_ANNOT_DIR
    return UCF24_ANNOT_DIR


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory):
    """A small toy dataset shared by the tests that only read it."""
    from data.toy import ToyConfig, make_toy_dataset
    root = tmp_path_factory.mktemp("toy")
    make_toy_dataset(root, ToyConfig(num_videos=8, seed=3, min_frames=24, max_frames=30), progress=False)
    return root
