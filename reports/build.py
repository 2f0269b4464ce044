"""``python -m reports.build``: turn a study database into a markdown report with figures and CSVs.

The report answers the notebook's four questions (activation, loss, learning rate, epochs)
with numbers, intervals and sample sizes, and looks at the data: sample images, per-class
accuracy and confusions of the best and the baseline trial. Each question has its own
module (``options``, ``learning_rate``, ``epochs``; ``observational`` for studies without pairs) that
computes a typed result and draws it; this module settles all their comparisons as one family
(``reports.claims``) and writes the report.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cnn.cli import ArgumentParser
from reports import (
    analysis,
    answers,
    blocks,
    claims,
    epochs,
    importance,
    inference,
    learning_rate,
    observational,
    options,
    overview,
    sequential,
    spent,
)  # fmt: skip
from reports.blocks import Figure, Section
from reports.claims import Comparison
from reports.frames import Frames, load_frames
from reports.paired import build_design, default_compare_epoch
from study import notes
from study.storage import DEFAULT_STORAGE, StudyError, command_line, load_existing_study, output_dir

TITLES = {"activation": "What changes when the activation function changes?", "loss": "What changes when the loss changes?"}


@dataclass
class Analysis:
    """Everything a report computes, once: each question's typed result and every comparison, settled as one family."""

    margin: float
    compare_epoch: int
    comparisons: list[Comparison]
    importance: importance.Importance | None
    options: dict[str, options.OptionsResult] = field(default_factory=dict)  # paired: activation, loss
    lr: learning_rate.LrResult | None = None
    epochs: epochs.EpochsResult | None = None
    matched: dict[str, dict] = field(default_factory=dict)  # observational: activation, loss
    n_images: int = 0  # the study's test images
    mismatched: list[int] = field(default_factory=list)  # trials whose stored predictions do not reproduce their accuracies
    no_predictions: int = 0  # trials of the design that stored no predictions
    dataset: str = ""  # the data source's name ("CIFAR-10"; "" for an image folder)
    dataset_images: int | None = None  # test images the dataset has (None: unknown)
    plan: sequential.RoundPlan | None = None  # a sequential study: its plan now (at the report's margin and epoch)
    repeated: bool = False  # the verdicts are the sequential design's (repeated p-values and intervals over its looks)
    error_rate: str = "fdr"  # the report's error rate (reports.inference): fdr (Benjamini–Hochberg) or fwer (Holm)
    # paired: the best trial's configuration against the notebook's, over the replicates both ran (None: not comparable)
    best_vs_baseline: overview.BestVsBaseline | None = None

    @property
    def family(self) -> overview.Family:
        size = sum(1 for c in self.comparisons for p in (c.p, c.p_equiv) if p == p)  # NaN is no test
        accuracies = [c for c in self.comparisons if c.kind in ("difference", "pooled", "drop", "gain") and c.p == c.p]
        two_level = [c for c in accuracies if c.n_images]
        return overview.Family(
            size, self.margin, self.compare_epoch, two_level=len(two_level), seed_only=len(accuracies) - len(two_level),
            n_images=max((c.n_images for c in two_level), default=0) or self.n_images,
            image_dominated=sum(c.image_share > 0.5 for c in two_level), mismatched=self.mismatched,
            no_predictions=self.no_predictions, dataset=self.dataset, dataset_images=self.dataset_images,
            floor=sum(claims.advises_images(c) for c in two_level),
            looks=self.plan.max_repeats if self.plan is not None else 0, repeated=self.repeated,
            spent=spent.spent_text(self.plan) if self.plan is not None else "", error_rate=self.error_rate,
            selected=sum(c.selected for c in self.comparisons),
            comparisons=sum(1 for c in self.comparisons if c.p == c.p or c.p_equiv == c.p_equiv),
        )  # fmt: skip


