"""What a running study prints: a progress bar, one line per finished trial, a time estimate, the summary."""

import shlex
import shutil
import textwrap

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from cnn.cli import python, script
from study import rounds
from study.artifacts import IN_DATABASE, weights_size
from study.record import FINISHED, StudySettings, surplus_text
from study.storage import mask_password


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def fmt_seconds(seconds: float) -> str:
    if seconds < 9.95:  # a fused member's share of an epoch on a GPU is a fraction of a second: never "0 s"
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# The percentage and the time left come first, so that a narrow terminal (tqdm cuts a line at its width) loses the
# description at the end, never them; the description and the epoch are kept short enough to fit 80 columns.
BAR_FORMAT = "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{desc}{postfix}"
MIN_BAR = 8  # columns the bar keeps at least in an 80-column terminal, in every round (999 trials, 10-hour times)


class Progress:
    """A bar over the study's target trials, one line per finished trial, and a time estimate."""

    def __init__(self, study: optuna.Study, target: int, epochs: int, sequential: bool = False, parallel: int = 1):
        """``sequential``: show the design's rounds; ``parallel``: trials that train at once (for the round's time)."""
        self.target, self.epochs, self.sequential, self.parallel = target, epochs, sequential, parallel
        trials = study.get_trials(deepcopy=False)
        self.finished = sum(t.state in FINISHED for t in trials)
        self.seen = {t.number for t in trials if t.state.is_finished()}
        self.bar = tqdm(
            total=target, initial=min(self.finished, target), unit="trial", dynamic_ncols=True, disable=None, bar_format=BAR_FORMAT
        )
        self.estimated = False
        self.rounds_seen = len(rounds.stored_rounds(study.user_attrs)) if sequential else 0
        self._describe(study)

    def _describe(self, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False, states=FINISHED)
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = max((t.value for t in complete), default=None)
        stored = rounds.stored_rounds(study.user_attrs) if self.sequential else []
        for number in range(self.rounds_seen + 1, len(stored) + 1):
            plan = stored[number - 1]
            tqdm.write(rounds.describe(number, plan) + self._round_time(complete, plan))
            if plan["points"] and plan["open"]:
                tqdm.write(open_text(plan["open"]))
        self.rounds_seen = max(self.rounds_seen, len(stored))
        if self.sequential:  # the round's comparisons as a count; the best accuracy is in the trials' lines
            self.bar.set_description_str(bar_text(len(stored), len(stored[-1]["open"]) if stored else 0, pruned))
        else:
            self.bar.set_description_str(bar_text(None, 0, pruned, best))

    def _round_time(self, complete: list[FrozenTrial], plan: dict) -> str:
        """About how long a round of ``plan`` takes, from the finished trials' times."""
        seconds = [sum(row.get("seconds") or 0 for row in t.user_attrs.get("history", [])) for t in complete]
        if not plan["points"] or not seconds:
            return ""
        return f", about {fmt_seconds(sum(seconds) / len(seconds) * len(plan['points']) / self.parallel)}"

    def epoch(self, trial: optuna.Trial, row: dict) -> None:
        self.bar.set_postfix_str(epoch_text(trial.number, row["epoch"], self.epochs))
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


def bar_text(round_: int | None, n_open: int, pruned: int, best: float | None = None) -> str:
    """The bar's description: the round and how many comparisons it has open (a count: their names have a line of their own),
    pruned trials and the best accuracy, each only when there is one.

    >>> bar_text(2, 7, 0)
    ' round 2, 7 open'
    >>> bar_text(None, 0, 3, 55.123)
    ' 3 pruned, best 55.1%'
    """
    parts = [f"round {round_}" + (f", {n_open} open" if n_open else "")] if round_ is not None else []
    parts += [f"{pruned} pruned"] if pruned else []
    parts += [f"best {best:.1f}%"] if best is not None else []
    return " " + ", ".join(parts) if parts else ""


def epoch_text(number: int, epoch: int, epochs: int) -> str:
    """The bar's postfix while a trial trains (tqdm puts ``, `` before it); its accuracy is in its line when it ends.

    >>> epoch_text(12, 3, 10)
    'trial 12 epoch 3/10'
    """
    return f"trial {number} epoch {epoch}/{epochs}"


def open_text(names: list[str], width: int | None = None) -> str:
    """The open comparisons of a round, by name, wrapped to the terminal: the lines printed when a round starts."""
    width = width or shutil.get_terminal_size((80, 24)).columns
    return textwrap.fill("; ".join(names), width=width, initial_indent="  open: ", subsequent_indent="        ")


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
        load = f"from study import load_model; model = load_model({shown!r}, {study.study_name!r})"
        lines.append(f'best model: {shlex.quote(python())} -c "{load}"')
    where = "the study database" if study.user_attrs.get("artifacts") == IN_DATABASE else study.user_attrs.get("artifacts")
    if kept:
        lines.append(f"weights: {plural(kept, 'trial')}, {size / 2**20:.1f} MiB in {where} (fewer with --keep-weights complete or none)")
    lines.append(f"dashboard with the weights: {shlex.quote(python())} -m study.dashboard --storage {shlex.quote(shown)}")
    lines.append(f"dashboard: {shlex.quote(script('optuna-dashboard'))} {shlex.quote(shown)}")
    if shown != storage:
        lines.append("(the password is shown as ***: put it back in those commands)")
    return "\n".join(lines)

