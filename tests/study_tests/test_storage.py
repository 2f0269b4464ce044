"""Storage helpers on real SQLite files (no training)."""

import optuna
import pytest

from study.storage import StudyError, command_line, load_existing_study, mask_password, open_storage, output_dir, sqlite_path


def test_mask_password_and_command_line():
    url = "postgresql://me:hunter2@db:5432/s"
    assert mask_password(url) == "postgresql://me:***@db:5432/s"
    assert (
        command_line("study.run", ["--storage", url, "--trials", "3"])
        == "python -m study.run --storage 'postgresql://me:***@db:5432/s' --trials 3"
    )
    assert "hunter2" not in command_line("study.run", [f"--storage={url}"])


def test_output_dir_sits_beside_a_sqlite_file_else_under_runs(tmp_path):
    assert output_dir(f"sqlite:///{tmp_path}/a.db", "s", "report") == tmp_path / "s-report"
    assert str(output_dir("postgresql://h/db", "s", "artifacts")) == "runs/s-artifacts"
    assert sqlite_path("sqlite:///:memory:") is None


def test_open_storage_refuses_a_missing_file_for_readers(tmp_path):
    with pytest.raises(StudyError, match="there is no study database at"):
        open_storage(f"sqlite:///{tmp_path}/none.db", must_exist=True)
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [("nonsense", "malformed storage URL"), ("redis://x/0", "unsupported storage 'redis'"), ("sqlite:///{tmp}/no/s.db", "does not exist")],
)
def test_open_storage_refuses_bad_urls(tmp_path, url, message):
    with pytest.raises(StudyError, match=message):
        open_storage(url.replace("{tmp}", str(tmp_path)))


def test_load_existing_study_lists_the_studies_there(db):
    optuna.create_study(study_name="one", storage=db)
    assert load_existing_study(db, "one").study_name == "one"
    with pytest.raises(StudyError, match=r"no study 'two' in .*; studies there: 'one'"):
        load_existing_study(db, "two")
