"""``python -m reports.build``: turn a study database into a markdown report with figures and CSVs.

The report answers the notebook's four questions (activation, loss, learning rate, epochs)
with numbers, intervals and sample sizes, and looks at the data: sample images, per-class
accuracy and confusions of the best and the baseline trial. Sections are computed by
``reports.sections``; this module writes them.
"""

import argparse
import sys
from pathlib import Path

from cnn.cli import ArgumentParser
from reports import analysis, blocks, sections
from reports.frames import Frames, load_frames
from study.storage import DEFAULT_STORAGE, StudyError, command_line, load_existing_study, output_dir


def build_report(frames: Frames, out: str | Path, samples: bool = True, note: str | None = None, command: str | None = None) -> Path:
    """Write ``report.md``, its PNG figures and the CSVs of ``frames`` into ``out``.

    Args:
        frames: the study, read by ``reports.frames``.
        out: the output folder, created when missing.
        samples: include a grid of sample training images (needs the data folder).
        note: a paragraph placed under the title, for example what the data is.
        command: the command that built the report, shown in the header.

    Returns:
        The path of ``report.md``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames.trials.to_csv(out / "trials.csv", index=False)
    frames.epochs.to_csv(out / "epochs.csv", index=False)
    results = sections.Results(frames)
    results.comparisons().to_csv(out / "comparisons.csv", index=False)
    if not len(analysis.finished(frames.trials)):
        body = [
            blocks.Section("No finished trials yet").add(
                "The study holds no complete or pruned trial, so none of the questions can be answered yet.",
                f"Run trials with `{frames.settings.command}` and build the report again.",
            )
        ]
    else:
        body = [
            sections.options_section(frames, results, "activation", "What changes when the activation function changes?"),
            sections.options_section(frames, results, "loss", "What changes when the loss changes?"),
            sections.lr_section(frames, results),
            sections.epochs_section(frames, results),
            sections.data_section(frames, samples),
            sections.study_section(frames),
        ]
    title = f"What changes the notebook's CNN? Study `{frames.study_name}`"
    path = out / "report.md"
    path.write_text(blocks.write(title, sections.header(frames, note, command), body, out))
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
    parser.add_argument("--dashboard-note", action="store_true", help="also save the report's text as the study's note in optuna-dashboard")
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
    path = build_report(frames, out, samples=not args.no_samples, note=args.note, command=command)
    if args.dashboard_note:
        from optuna_dashboard import save_note

        save_note(load_existing_study(args.storage, args.study_name), path.read_text())  # shown by optuna-dashboard, figures not embedded
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
