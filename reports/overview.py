"""The parts of a report around the four questions: the header with the protocol and how to read it, the data and
the mistakes of the best and the baseline trial, and the study itself (best trials, importance, history, pruning)."""

import math
import shlex
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cnn import DataError, load_data
from reports import analysis, figures, paired, stats
from reports.blocks import Figure, Heading, Section, Table, Text, interval, pct, plural, pts
from reports.frames import Frames
from reports.observational import SEED
from study.record import surplus_text


@dataclass
class Family:
    """The paired report's error control, for its reader: how many tests, at which margin and epoch."""

    size: int  # p-values in the Holm family
    margin: float
    compare_epoch: int
    two_level: int = 0  # comparisons whose interval counts the test images as well as the seeds
    seed_only: int = 0  # comparisons of accuracies whose interval counts the seeds only (trials without predictions)
    n_images: int = 0  # test images of the study
    image_dominated: int = 0  # two-level comparisons whose variance is mostly the test images'
    floor: int = 0  # open comparisons whose advice is more test images (claims.advises_images)
    mismatched: list[int] = field(default_factory=list)  # trials whose stored predictions do not reproduce their accuracies
    no_predictions: int = 0  # trials of the design that stored no per-image predictions
    dataset: str = ""  # the data source's name where it has one ("CIFAR-10"), else ""
    dataset_images: int | None = None  # test images the dataset has (None: unknown, an image folder)
    looks: int = 0  # a sequential study: the most looks its error is spent over (--max-repeats); 0: a fixed design
    spent: str = ""  # a sequential study: its trials against the fixed designs (spent.spent_text)
    repeated: bool = False  # a sequential study whose verdicts below are the repeated ones (sequential.carry_over)
    error_rate: str = "fdr"  # the report's error rate (reports.inference): fdr or fwer
    selected: int = 0  # comparisons that claim (a difference or an equivalence)
    comparisons: int = 0  # comparisons with a test (the family's m)

    @property
    def level(self) -> float:
        """The level the report's intervals end at (before a sequential study's looks): R q / m or Holm's last step."""
        m = max(self.comparisons, 1)
        if self.error_rate == "fdr":
            return max(self.selected, 1) * 0.05 / m
        return 0.05 / max(m - self.selected + 1, 1)

    @property
    def level_text(self) -> str:
        return f"{self.level:.2g}"


def error_text(family: Family) -> str:
    """How to read the paired report: pairs, the one error rate and what it promises, the margin, the interactions."""
    m, r = family.comparisons, family.selected
    if family.error_rate == "fdr":
        control = (
            f"**One error rate for the whole report: at most 5% of its claims are expected to be false** (false discovery "
            f"rate, Benjamini–Hochberg over its {m} tested comparisons, `--error-rate fdr`). {r} of them claim something, so "
            f"every interval is printed at level 1 − {r} × 0.05/{m} (1 − {family.level_text}; Benjamini–Yekutieli "
            "false-coverage intervals: at most 5% of the claimed comparisons' intervals miss their true difference)"
        )
    else:
        control = (
            f"**One error rate for the whole report: the chance that any claim below is false is at most 5%** (family-wise "
            f"error rate, Holm's step-down over its {m} tested comparisons, `--error-rate fwer`); the {r} claimed "
            f"comparisons' intervals are printed at level 1 − {family.level_text} (Holm's last step) and the open ones' at "
            "the next step's level"
        )
    return (
        "How to read it: trials of the same replicate train from the same seed (same initial weights, same batches), "
        "so two trials that differ in one option only form a *pair*, and their difference is free of run-to-run "
        f"noise. Questions 1–3 compare at epoch {family.compare_epoch}; question 4 uses every epoch. Each comparison is "
        f"the mean paired difference *a − b* in accuracy points with its interval and *n* pairs. {control}, so **a "
        "difference is claimed exactly when its printed interval excludes zero**, and two options are called *within the "
        f"margin* exactly when it lies inside ±{family.margin:g} points (`--margin`; a difference shown inside the margin "
        "reads *negligible*). With 3 to 6 pairs a comparison's own spread is a rough guess, so each is moderated toward "
        "the spread of the comparisons of its kind at its learning rate (Smyth 2004, limma's squeezeVar), which adds the "
        'prior\'s degrees of freedom (`df_prior`). "Cannot tell yet" says what would decide a margin-sized difference '
        "with 80% probability. For the activation and the loss, the interaction with the learning rate is tested first "
        "(Welch's heteroscedastic one-way test of the paired differences grouped by learning rate, each rate's spread "
        "moderated as its own rows' are; where the trials stored "
        "per-image predictions, its Welch–James form, whose error adds each learning rate's own test-image effects). Where it "
        'is shown the answer is "it depends on the learning rate" with the per-rate verdicts; a pooled number over the '
        "learning rates is claimed only where the difference keeps its sign at every learning rate (its size changes, "
        "not its direction), never where the sign changes. Every verdict is a "
        "row of [comparisons.csv](comparisons.csv), with its `p`, `p_adjusted` and `outcome` (difference, equivalence, open)."
    )


