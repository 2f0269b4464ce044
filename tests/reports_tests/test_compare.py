"""reports.compare on the shipped example's real study: the same data twice, and a planted change of sign."""

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from reports import compare

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "example"


def _copy(tmp: Path, name: str) -> Path:
    path = tmp / name
    shutil.copy(EXAMPLE / "study.db", path)
    return path


def _swap_losses(path: Path, first: str, second: str) -> None:
    """Relabel every trial of loss ``first`` as ``second`` and back: each difference between the two changes sign."""
    with sqlite3.connect(path) as db:
        choices = compare.optuna.distributions.json_to_distribution(
            db.execute("SELECT distribution_json FROM trial_params WHERE param_name = 'loss' LIMIT 1").fetchone()[0]
        ).choices
        i, j = float(choices.index(first)), float(choices.index(second))
        db.execute(
            "UPDATE trial_params SET param_value = CASE param_value WHEN ? THEN ? WHEN ? THEN ? ELSE param_value END "
            "WHERE param_name = 'loss'",
            (i, j, j, i),
        )


@pytest.fixture(scope="module")
def rungs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ladder")
    same = _copy(tmp, "same.db")
    planted = _copy(tmp, "planted.db")
    _swap_losses(planted, "cross_entropy", "mse")
    load = compare.load_rung
    return load(str(EXAMPLE)), load(str(same)), load(f"sqlite:///{planted}::cifar10-sequential")


def test_compare_same_data_gives_the_same_answers(rungs):
    example, same, _ = rungs
    changes, partial = compare.ladder([example, same])
    assert not partial
    assert len(changes) == len(example.comparisons) > 50
    assert {c.status for c in changes} <= {"held", "still open"}
    # both kinds occur: the example decides some comparisons and leaves others open
    assert {c.status for c in changes} == {"held", "still open"}
    assert all(c.change == 0 and not c.shown for c in changes)


def test_compare_planted_sign_change_is_reported_as_changed(rungs):
    example, _, planted = rungs
    changes, _ = compare.ladder([example, planted])
    by_key = {c.key: c for c in changes}
    flipped = [c for k, c in by_key.items() if k[1] == "difference" and {k[2], k[3]} == {"cross_entropy", "mse"} and k[4].startswith("lr")]
    claimed = [c for c in flipped if c.low.outcome == "difference"]
    assert claimed, "the example claims cross_entropy ahead of mse at some learning rate"
    for c in claimed:
        # the same comparison with the labels swapped: the sign flips, the change is shown and its interval excludes zero
        assert c.high.diff == pytest.approx(-c.low.diff)
        assert c.status == "changed" and c.shown
        assert c.ci_high < 0 or c.ci_low > 0
    # the activation answers did not move: their verdicts held
    activation = [c for c in changes if c.key[0] == "activation"]
    assert {c.status for c in activation} <= {"held", "still open"}


def test_compare_interval_agrees_with_every_change_claim(rungs):
    example, _, planted = rungs
    for rate in compare.ERROR_RATES:
        changes, _ = compare.ladder([example, planted], rate)
        for c in (c for c in changes if c.tested):
            assert c.shown == (c.ci_low > 0 or c.ci_high < 0)


def test_compare_writes_page_and_csv(tmp_path, rungs):
    example, _, planted = rungs
    changes, partial = compare.ladder([example, planted])
    (tmp_path / "out").mkdir()
    text = compare.page([example, planted], changes, partial, "fdr", tmp_path / "out")
    assert text.startswith("# Do the answers hold as the data grows?")
    for question in compare.QUESTIONS:
        assert f"**{question.capitalize()}.**" in text
    assert "The answer moved with the data" in text  # the loss question
    table = compare.frame([example, planted], changes)
    assert len(table) == len(example.comparisons.keys() | planted.comparisons.keys())  # every comparison, shared or not
    assert set(table["status_1"]) <= {*compare.STATUSES, "absent"}
    assert (table["status_1"] == "changed").sum() == sum(c.status == "changed" for c in changes)
    assert (tmp_path / "out" / "compare_loss.png").stat().st_size > 0


def test_compare_lists_comparisons_only_one_study_makes(tmp_path, rungs):
    example, same, _ = rungs
    fewer = compare.Rung(same.source, same.study_name, 10_000, same.test_size, same.n_trials,
                         {k: e for k, e in same.comparisons.items() if "0.1" not in k[4]})  # fmt: skip
    changes, partial = compare.ladder([example, fewer])
    assert partial and all(have == [0] for have in partial.values())
    assert len(changes) + len(partial) == len(example.comparisons)
    assert "Comparisons only some studies make" in compare.page([example, fewer], changes, partial, "fdr", tmp_path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["docs/example"], "at least two studies"),
        (["no-such-folder", "docs/example"], "no-such-folder: no such study"),
        (["docs/example::nope", "docs/example"], "no study 'nope'"),
    ],
)
def test_compare_bad_input_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(EXAMPLE.parents[1])
    with pytest.raises(SystemExit) if len(argv) < 2 else _nothing():
        assert compare.main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("error:")
    assert not (tmp_path / "out").exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_compare_csv_round_trips(tmp_path, rungs):
    example, same, _ = rungs
    path = compare.compare([str(EXAMPLE), str(EXAMPLE)], tmp_path)
    table = pd.read_csv(path.parent / "compare.csv")
    assert set(table["status_1"]) <= {"held", "still open"}


def test_compare_reads_the_gpu_checks_archive(tmp_path):
    # the GPU check's archive holds the log, figures.json, study.db and the report: the study joins the ladder as it came back
    import tarfile

    archive = tmp_path / "gpu-check-results.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(EXAMPLE / "study.db", arcname="study.db")
        tar.add(EXAMPLE / "report.md", arcname="report/report.md")
    storage, name = compare.parse_source(str(archive))
    assert name is None and storage.startswith("sqlite:///") and storage.endswith("study.db")
    with sqlite3.connect(storage.removeprefix("sqlite:///")) as db:
        assert db.execute("SELECT study_name FROM studies").fetchone() == ("cifar10-sequential",)


LADDER = EXAMPLE.parent / "ladder"


RUNGS = ("docs/example", "docs/example-10k", "docs/example-50k")


@pytest.mark.skipif(not all((EXAMPLE.parents[1] / rung / "study.db").is_file() for rung in RUNGS), reason="a rung is not shipped")
def test_the_shipped_ladder_page_is_what_the_three_examples_build(tmp_path, monkeypatch):
    # docs/ladder/ is what `make ladder` writes from the three shipped databases (read, not written to), named as it names
    # them: 2,000 and 10,000 training images on this CPU, all 50,000 on an H200 (the GPU check's study).
    monkeypatch.chdir(EXAMPLE.parents[1])
    assert compare.main([*RUNGS, "--out", str(tmp_path)]) == 0
    built, shipped = pd.read_csv(tmp_path / "compare.csv"), pd.read_csv(LADDER / "compare.csv")
    assert built.columns.tolist() == shipped.columns.tolist() and len(built) == len(shipped)
    pd.testing.assert_frame_equal(built, shipped, check_exact=False, rtol=1e-9, atol=1e-12)
    page = (tmp_path / "compare.md").read_text()
    assert page == (LADDER / "compare.md").read_text()
