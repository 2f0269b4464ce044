"""What a running study prints: a progress bar, one line per finished trial, a time estimate, the summary."""

import shlex

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from study import rounds
from study.artifacts import IN_DATABASE, weights_size
from study.record import FINISHED, StudySettings, surplus_text
from study.storage import mask_password


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def fmt_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """A bar over the study's target trials, one line per finished trial, and a time estimate."""

    def __init__(self, study: optuna.Study, target: int, epochs: int, sequential: bool = False, parallel: int = 1):
        """``sequential``: show the design's rounds; ``parallel``: trials that train at once (for the round's time)."""
        self.target, self.epochs, self.sequential, self.parallel = target, epochs, sequential, parallel
        trials = study.get_trials(deepcopy=False)
        self.finished = sum(t.state in FINISHED for t in trials)
        self.seen = {t.number for t in trials if t.state.is_finished()}
        self.bar = tqdm(total=target, initial=min(self.finished, target), unit="trial", dynamic_ncols=True, disable=None)
        self.estimated = False
        self.rounds_seen = len(rounds.stored_rounds(study.user_attrs)) if sequential else 0
        self._describe(study)

    def _describe(self, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False, states=FINISHED)
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = f", best {max(t.value for t in complete):.2f}%" if complete else ""
        where = ""
        if self.sequential:
            stored = rounds.stored_rounds(study.user_attrs)
            for number in range(self.rounds_seen + 1, len(stored) + 1):
                tqdm.write(rounds.describe(number, stored[number - 1]) + self._round_time(complete, stored[number - 1]))
            self.rounds_seen = len(stored)
            where = f"round {len(stored)}" + (f" ({stored[-1]['open']} open)" if stored else "") + ": "
        self.bar.set_description(f"{where}{len(trials)} done, {pruned} pruned{best}")

    def _round_time(self, complete: list[FrozenTrial], plan: dict) -> str:
        """About how long a round of ``plan`` takes, from the finished trials' times."""
        seconds = [sum(row.get("seconds") or 0 for row in t.user_attrs.get("history", [])) for t in complete]
        if not plan["points"] or not seconds:
            return ""
        return f", about {fmt_seconds(sum(seconds) / len(seconds) * len(plan['points']) / self.parallel)}"

    def epoch(self, trial: optuna.Trial, row: dict) -> None:
        self.bar.set_postfix_str(f"trial {trial.number} epoch {row['epoch']}/{self.epochs} test {row['test_acc']:.1f}%")
        if not self.estimated:
            self.estimated = True
            per_trial = row["seconds"] * self.epochs
            left = max(self.target - self.finished, 1)
            tqdm.write(
                f"first epoch took {fmt_seconds(row['seconds'])}: about {fmt_seconds(per_trial)} per trial of "
                f"{plural(self.epochs, 'epoch')}, at most {fmt_seconds(per_trial * left)} for the {plural(left, 'trial')} to go"
            )

    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.seen.add(trial.number)
        if trial.user_attrs.get("surplus"):
            return  # never trained: another process took the grid point it was asked for (summarize() counts it)
        if trial.state in FINISHED:
            self.finished += 1
            self.bar.update(1)
        self._describe(study)
        self.bar.set_postfix_str("")
        tqdm.write(describe_trial(trial))

    def poll(self, study: optuna.Study) -> None:
        """Catch up with trials other processes finished: one line each, and the bar."""
        for trial in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.FAIL)):
            if trial.number not in self.seen:
                self.trial_done(study, trial)

    def close(self) -> None:
        self.bar.close()


def describe_trial(trial: FrozenTrial) -> str:
    """One line for a finished trial: its state, accuracy, parameters and time."""
    p = trial.params
    params = f"{p.get('activation')} / {p.get('loss')} / lr {p.get('lr', float('nan')):.2e}"
    if "replicate" in p:
        params += f" / rep {p['replicate']}"
    history = trial.user_attrs.get("history", [])
    seconds = sum(row.get("seconds") or 0 for row in history)
    epochs = len(history)
    if trial.state == TrialState.COMPLETE:
        diverged = trial.user_attrs.get("diverged")
        what = f"diverged at epoch {epochs}" if diverged else f"complete after {plural(epochs, 'epoch')}"
        return f"trial {trial.number:3d} {trial.value:6.2f}%  {params}  {what}, {fmt_seconds(seconds)}"
    if trial.state == TrialState.PRUNED:
        last = history[-1]["test_acc"] if history else float("nan")
        return f"trial {trial.number:3d} {last:6.2f}%  {params}  pruned after epoch {epochs}, {fmt_seconds(seconds)}"
    return f"trial {trial.number:3d}  {trial.state.name.lower()}  {params}"


def summarize(study: optuna.Study, storage: str) -> str:
    """The closing lines: counts, the best trial, how to load it, the dashboard."""
    counts = {state: 0 for state in TrialState}
    surplus = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("surplus"):
            surplus += 1
        else:
            counts[trial.state] += 1
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    diverged = sum(bool(t.user_attrs.get("diverged")) for t in complete)
    shown = mask_password(storage)
    lines = [
        f"study {study.study_name!r}: {counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]} finished "
        f"({counts[TrialState.COMPLETE]} complete of which {diverged} diverged, {counts[TrialState.PRUNED]} pruned), "
        f"{counts[TrialState.FAIL]} failed"
        + surplus_text(surplus)
    ]
    if complete:
        best = study.best_trial
        metric = "validation" if StudySettings.from_attrs(study.user_attrs).selection == "validation" else "test"
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
        lines.append(f"best: trial {best.number}, {best.value:.2f}% {metric} accuracy: {params}")
    kept, size = weights_size(study)
    if complete and study.best_trial.user_attrs.get("weights_artifact"):
        lines.append(f'best model: python -c "from study import load_model; model = load_model({shown!r}, {study.study_name!r})"')
    where = "the study database" if study.user_attrs.get("artifacts") == IN_DATABASE else study.user_attrs.get("artifacts")
    if kept:
        lines.append(f"weights: {plural(kept, 'trial')}, {size / 2**20:.1f} MiB in {where} (fewer with --keep-weights complete or none)")
    lines.append(f"dashboard with the weights: python -m study.dashboard --storage {shlex.quote(shown)}")
    lines.append(f"dashboard: optuna-dashboard {shlex.quote(shown)}")
    if shown != storage:
        lines.append("(the password is shown as ***: put it back in those commands)")
    return "\n".join(lines)