SOURCES = {"folder": "image folder", "cifar10": "CIFAR-10 (torchvision)"}


INTRO = (
    "The lecture notebook trains a 3-block CNN on CIFAR-10 and asks four questions. This report answers them from the "
    "trials of one Optuna study; every number below is computed from the study database. The answers come first; the "
    "protocol, the method and each question's details follow."
)


def header(frames: Frames, note: str | None = None, command: str | None = None, family: Family | None = None) -> list:
    """The protocol table and how to read the report (``family``: the paired report's error control); the title's
    paragraph (``INTRO``) and the answers come before them."""
    s, trials = frames.settings, frames.trials
    counts = analysis.counts(trials)
    # Trials that never finished (failed, running) recorded no device: missing values, not devices.
    pairs = zip(trials["device"], trials["precision"], strict=True)
    devices = ", ".join(sorted({f"{d} ({p})" for d, p in pairs if isinstance(d, str) and d})) or "–"
    blocks: list = []
    if note:
        blocks.append(Text(note))
    rows = [
        ("data", f"{SOURCES.get(s.data_source, '?')} at `{s.data_path}`"),
        ("images", f"{s.train_size} train, {s.val_size} validation, {s.test_size} test"),
        ("training", f"{plural(s.epochs, 'epoch')}, batch {s.batch_size}, {s.optimizer}, augmentation {'on' if s.augment else 'off'}"),
        ("search space", _space_text(s.search_space, trials if s.sampler == "grid" else None)),
        ("design", _design_text(frames)),
        ("sampler, pruner", f"{s.sampler}, {s.pruner_text}"),
        ("device", devices),
        ("pruning and selection on", f"{s.selection} accuracy"),
        (
            "trials",
            f"{counts['complete']} complete (of which {counts['diverged']} diverged), {counts['pruned']} pruned, "
            f"{counts['fail']} failed, {counts['running'] + counts['waiting']} running or waiting" + surplus_text(counts["surplus"]),
        ),
        ("reproduce", f"`{reproduce(s)}`"),
    ]
    if command:
        rows.append(("this report", f"`{command}`"))
    blocks.append(Table(pd.DataFrame(rows, columns=["protocol", "value"])))
    if s.selection == "test":
        blocks.append(
            Text(
                "> Pruning and the choice of the best trial used **test** accuracy, as the notebook measures it. "
                "The best accuracy is therefore optimistic: it was picked as the maximum of many noisy measurements "
                "on the same test images. Run with `--val-split 0.1` for an unbiased choice."
            )
        )
    if s.paired and family is not None:
        blocks.append(Text(error_text(family)))
        if family.looks and family.repeated:
            blocks.append(Text(
                f"**A sequential study: every verdict below holds however the study stopped.** It looked at its comparisons "
                f"after every round and trained more replicates only where they were open. The error was split before the "
                f"first trial into {family.looks} equal shares, one per planned look (`--max-repeats` = {family.looks}, "
                f"Bonferroni over the looks): each comparison is tested at the look the study stopped at, at level "
                f"{family.level_text}/{family.looks}, and its interval is that look's t interval at that level, so a verdict is "
                "valid whatever rule chose when to stop (the chance that any of the looks errs is at most the sum of the "
                "shares). No share moves from look to look with what a look found. A fixed design of as many trials would show "
                f"narrower intervals; these are the ones that stay valid. {family.spent} The section *How the study spent "
                "its trials* says when each question was answered and what the open ones would cost."
            ))  # fmt: skip
        elif family.looks:
            blocks.append(Text(
                "**A sequential study.** It looked at its comparisons after every round and trained more replicates only where "
                "they were open, so an interval looked at that way must pay for the looks. The verdicts and intervals of the "
                "sections below are computed as for a study that planned its replicates in advance (the study's trials do not "
                "match its rounds' plan, so its sequential numbers could not be given to them); the ones that stay valid "
                "however the study stopped are in the section *How the study spent its trials*, and where the two differ, "
                "cite that one."
            ))  # fmt: skip
        how = population_text(family)
    else:
        how = (
            "How to read it: a trial's *accuracy* is its test accuracy after the last epoch it ran. Pruned trials count "
            "with the accuracy they had when pruned (a lower bound of what they would have reached); diverged trials with "
            "the accuracy they had when the loss became NaN or infinite. Intervals are 95% bootstrap intervals "
            f"({analysis.N_BOOT} resamples, seed {SEED}); *n* is the number of trials behind a number. This study has no "
            "paired design, so its comparisons are **observational**: options were tried at different learning rates and "
            "seeds, and the verdicts are weaker than a paired design's: they carry no p-value and no error control: "
            "leads for the paired design to test, not claims."
        )
    blocks.append(Text(how))
    return blocks


