"""Study -> tidy frames, read through the typed record (real SQLite, no training)."""

from reports_tests.conftest import make_study, make_trial, paired_settings, record

from reports.frames import frames_from_records, load_frames


def test_frames_hold_one_row_per_trial_and_per_epoch():
    records = [
        record(0, "relu", "mse", 1e-3, 0, [20.0, 30.0]),
        record(1, "tanh", "mse", 1e-3, 1, [25.0], state="pruned"),
        record(2, "tanh", "mse", 1e-2, 0, [15.0, 9.0], diverged=True),
    ]
    frames = frames_from_records("s", paired_settings(epochs=2), records)
    t = frames.trials.set_index("number")
    assert t.loc[0, ["final_test_acc", "peak_test_acc", "epochs_run", "replicate", "gap"]].tolist() == [30.0, 30.0, 2, 0, 5.0]
    assert t.loc[1, "state"] == "pruned" and t.loc[2, "diverged"]
    assert len(frames.epochs) == 5 and set(frames.epochs["replicate"]) == {0, 1}
    assert frames.chance == 10.0 and frames.n_epochs == 2 and frames.settings.paired


def test_a_first_release_database_still_reports(db):
    # make_study writes what the first release wrote: settings without a format, no replicate, no config.
    make_study(db, [make_trial("relu", "cross_entropy", 1e-3, [30.0, 40.0, 50.0], baseline=True)])
    frames = load_frames(db, "synthetic")
    assert frames.settings.format == 1 and not frames.settings.paired
    assert frames.trials["replicate"].tolist() == [0] and frames.trials["baseline"].tolist() == [True]
    assert frames.confusion[0][3][5] == 7