def analyse(
    frames: Frames, margin: float | None = None, compare_epoch: int | None = None, full: bool = True, error_rate: str = "fdr"
) -> Analysis:
    """Answer the questions of ``frames``: ``margin`` and ``compare_epoch`` default to the study's settings; ``error_rate``
    is the report's (``reports.inference``: "fdr", Benjamini–Hochberg, or "fwer", Holm).

    ``full=False`` settles the claims only: no variance decomposition, no verdict sentences (for simulations).
    """
    settings = frames.settings
    margin = settings.margin if margin is None else margin
    if margin <= 0:
        raise ValueError(f"--margin must be a positive number of accuracy points but got {margin}")
    if error_rate not in inference.ERROR_RATES:
        raise ValueError(f"--error-rate must be one of {', '.join(inference.ERROR_RATES)} but got {error_rate!r}")
    compare_epoch = settings.compare_epoch if compare_epoch is None else compare_epoch
    if settings.paired:
        design = build_design(frames, compare_epoch)
        shares = importance.compute(frames.trials, settings.search_space, design.trials, design.compare_epoch) if full else None
        result = Analysis(margin, design.compare_epoch, [], shares, n_images=settings.test_size, mismatched=design.mismatched)
        result.no_predictions = int((~design.trials["number"].isin(list(frames.predictions))).sum())
        result.options = {f: options.compute(design, f, margin) for f in ("activation", "loss")}
        result.lr = learning_rate.compute(design, margin)
        result.epochs = epochs.compute(design, margin)
        for part in (*result.options.values(), result.lr, result.epochs):
            result.comparisons.extend(part.comparisons())
        if full:
            result.best_vs_baseline = overview.best_vs_baseline(frames, design, margin)
    else:
        epoch = default_compare_epoch(frames.n_epochs) if compare_epoch is None else compare_epoch
        result = Analysis(margin, epoch, [], importance.compute(frames.trials, settings.search_space) if full else None)
        result.matched = observational.matched(frames)
        for factor, matched in result.matched.items():
            result.comparisons.extend(observational.comparisons(matched, factor))
    # The advice's bounds: a sequential study runs at most its --max-repeats replicates (stored as repeats); a fixed one has
    # run its own, and another study can run more.
    most = settings.repeats if settings.sequential else None
    images = claims.DATASET_TEST_IMAGES.get(settings.data_source)
    result.dataset, result.dataset_images = claims.DATASET_NAMES.get(settings.data_source, ""), images
    if settings.paired and settings.sequential:
        # The study looked after every round and went on where a verdict was open: its claims are the sequential ones.
        claims.settle(result.comparisons, margin, sentences=False, max_replicates=most, dataset_images=images, error_rate=error_rate)
        result.plan = sequential.plan_round(
            frames, settings.repeats, margin=margin, compare_epoch=result.compare_epoch, error_rate=error_rate
        )
        result.repeated = sequential.carry_over(result.plan, result.comparisons)
        if full:
            for c in result.comparisons:
                c.verdict = claims.verdict(c)
    else:
        claims.settle(result.comparisons, margin, sentences=full, max_replicates=most, dataset_images=images, error_rate=error_rate)
    result.error_rate = error_rate
    return result


def _extra(frames: Frames, factor: str) -> list:
    """What the options sections show besides the verdicts: the train-test gap; for the loss, the learning curves."""
    extra: list = []
    gaps = analysis.group_summary(frames.trials, factor, observational.SEED)
    if len(gaps) > 1 and gaps["median_gap"].notna().any():
        listed = ", ".join(f"{row[factor]} {blocks.pts(row['median_gap'])}" for _, row in gaps.iterrows())
        extra.append(f"Median gap between training and test accuracy at the last epoch (points, complete trials): {listed}.")
    if factor == "loss" and (frames.epochs["state"] == "complete").any():
        extra += [
            "Raw loss values of different losses are on different scales and cannot be compared; the curves compare test "
            "accuracy per epoch instead.",
            Figure("loss_curves", "learning curves by loss", lambda: figures_learning_curves(frames)),
        ]
    return [blocks.Text(e) if isinstance(e, str) else e for e in extra]


def figures_learning_curves(frames: Frames):
    from reports import figures

    return figures.learning_curves(frames.epochs, "loss")


def question_sections(frames: Frames, result: Analysis) -> list[Section]:
    if result.lr is not None:
        ci = claims.REPEATED_CI if result.repeated else claims.CI
        return [
            *(options.section(result.options[f], TITLES[f], frames.chance, _extra(frames, f), ci) for f in ("activation", "loss")),
            learning_rate.section(result.lr, frames.trials, frames.chance, result.margin, ci),
            epochs.section(result.epochs, frames.epochs, result.margin, ci),
        ]
    return [
        *(observational.options_section(frames, result.matched[f], f, TITLES[f], _extra(frames, f)[1:]) for f in ("activation", "loss")),
        observational.lr_section(frames),
        observational.epochs_section(frames),
    ]