def population_text(family: Family) -> str:
    """What the paired report's claims are about: new test images drawn like these, or (seed-only) these images; and which
    trials' predictions were left out (stored none, or do not reproduce their accuracies)."""
    text = _population_text(family)
    left = []
    if family.mismatched and (family.two_level or family.seed_only):
        listed = ", ".join(f"#{n}" for n in family.mismatched)
        left.append(
            f"{plural(len(family.mismatched), 'trial')} ({listed}) stored predictions that do not reproduce "
            f"{'its' if len(family.mismatched) == 1 else 'their'} recorded test accuracies: they are left out of the "
            "test images' part, and the comparisons they enter count the seeds only"
        )
    if family.no_predictions and family.two_level:
        left.append(f"{plural(family.no_predictions, 'trial')} stored no per-image predictions")
    return text + (" " + "; ".join(left) + "." if left else "")


def _population_text(family: Family) -> str:
    n = f"{family.n_images:,} " if family.n_images else ""
    dataset = f"{family.dataset} " if family.dataset else ""
    if family.n_images and family.n_images == family.dataset_images:  # the whole test split: no larger set to draw from
        new = f"new images drawn like these {n}test images (the whole {dataset}test split)"
    else:
        new = f"new {dataset}test images drawn like these {n}"
    if family.two_level and not family.seed_only:
        floor = f"; in {family.floor} open ones they are the floor, so their advice is more test images, not replicates"
        where = (
            f"In {family.image_dominated} of the {family.two_level} comparisons most of that uncertainty is the test images'"
            f"{floor if family.floor else ''}; `se_seeds` and `se_images` in comparisons.csv give each comparison's two parts."
        )
        dfs = "the pairs' n − 1" if family.repeated else "Satterthwaite's"
        return (
            f"**What the claims are about: {new.rstrip()}, and new seeds.** Every trial was scored "
            "on the same test images, so which images happened to be drawn moves every pair of a comparison the same way, and "
            "replicates do not average it out. Each interval counts both sources: the seeds (the spread of the pairs) and the test "
            "images (their share of the difference, from each trial's stored prediction for every image: a crossed pairs × images "
            f"variance-components estimate, {dfs} degrees of freedom). " + where
        )
    if family.two_level:
        return (
            f"**What the claims are about.** {family.two_level} comparisons, whose trials all stored their per-image predictions, "
            f"count the test images as well as the seeds: they are about {new.rstrip()}. The other {family.seed_only} (some of "
            f"their trials' predictions are missing or left out) count the seeds only: they are about these {n}test "
            "images, and their intervals leave out which images happened to be drawn."
        )
    why = (
        "every comparison holds a trial whose per-image predictions are missing or left out"
        if family.mismatched
        else "this study's trials stored no per-image predictions (a study written before they were stored)"
    )
    return (
        f"**What the claims are about: these {n}test images.** {why[0].upper() + why[1:]}, so every interval counts the seeds "
        f"only: it says what new seeds would do on these same images, not on {new.rstrip()}: the test set's own variance is not "
        "in it. A study run by this release stores them, and its report counts both."
    )


