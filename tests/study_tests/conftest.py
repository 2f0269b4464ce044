import os
import uuid

import pytest
import sqlalchemy


@pytest.fixture
def small_args(cifar_dir) -> list[str]:
    """Flags for a quick study on 500 training and 200 test images of real CIFAR-10."""
    return ["--data-dir", str(cifar_dir), "--train-size", "500", "--test-size", "200", "--no-report"]


@pytest.fixture
def postgres_url():
    """A URL into a new, empty schema of the test database, as a new database of a first study would be."""
    url = os.environ.get("CNN_STUDY_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must start PostgreSQL and set CNN_STUDY_POSTGRES_URL (see .ci/run)")
        pytest.skip("set CNN_STUDY_POSTGRES_URL to a PostgreSQL database to run this test (.ci/postgres.sh starts one)")
    schema = f"test_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(url, pool_pre_ping=True)  # the fault tests restart the server
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
