from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ucf24_dir():
    """The real UCF101-24 annotations in the read-only ``shared/`` folder beside the repository."""
    path = REPO_ROOT.parent / "shared" / "ucf24"
    assert (path / "pyannot.pkl").is_file(), f"real annotations missing: expected {path}/pyannot.pkl"
    return path