def build_report(
    frames: Frames,
    out: str | Path,
    samples: bool = True,
    note: str | None = None,
    command: str | None = None,
    margin: float | None = None,
    compare_epoch: int | None = None,
    error_rate: str = "fdr",
) -> Path:
    """Write ``report.md``, its PNG figures and the CSVs of ``frames`` into ``out``.

    Args:
        frames: the study, read by ``reports.frames``.
        out: the output folder, created when missing.
        samples: include a grid of sample training images (needs the data folder).
        note: a paragraph placed under the title, for example what the data is.
        command: the command that built the report, shown in the header.
        margin: the practical margin in accuracy points (default: the study's ``--margin``, 2).
        compare_epoch: the epoch questions 1-3 are answered at (default: the study's, else 10 or the last).
        error_rate: "fdr" (default; Benjamini–Hochberg, false-coverage-rate intervals) or "fwer" (Holm).

    Returns:
        The path of ``report.md``.
    """
    result = analyse(frames, margin, compare_epoch, error_rate=error_rate)  # first: a bad --margin or --compare-epoch writes nothing
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames.trials.to_csv(out / "trials.csv", index=False)
    frames.epochs.to_csv(out / "epochs.csv", index=False)
    claims.frame(result.comparisons).to_csv(out / "comparisons.csv", index=False)
    if not len(analysis.finished(frames.trials)):
        body = [
            Section("No finished trials yet").add(
                "The study holds no complete or pruned trial, so none of the questions can be answered yet.",
                f"Run trials with `{overview.reproduce(frames.settings)}` and build the report again.",
            )
        ]
    else:
        body = [
            *question_sections(frames, result),
            *([spent.sequential_section(frames, result.plan)] if result.plan is not None else []),
            overview.data_section(frames, samples, result.best_vs_baseline),
            overview.study_section(frames, importance.blocks(result.importance)),
        ]
    title = f"What changes the notebook's CNN? Study `{frames.study_name}`"
    path = out / "report.md"
    family = result.family if frames.settings.paired else None
    protocol = Section("Protocol and method").add(*overview.header(frames, note, command, family))
    first = (
        [answers.section(result.comparisons, result.margin, frames.settings.paired, result.lr, frames.chance)]
        if len(analysis.finished(frames.trials))
        else []
    )
    path.write_text(blocks.write(title, [blocks.Text(overview.INTRO)], [*first, protocol, *body], out))
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m reports.build",
        description="Build a markdown report (figures as PNG, data as CSV) that answers the notebook's questions from a study database.",
    )
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (default: %(default)s)")
    parser.add_argument("--study-name", default="cnn-study", help="study to report on (default: %(default)s)")
    parser.add_argument("--out", help="output folder (default: <study-name>-report beside a SQLite database, else under runs/)")
    parser.add_argument("--no-samples", action="store_true", help="leave the grid of sample training images out (for a published report)")
    parser.add_argument("--note", help="a paragraph to put under the report's title, for example what the data is")
    parser.add_argument("--margin", type=float, help="practical margin in accuracy points (default: the study's --margin, else 2)")
    parser.add_argument(
        "--compare-epoch", type=int, help="epoch at which questions 1-3 are answered (default: the study's, else 10 or the last epoch)"
    )
    parser.add_argument(
        "--error-rate", choices=inference.ERROR_RATES, default="fdr",
        help="the report's error control: fdr (at most 5%% of claims false, Benjamini-Hochberg; default) or fwer (at most 5%% "
        "chance of any false claim, Holm)",
    )  # fmt: skip
    parser.add_argument(
        "--dashboard-note",
        action="store_true",
        help="the whole report as the study's note in optuna-dashboard (default: its answers in short)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out) if args.out else output_dir(args.storage, args.study_name, "report")
    try:
        frames = load_frames(args.storage, args.study_name)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if argv is None else argv
    command = command_line("reports.build", ["…" if a == args.note else a for a in argv])  # the note itself is printed above
    try:
        path = build_report(frames, out, samples=not args.no_samples, note=args.note, command=command, margin=args.margin,
                            compare_epoch=args.compare_epoch, error_rate=args.error_rate)  # fmt: skip
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:  # optuna-dashboard's study page: the answers in short (--dashboard-note: the whole report, figures not embedded)
        notes.note_report(load_existing_study(args.storage, args.study_name), path, full=args.dashboard_note)
    except Exception as error:  # a read-only database still gets its report
        print(f"warning: the dashboard's study note was not updated ({type(error).__name__}: {error})", file=sys.stderr)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