def _design_text(frames: Frames) -> str:
    s = frames.settings
    if not s.paired:
        return "none (observational): every trial is its own sample" if s.format >= 2 else "none (first release: seed from trial number)"
    reps = sorted(frames.trials["replicate"].dropna().unique())
    seeds = ", ".join(str(s.seed + int(r)) for r in reps)
    if s.sequential:
        return (
            f"paired, sequential: round 0 trained the whole grid once, each later round one more replicate of the points open "
            f"comparisons needed, up to {s.repeats}; seeds {seeds} (seed {s.seed} + replicate)"
        )
    return f"paired: {s.repeats} replicate{'s' if s.repeats != 1 else ''} of the grid, seeds {seeds} (seed {s.seed} + replicate)"


def reproduce(settings) -> str:
    """The study's stored command, with the search-space flags it left at defaults that have changed since it ran.

    A command stores what its user typed; a study started before a release changed the default grid would otherwise
    be "reproduced" on the new grid.
    """
    from study.space import SearchSpace

    space, default = settings.search_space or {}, SearchSpace().as_dict()
    words = shlex.split(settings.command)
    missing = []
    for key in default:
        flag = "--" + key.replace("_", "-")  # study.run's flag of each SearchSpace field
        if key not in space or space[key] == default[key] or (key == "grid_lrs" and settings.sampler != "grid"):
            continue
        if any(w == flag or w.startswith(flag + "=") for w in words):
            continue
        value = space[key]
        missing += [flag, ",".join(value) if isinstance(value, list) else repr(value)]  # repr: the float exactly, as stored
    return shlex.join(words + missing) if missing else settings.command


def _space_text(space: dict, grid_trials: pd.DataFrame | None = None) -> str:
    if not space:
        return "?"
    if grid_trials is not None and grid_trials["lr"].notna().any():
        lrs = f"lr ∈ {{{', '.join(f'{lr:g}' for lr in sorted(grid_trials['lr'].dropna().unique()))}}} (grid)"
    else:
        lrs = f"lr log-uniform in [{space['lr_min']:g}, {space['lr_max']:g}]"
    return f"activation ∈ {{{', '.join(space['activations'])}}}, loss ∈ {{{', '.join(space['losses'])}}}, {lrs}"


@dataclass
class BestVsBaseline:
    """The best trial's configuration against the notebook's, paired by replicate (same seeds), at the compare epoch."""

    best: dict  # activation, loss, lr
    epoch: int
    estimate: stats.Estimate


def best_vs_baseline(frames: Frames, design: paired.Design, margin: float) -> BestVsBaseline | None:
    """The paired estimate of the best trial's configuration minus the notebook's (None: no best, no baseline, or the same)."""
    best, baseline = analysis.best_and_baseline(frames.trials, frames.settings.baseline)
    if best is None or baseline is None:
        return None
    keys = ("activation", "loss", "lr")
    a, b = {k: best[k] for k in keys}, {k: baseline[k] for k in keys}
    if a == b:
        return None
    pairs = paired.configuration_pairs(design, a, b)
    return BestVsBaseline(a, design.compare_epoch, paired.estimate_pairs(design, pairs, margin))


def _best_vs_baseline_text(found: BestVsBaseline, described: str) -> str:
    e, best = found.estimate, found.best
    config = f"{best['activation']}, {best['loss']}, lr {best['lr']:.3g}"
    if e.n < 2:
        return (
            f"Paired by seed, the best trial's configuration ({config}) and the notebook's share {plural(e.n, 'replicate')}: "
            "too few for an interval over seeds."
        )
    sources = "seeds and test images" if e.n_images else "seeds"
    return (
        f"Paired by seed over the {e.n} replicates both ran, at epoch {found.epoch} (the epoch the questions compare at): "
        f"{config} − the notebook's configuration ({described}) = {pts(e.mean)} points, 95% interval {interval(e.low, e.high)} "
        f"(over {sources}). It is descriptive, not one of the report's claims: that configuration was picked as the best "
        "from these very trials, which flatters it, and the interval is not adjusted for the choice; the comparisons above, "
        "which are, say which of its differences from the notebook's are shown."
    )


