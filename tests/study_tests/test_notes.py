"""optuna-dashboard speaks the study's language: the objective named, the report's answers in the study's note, each trial's note."""

import shutil
from pathlib import Path

import optuna
import pytest
from optuna_dashboard import get_note

from reports.build import main as build_main
from study.notes import METRIC_NAMES, REPLICATE_TEXT, answers_text, report_note
from study.run import main as run_main

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "example"


@pytest.mark.skipif(not (EXAMPLE / "study.db").is_file(), reason="no example database")
def test_report_build_names_the_metric_and_writes_the_answers_as_the_study_note(tmp_path, capsys):
    copy = tmp_path / "study.db"
    shutil.copy(EXAMPLE / "study.db", copy)  # the shipped database stays untouched
    storage = f"sqlite:///{copy}"
    out = tmp_path / "report"
    assert build_main(["--storage", storage, "--study-name", "cifar10-sequential", "--out", str(out), "--no-samples"]) == 0
    study = optuna.load_study(study_name="cifar10-sequential", storage=storage)
    assert study.metric_names == ["test accuracy (%)"]
    note = get_note(study)
    # The report's headline verdicts, its error rate, its variance shares next to what replicate is, and its path.
    assert note.startswith("## What the report answers\n\n**What changes with the activation function?**")
    answers = note.split("\n\n**Error rate:**")[0]
    assert answers.count("\n\n**What ") == 4 and "**What do more epochs change?**" in answers  # the report's four answers
    assert "**Error rate:** At most 5% of the report's claims are expected to be false (false discovery rate" in note
    assert "**Variance shares (the report):** Where the variation in test accuracy (epoch 10) comes from" in note
    assert REPLICATE_TEXT in note and f"`{(out / 'report.md').resolve()}`" in note
    assert "warning" not in capsys.readouterr().err


def test_an_answers_section_is_taken_as_it_is():
    report = "# Title\n\nIntro.\n\n## Answers\n\n- Activation: relu and leaky_relu are equivalent.\n\n## 1. Activation\n\n- **long**\n"
    assert answers_text(report) == "- Activation: relu and leaky_relu are equivalent."
    assert report_note(report).startswith("## What the report answers\n\n- Activation: relu and leaky_relu are equivalent.\n\n")


def test_a_study_names_its_metric_and_notes_every_trial_and_its_answers(db, small_args):
    args = [a for a in small_args if a != "--no-report"]  # the report is built: it writes the study's note
    assert run_main([*args, "--storage", db, "--epochs", "1", "--trials", "3", "--val-split", "0.1"]) == 0
    study = optuna.load_study(study_name="cnn-study", storage=db)
    # With --val-split the trials return validation accuracy: the dashboard's axis says so.
    assert study.metric_names == [METRIC_NAMES["validation"]] == ["validation accuracy (%)"]
    assert get_note(study).startswith("## What the report answers\n\n**What changes with the activation function?**")
    first, second, third = sorted(study.trials, key=lambda t: t.number)
    notes = {t.number: get_note(optuna.Trial(study, t._trial_id)) for t in (first, second, third)}
    p = third.params
    assert notes[third.number].startswith(
        f"**Grid point** of the paired design: activation `{p['activation']}`, loss `{p['loss']}`, learning rate {p['lr']:.3g}; "
        "**replicate 0** (seed 0"
    )
    # Round 0 runs the grid replicate-major, activation fastest: the second and third trials pair with the first.
    assert f"`{first.params['activation']}` (trial {first.number})" in notes[third.number]
    assert "**Complete** after 1 epoch: validation accuracy" in notes[third.number] and REPLICATE_TEXT in notes[third.number]
