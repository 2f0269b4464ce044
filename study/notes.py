"""What optuna-dashboard shows beside the numbers: the objective's name, the study's note and each trial's note.

The dashboard is where many users look first. Without these it says "Objective 0", shows empty
notes, and ranks ``replicate`` (the paired design's seed) among the hyperparameters: it reads
the opposite of the report. Here the objective is named after what the trials return, the
study's note holds the report's answers in short (written after each report), and each trial's
note says what it is: its grid point and replicate, its pairs, how it ended.

``replicate`` stays a trial parameter: the grid sampler, a resumed study and the report find a
trial's grid point by its parameters, replicate included. The notes say what it is instead.
"""

import re
import warnings
from pathlib import Path

import optuna

from cnn import TrainResult
from study.record import StudySettings

METRIC_NAMES = {"test": "test accuracy (%)", "validation": "validation accuracy (%)"}  # StudySettings.selection -> name

REPLICATE_TEXT = (
    "**`replicate` is not a hyperparameter.** It is the paired design's seed: trials of one replicate start from the same "
    "weights and see the same batches, so that two trials differing in one option form a pair. The dashboard's "
    "*Hyperparameter Importance* ranks it with activation, loss and lr because Optuna sees it as a parameter; the report "
    "counts it as noise (a blocking factor). Read the report's variance shares instead."
)
SURPLUS_TEXT = (
    "**Surplus trial: never trained.** Another process took the grid point this trial was asked for at the same moment. "
    "Optuna cannot delete a trial, so it is marked failed; the progress, the closing lines and the report count it apart. "
    "Ignore it."
)
LONGEST_FINDING = 220  # characters of a finding quoted in the study's note; longer ones are cut at a clause


def name_metric(study: optuna.Study) -> str:
    """Name the study's objective after what its trials return (``test accuracy (%)`` or ``validation accuracy (%)``).

    Returns:
        The name. A study made by another program (no settings) is named as test accuracy.
    """
    selection = StudySettings.from_attrs(study.user_attrs).selection if "settings" in study.user_attrs else "test"
    name = METRIC_NAMES.get(selection, METRIC_NAMES["test"])
    if study.metric_names != [name]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable in use since Optuna 3.2
            study.set_metric_names([name])
    return name


def write_study_note(study: optuna.Study, markdown: str) -> None:
    """Name the study's objective and make ``markdown`` the study's note in optuna-dashboard (its study page).

    Args:
        study: the study, opened on its storage.
        markdown: the note's text (optuna-dashboard renders Markdown; figures are not embedded).

    Example:
        >>> study = optuna.create_study(direction="maximize")  # doctest: +SKIP
        >>> write_study_note(study, "## Answers\\n\\n- relu and leaky_relu are equivalent.")  # doctest: +SKIP
    """
    from optuna_dashboard import save_note

    name_metric(study)
    save_note(study, markdown)


def note_report(study: optuna.Study, report: str | Path, full: bool = False) -> str:
    """Write the study's note from the report at ``report``: its answers in short (``full``: its whole text).

    Returns:
        The note written.
    """
    path = Path(report)
    text = path.read_text()
    note = text if full else report_note(text, path)
    write_study_note(study, note)
    return note


