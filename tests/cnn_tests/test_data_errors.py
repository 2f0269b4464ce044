"""A data folder with many problems is described in one run, in one line that says what to do."""

import shutil

import pytest

from cnn.cli import flag_hint
from cnn.data import DataError, load_data


@pytest.fixture
def tiny(tmp_path, cifar_dir):
    """Two training and one test image of every class of real CIFAR-10."""
    for split, n in (("train", 2), ("test", 1)):
        for folder in sorted((cifar_dir / split).iterdir()):
            (tmp_path / "tiny" / split / folder.name).mkdir(parents=True)
            for file in sorted(folder.iterdir())[:n]:
                shutil.copy(file, tmp_path / "tiny" / split / folder.name / file.name)
    return tmp_path / "tiny"


def test_every_corrupt_image_is_listed_at_once(tiny):
    broken = sorted((tiny / "train").rglob("*.jpg"))[:7]
    for file in broken:
        file.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError) as error:
        load_data(tiny, download=False)
    message = str(error.value)
    # The count, the first five by their place in the folder, how many more, and what to do: one line.
    assert message.startswith(f"7 files of {tiny} are not images torchvision can decode: ")
    assert all(str(f.relative_to(tiny)) in message for f in broken[:5]) and str(broken[5].relative_to(tiny)) not in message
    assert message.endswith(" and 2 more; remove them from the data folder") and "\n" not in message
    assert flag_hint(error.value) == ""  # the message says what to do; no --data-dir advice on top


def test_one_corrupt_image_is_named_with_its_path(tiny):
    file = sorted((tiny / "test").rglob("*.jpg"))[0]
    file.write_bytes(b"garbage")
    with pytest.raises(DataError, match=f"^{file} is not an image torchvision can decode; remove it from the data folder$"):
        load_data(tiny, download=False)


def test_missing_folder_says_what_to_pass_without_internal_names(tmp_path):
    with pytest.raises(DataError) as error:
        load_data(tmp_path / "nope", download=False)
    text = f"{error.value}{flag_hint(error.value)}"
    assert "download=True" not in text
    assert text.endswith(
        " does not exist; pass --data-dir a folder of CIFAR-10 images (train/<class>/ and test/<class>/ folders of images, "
        "or torchvision's cifar-10-batches-py), or leave it out to download CIFAR-10 into ./data"
    )