def data_section(frames: Frames, samples: bool, best_vs_baseline: BestVsBaseline | None = None) -> Section:
    section = Section("The data and the mistakes")
    if samples:
        _samples(section, frames)
    else:
        section.add(
            "Sample images, and the grid of test images the trials get wrong, are left out of this report (built with `--no-samples`)."
        )
    baseline_params = frames.settings.baseline
    best, baseline = analysis.best_and_baseline(frames.trials, baseline_params)
    n_test = frames.settings.test_size
    if best is None:
        return section.add("No complete trial yet: no per-class results.")
    described = (
        f"{baseline_params['activation']}, {baseline_params['loss']}, lr {baseline_params['lr']:g}"
        if baseline_params
        else "relu, cross_entropy, lr 0.001"
    )
    same_config = baseline is not None and all(best[k] == baseline[k] for k in ("activation", "loss", "lr"))
    if baseline is not None and baseline["number"] == best["number"]:
        section.add(f"The best trial is the notebook's own configuration (trial #{int(best['number'])}: {described}).")
    elif same_config:
        section.add(
            f"The best trial (#{int(best['number'])}, replicate {int(best['replicate'])}) is the notebook's own configuration "
            f"({described}) trained from another seed: {pct(best['final_test_acc'])} against {pct(baseline['final_test_acc'])} for "
            f"trial #{int(baseline['number'])} (replicate {int(baseline['replicate'])}). "
            f"The {pts(best['final_test_acc'] - baseline['final_test_acc'])} points between them are run-to-run noise of one "
            "configuration (initial weights and batch order): the reason this study compares options on the same seeds."
        )
    elif baseline is not None and n_test:
        diff, low, high = analysis.difference_interval(best["final_test_acc"], baseline["final_test_acc"], n_test)
        section.add(
            f"The best trial (#{int(best['number'])}: {best['activation']}, {best['loss']}, lr {best['lr']:.3g}) reaches "
            f"{pct(best['final_test_acc'])} test accuracy; the notebook's configuration (trial #{int(baseline['number'])}, "
            f"{described}) reaches {pct(baseline['final_test_acc'])}. Difference {pts(diff)} points, 95% interval "
            f"[{low:.2f}, {high:.2f}] from test-set sampling alone ({n_test} images); it leaves out the run-to-run variation "
            "of training and the optimism of picking the best of many trials."
        )
        if best_vs_baseline is not None:
            section.add(_best_vs_baseline_text(best_vs_baseline, described))
    elif baseline is None:
        section.add(f"The study holds no finished trial of the notebook's configuration ({described}) to compare with.")
    shown = [("best", best)] + ([("baseline", baseline)] if baseline is not None and baseline["number"] != best["number"] else [])
    for label, trial in shown:
        confusion = frames.confusion.get(int(trial["number"]))
        if confusion is None:
            continue
        per_class = analysis.per_class_accuracy(confusion, frames.classes).sort_values("accuracy", kind="stable")
        pairs = analysis.confused_pairs(confusion, frames.classes)
        lo, hi = analysis.accuracy_interval(trial["final_test_acc"], n_test) if n_test else (math.nan, math.nan)
        hardest = ", ".join(f"{row['class']} {pct(row['accuracy'], 1)}" for _, row in per_class.head(3).iterrows())
        easiest = ", ".join(f"{row['class']} {pct(row['accuracy'], 1)}" for _, row in per_class.tail(2).iloc[::-1].iterrows())
        top = pairs.iloc[0]
        number = int(trial["number"])
        section.add(
            Heading(f"{label.capitalize()} trial #{number}: {pct(trial['final_test_acc'])} {interval(lo, hi)}"),
            f"Hardest classes: {hardest}; easiest: {easiest}. Most confused pair: {top['pair']} ({top['total']} test images).",
            Table(
                pd.DataFrame(
                    {
                        "class": per_class["class"],
                        "test images": per_class["images"].astype(str),
                        "accuracy": per_class["accuracy"].map(lambda a: pct(a, 1)),
                    }
                )
            ),
            Table(
                pd.DataFrame({"confused pair": pairs["pair"], "a as b": pairs["a_as_b"].astype(str), "b as a": pairs["b_as_a"].astype(str)})
            ),
            Figure(
                f"confusion_{label}",
                f"confusion matrix of the {label} trial",
                lambda confusion=confusion, label=label, number=number: figures.confusion_heatmap(
                    confusion, frames.classes, f"{label} trial #{number}: confusion on the test set"
                ),
            ),
        )
    return section