def report_note(report: str, path: str | Path | None = None) -> str:
    """The study's note for a report's markdown: its answers, its error rate, where the variance comes from, its path.

    The answers are the report's ``## Answers`` section when it has one; else the first findings of each numbered
    question (the first list under each ``## N. ...`` heading).
    """
    parts = ["## What the report answers", answers_text(report) or "The report answers no question yet (no finished trials)."]
    # "**One error rate for the whole report: at most 5% of its claims ... false** (false discovery rate, ...)."
    error_rate = _sentence(report, r"One error rate for the whole report: *(.+?)\*\*")
    if error_rate:
        error_rate = error_rate[0].upper() + error_rate[1:] + _sentence(report, r"One error rate for the whole report:.+?\*\*( \(.+?\))")
        error_rate = error_rate.rstrip(".") + "."
        error_rate = error_rate.replace("any claim below", "any claim of the report").replace("of its claims", "of the report's claims")
        parts.append(f"**Error rate:** {error_rate}")
    shares = _sentence(report, r"(Where the variation in .+? comes from, as percent of its variance(?:, with 95% .+?)?: .+?\.)(?=\s|$)")
    shares = shares or _sentence(report, r"(Parameter importance \(Optuna's fANOVA.+?as percent: .+?\.)(?=\s|$)")
    parts.append(f"**Variance shares (the report):** {shares}\n\n{REPLICATE_TEXT}" if shares else REPLICATE_TEXT)
    if path is not None:
        parts.append(f"**The full report** (figures, intervals, every comparison): `{Path(path).resolve()}`")
    return "\n\n".join(parts) + "\n"


def answers_text(report: str) -> str:
    """A report's ``## Answers`` section, else each numbered question's title with its first list of findings."""
    sections = _sections(report)
    if "Answers" in sections:
        return sections["Answers"].strip()
    out = []
    for title, body in sections.items():
        if not re.match(r"\d+\. ", title):
            continue
        findings = _first_list(body)
        if findings:
            out.append(f"**{title}**\n\n" + "\n".join(f"- {_shorten(item)}" for item in findings))
    return "\n\n".join(out)


def describe_study(study: optuna.Study) -> None:
    """Name the objective, and give a study without a note one that says what it is until its first report."""
    from optuna_dashboard import get_note

    name_metric(study)
    if get_note(study):
        return
    paired = "settings" in study.user_attrs and StudySettings.from_attrs(study.user_attrs).paired
    what = (
        "It runs the paired design: every activation × loss × learning rate of a grid, trained from the same seeds "
        "(replicates), so that trials differing in one option compare pair by pair."
        if paired
        else "Its sampler hunts for the best configuration; its comparisons are observational."
    )
    write_study_note(
        study,
        "## What this study is\n\nIt answers the lecture notebook's four questions about its CIFAR-10 CNN (activation, loss, "
        f"learning rate, epochs) by experiment. {what}\n\nThe report, built when the study ends, puts its answers here."
        + (f"\n\n{REPLICATE_TEXT}" if paired else "")
        + "\n",
    )


def trial_note(trial: optuna.Trial, outcome: str, paired: bool, seed: int) -> str:
    """A trial's note: what it trained, its pairs (paired design) and ``outcome``, a sentence on how it ended."""
    p = trial.params
    point = f"activation `{p.get('activation')}`, loss `{p.get('loss')}`, learning rate {p.get('lr', float('nan')):.3g}"
    if trial.user_attrs.get("baseline"):
        what = f"**The notebook's configuration** ({point}), run as an extra trial off the grid from seed {seed}; it has no pairs."
        return f"{what}\n\n{outcome}\n"
    if not paired or "replicate" not in p:
        what = f"**Sampled configuration:** {point}, trained from seed {seed}. No paired design: the report compares trials by matching."
        return f"{what}\n\n{outcome}\n"
    replicate = p["replicate"]
    what = (
        f"**Grid point** of the paired design: {point}; **replicate {replicate}** (seed {seed}: the same initial weights and "
        f"batches as every trial of replicate {replicate})."
    )
    return f"{what}\n\n{_pairs_text(trial)}\n\n{outcome}\n\n{REPLICATE_TEXT}\n"


def outcome_text(state: str, epochs: int, value: float | None, metric: str, diverged: bool = False) -> str:
    """How a trial ended, in one sentence: ``state`` is ``complete`` or ``pruned``.

    >>> outcome_text("complete", 10, 55.123, "test accuracy")
    '**Complete** after 10 epochs: test accuracy 55.12%.'
    """
    at = f"{metric} {value:.2f}%" if value is not None and value == value else f"{metric} unknown"
    if diverged:
        return (
            f"**Diverged** at epoch {epochs}: its loss became NaN or infinite and training stopped. It counts as complete, "
            f"with the accuracy it had ({at})."
        )
    if state == "pruned":
        return f"**Pruned** after epoch {epochs}: the pruner stopped it as unpromising ({at} then)."
    return f"**Complete** after {epochs} epoch{'s' if epochs != 1 else ''}: {at}."


