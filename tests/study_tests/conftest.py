import pytest


@pytest.fixture
def small_args(cifar_dir) -> list[str]:
    """Flags for a quick study on 500 training and 200 test images of real CIFAR-10."""
    return ["--data-dir", str(cifar_dir), "--train-size", "500", "--test-size", "200", "--no-report"]