def _samples(section: Section, frames: Frames) -> None:
    path = frames.settings.data_path
    try:
        data = load_data(path, download=False)
    except (DataError, TypeError):
        section.add(f"Sample images are left out: the data folder `{path}` is not readable on this machine.")
        return
    section.add(
        "Training images with their class names (the notebook's own cell for this failed with `Numpy is not available`):",
        Figure("samples", "sample training images", lambda: figures.sample_grid(data.train.images, data.train.labels, list(data.classes))),
    )
    _mistakes(section, frames)


GRID = 8  # test images shown per grid


@dataclass
class Mistakes:
    """Test images the trials that learned get wrong: every one of them, or every trial of some options only."""

    trials: int  # trials that learned (their predictions after their last epoch are used)
    everyone: list[int]  # test images (indices in the study's order) every one of them gets wrong
    split: list[
        tuple[int, str, list[str]]
    ]  # (test image, factor, options all of whose trials get it right) where another option's all get it wrong
    said: dict[int, int]  # test image -> the wrong class the trials predicted most often for it


def mistakes(frames: Frames, learned_points: float = 5.0) -> Mistakes | None:
    """The images of :class:`Mistakes`, from the stored predictions of the finished trials that learned; None without them.

    A trial learned when its last accuracy is more than ``learned_points`` above chance (a trial at chance gets most
    images wrong and would say nothing of which are hard). For each factor (activation, loss), an image is *split* when
    every trial of some option gets it right and every trial of another gets it wrong.
    """
    if frames.labels is None or not frames.predictions:
        return None
    t = analysis.finished(frames.trials)
    t = t[(t["final_test_acc"] > frames.chance + learned_points) & t["number"].isin(list(frames.predictions))]
    if not len(t):
        return None
    last = np.stack([frames.predictions[int(n)][-1] for n in t["number"]])  # (trials, test images)
    right = last == frames.labels[None, :]
    everyone = np.flatnonzero(~right.any(axis=0))
    split = []
    for factor in ("activation", "loss"):
        options = sorted(t[factor].dropna().unique())
        if len(options) < 2:
            continue
        by = {o: right[(t[factor] == o).to_numpy()] for o in options}
        all_right = np.stack([by[o].all(axis=0) for o in options])  # (options, test images)
        none_right = np.stack([~by[o].any(axis=0) for o in options])
        for i in np.flatnonzero(all_right.any(axis=0) & none_right.any(axis=0)):
            split.append((int(i), factor, [o for o, r in zip(options, all_right[:, i], strict=True) if r]))
    shown = [*everyone[:GRID].tolist(), *(i for i, _, _ in split[:GRID])]
    said = {i: _most_wrong(last[:, i], int(frames.labels[i]), len(frames.classes)) for i in shown}
    return Mistakes(len(t), everyone.tolist(), split, said)


def _most_wrong(predicted: np.ndarray, label: int, classes: int) -> int:
    """The wrong class the trials predicted most often for one image (a split image is also right in many trials).

    >>> _most_wrong(np.array([3, 3, 3, 5, 5]), 3, 10)
    5
    """
    counts = np.bincount(predicted, minlength=classes)
    counts[label] = -1
    return int(counts.argmax())