def note_finished(trial: optuna.Trial, result: TrainResult, metric: str, paired: bool, seed: int) -> None:
    """Write the note of a trial that has trained: what it is, its pairs, how it ended (``metric``: the reported column)."""
    pruned = result.stopped and not result.diverged
    value = result.history[-1][metric] if result.history else None
    name = "validation accuracy" if metric == "val_acc" else "test accuracy"
    ended = outcome_text("pruned" if pruned else "complete", len(result.history), value, name, result.diverged)
    write_trial_note(trial, trial_note(trial, ended, paired, seed))


def write_trial_note(trial: optuna.Trial, body: str) -> None:
    """Make ``body`` the trial's note in optuna-dashboard (shown on its page of the study)."""
    from optuna_dashboard import save_note

    save_note(trial, body)


def _pairs_text(trial: optuna.Trial) -> str:
    """The trials that form a pair with ``trial`` (same lr and replicate, one option changed), with their numbers so far."""
    p = trial.params
    settings = StudySettings.from_attrs(trial.study.user_attrs) if "settings" in trial.study.user_attrs else None
    space = settings.search_space if settings is not None else {}
    held: dict[tuple, int] = {}
    for other in trial.study.get_trials(deepcopy=False):
        if other.number != trial.number and other.state.is_finished() and not other.user_attrs.get("surplus"):
            q = other.params
            held.setdefault((q.get("activation"), q.get("loss"), q.get("lr"), q.get("replicate")), other.number)
    lines = []
    for factor, options in (("activation", space.get("activations", [])), ("loss", space.get("losses", []))):
        others = [o for o in options if o != p.get(factor)]
        if not others:
            continue
        listed = []
        for option in others:
            key = {**p, factor: option}
            number = held.get((key.get("activation"), key.get("loss"), key.get("lr"), key.get("replicate")))
            listed.append(f"`{option}` (trial {number})" if number is not None else f"`{option}` (not run when this trial ended)")
        lines.append(f"- other {factor}: {', '.join(listed)}")
    if not lines:
        return "**Its pairs:** none (the search space has one activation and one loss)."
    return "**Its pairs** (same learning rate and replicate, one option changed; the report compares it with each):\n" + "\n".join(lines)


def _sections(report: str) -> dict[str, str]:
    """``## `` headings -> their text, in order."""
    sections: dict[str, str] = {}
    title = None
    for line in report.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            sections[title] = ""
        elif title is not None:
            sections[title] += line + "\n"
    return sections


def _first_list(body: str) -> list[str]:
    """The top-level items of the first bullet list of a section (sub-items and later lists left out)."""
    items: list[str] = []
    for line in body.splitlines():
        if line.startswith("- "):
            items.append(line[2:].strip())
        elif items and line.strip() and not line.startswith(" "):
            break  # a paragraph after the list: the list is over
    return items


def _shorten(text: str) -> str:
    """A finding cut after its headline: a bold verdict that is a sentence stands alone; else the first clauses."""
    bold = re.match(r"\*\*(.+?)\*\*", text)
    if bold and bold.group(1).endswith("."):
        return bold.group(0)
    if len(text) <= LONGEST_FINDING:
        return text
    cut = text.rfind("; ", 0, LONGEST_FINDING)
    return (text[:cut] if cut > 0 else text[:LONGEST_FINDING].rstrip()) + " …"


def _sentence(report: str, pattern: str) -> str:
    match = re.search(pattern, report, flags=re.MULTILINE)
    return match.group(1) if match else ""
