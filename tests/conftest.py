"""Shared fixtures: small real subsets of the CIFAR-10 JPEG set in ../shared/data."""

import os
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = Path(os.environ.get("CIFAR10_JPG", REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))


@pytest.fixture
def db(tmp_path) -> str:
    """A SQLite storage URL in the test's own folder (the file does not exist yet)."""
    return f"sqlite:///{tmp_path / 'study.db'}"


def extract_subset(dest: Path, per_class: dict[str, int]) -> Path:
    """Extract the first ``per_class[split]`` images of every class of each split into ``dest``."""
    if not ARCHIVE.is_file():
        message = f"the CIFAR-10 JPEG archive is not at {ARCHIVE}; set CIFAR10_JPG to its path"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI has the archive: its absence is a broken setup, not a reason to skip
        pytest.skip(message)
    taken: dict[tuple[str, str], int] = defaultdict(int)
    with tarfile.open(ARCHIVE) as archive:
        for member in archive:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or parts[0] not in per_class:
                continue
            key = (parts[0], parts[1])
            if taken[key] < per_class[parts[0]]:
                taken[key] += 1
                archive.extract(member, dest, filter="data")
    return dest


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory) -> Path:
    """5,000 training and 1,000 test images of real CIFAR-10 (500 and 100 per class)."""
    return extract_subset(tmp_path_factory.mktemp("cifar10-jpg"), {"train": 500, "test": 100})


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    # Each test session gets its own cache, so no test depends on what an earlier run left.
    os.environ["CNN_STUDY_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")


def pytest_collection_modifyitems(items):
    # Every test on real images (the cifar_dir fixture, directly or through another fixture) trains or decodes:
    # slow. `pytest -m "not slow"` leaves the fast unit tests.
    for item in items:
        if "cifar_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