def _reload_test(frames: Frames):
    """The study's test images, drawn again as the study drew them (same folder, sizes and seed); None when they differ."""
    s = frames.settings
    train = s.train_size + s.val_size if s.val_split > 0 else s.train_size
    for train_size, test_size in ((train, s.test_size), (None, s.test_size), (train, None), (None, None)):
        try:
            data = load_data(s.data_path, train_size=train_size, test_size=test_size, val_split=s.val_split, seed=s.seed, download=False)
        except (DataError, TypeError, ValueError):
            return None
        if np.array_equal(data.test.labels.numpy(), frames.labels):
            return data.test
    return None


def _mistakes(section: Section, frames: Frames, test=None) -> None:
    """The grids of the test images the trials get wrong; ``test``: the study's test set (default: drawn again, :func:`_reload_test`)."""
    found = mistakes(frames)
    if found is None:
        section.add(
            "No grid of the test images the trials get wrong: this study's trials stored no per-image predictions, or none learned."
        )
        return
    test = _reload_test(frames) if test is None else test
    if test is None:
        section.add(
            f"The test images drawn again from `{frames.settings.data_path}` (same sizes and seed) do not match the labels the "
            "study stored: the data folder differs from the one the study used, so no grid of its mistakes is shown."
        )
        return
    classes = frames.classes
    n = len(frames.labels)
    section.add(
        f"The test images drawn again from the data folder match the labels the study stored ({n} images). Of the {found.trials} "
        f"trials that learned, every one gets {len(found.everyone)} test images wrong ({pct(100 * len(found.everyone) / n, 1)}); "
        f"{len({i for i, _, _ in found.split})} more are got right by every trial of some option and by none of another's."
    )
    # The figures are drawn when the report is written, after both grids are set up: each lambda binds its own values.
    if found.everyone:
        hard = found.everyone[:GRID]
        hard_titles = [f"true {classes[frames.labels[i]]}\nsaid {classes[found.said[i]]}" for i in hard]
        section.add(
            Figure(
                "hard_images",
                "test images every trial gets wrong",
                lambda images=test.images[hard], titles=hard_titles: figures.image_grid(
                    images, titles, "Every trial gets these wrong (most predicted: said)"
                ),
            )
        )
    if found.split:
        split = found.split[:GRID]
        split_titles = [f"true {classes[frames.labels[i]]}, said {classes[found.said[i]]}\nright: {', '.join(o)}" for i, _, o in split]
        section.add(
            Figure(
                "split_images",
                "test images only some options get right",
                lambda images=test.images[[i for i, _, _ in split]], titles=split_titles: figures.image_grid(
                    images, titles, "Right for every trial of one option, wrong for every trial of another"
                ),
            )
        )


def study_section(frames: Frames, importance: list | None = None) -> Section:
    """Best trials, where the variance comes from (``importance``: blocks), the history and pruning."""
    section = Section("The study itself")
    done = analysis.finished(frames.trials)
    top = done.sort_values("final_test_acc", ascending=False).head(10)
    section.add(
        "Best trials:",
        Table(
            pd.DataFrame(
                {
                    "trial": top["number"].astype(str),
                    "state": top["state"],
                    "activation": top["activation"],
                    "loss": top["loss"],
                    "lr": top["lr"].map(lambda v: f"{v:.3g}"),
                    "replicate": top["replicate"].astype(str),
                    "test acc": top["final_test_acc"].map(pct),
                    "epochs": top["epochs_run"].astype(str),
                }
            )
        ),
    )
    if importance is not None:
        section.add(*importance)
    section.add(Figure("history", "optimisation history", lambda: figures.optimization_history(frames.trials)))
    pruned = frames.trials[frames.trials["state"] == "pruned"]
    if len(pruned):
        median = pruned["epochs_run"].median()
        section.add(
            f"{len(pruned)} trials were pruned, after a median of {median:g} epoch{'s' if median != 1 else ''}.",
            Figure("pruning", "when trials were pruned", lambda: figures.pruning_epochs(frames.trials, frames.n_epochs)),
        )
    section.add(
        "Data behind this report: [trials.csv](trials.csv) (one row per trial), [epochs.csv](epochs.csv) (one row per trial "
        "and epoch) and [comparisons.csv](comparisons.csv) (one row per comparison, with its verdict)."
    )
    return section
