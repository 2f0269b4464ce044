"""``python -m reports.compare A B ...``: do a study's answers hold as the training set grows?

Each argument is a study of the paired grid: a folder that holds a ``study.db`` (a shipped example), the GPU check's
``gpu-check-results.tar.gz`` as it came back, a SQLite file, or a storage URL, each optionally followed by
``::STUDY-NAME`` (needed only where the storage holds several studies). Every study is analysed exactly as
``reports.build`` would (its own verdicts at its own error rate), the studies are ordered by training-set size (the
rungs of a ladder), and each comparison that two neighbouring rungs share is read side by side:

=====================  =====================================================================================
status                 meaning
=====================  =====================================================================================
held                   the same verdict on both rungs (a difference of the same sign, or an equivalence)
changed                the verdicts differ *and* the two estimates are shown to differ (the change interval
                       excludes zero at the page's error rate): a difference that vanished or changed sign,
                       an equivalence that became a difference
differs, not shown     the verdicts differ but the estimates are not shown to differ: within the noise
newly decided          open on the smaller rung, decided on the larger one
no longer decided      decided on the smaller rung, open on the larger one (change not shown)
still open             open on both
=====================  =====================================================================================

A change is a claim like any other: its test is Welch's t on the two rungs' estimates (standard errors from each
study's seeds and test images; Welch–Satterthwaite degrees of freedom), and all the page's change tests form one family
at the reports' error rate (``--error-rate``): the false discovery rate by Benjamini–Hochberg, whose printed intervals
are Benjamini–Yekutieli false-coverage-rate intervals at level 1 − R·q/m, or the family-wise rate by Bonferroni at
1 − α/m; either way a change is claimed exactly when its printed interval excludes zero. Comparisons that one rung has
and another lacks are listed, not dropped.
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import math
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from cnn.cli import ArgumentParser
from reports import blocks
from reports.blocks import Figure, Section, Table
from reports.claims import Comparison
from study.storage import StudyError, mask_password, open_storage

ALPHA = 0.05  # the page's error rate: 5% false discoveries (fdr) or a 5% chance of any false change claim (fwer)
ERROR_RATES = ("fdr", "fwer")
TESTED_KINDS = ("difference", "pooled", "drop", "gain", "loss rise")  # rows with an estimate and a standard error
QUESTIONS = ("activation", "loss", "learning rate", "epochs")
STATUSES = ("held", "changed", "differs, not shown", "newly decided", "no longer decided", "still open")
Key = tuple[str, str, str, str, str]  # question, kind, a, b, where (Entry.where)


@dataclass
class Rung:
    """One study of the ladder, analysed: its comparisons by key."""

    source: str  # the argument it came from, as the page names it
    study_name: str
    train_size: int  # training images
    test_size: int  # test images
    n_trials: int  # finished trials
    comparisons: dict[Key, Entry]

    @property
    def label(self) -> str:
        return f"{self.train_size:,} train / {self.test_size:,} test images"


@dataclass
class Change:
    """One comparison read on two neighbouring rungs (``low`` has fewer training images than ``high``)."""

    key: Key
    low: Entry
    high: Entry
    change: float = math.nan  # high.diff − low.diff
    se: float = math.nan
    df: float = math.nan
    p: float = math.nan
    p_adjusted: float = math.nan
    ci_low: float = math.nan  # the change's interval at the page's adjusted level (NaN: no test)
    ci_high: float = math.nan
    status: str = ""

    @property
    def tested(self) -> bool:
        return not math.isnan(self.p_adjusted)

    @property
    def shown(self) -> bool:
        """Whether the change is claimed: its adjusted p is below the page's rate (its interval excludes zero)."""
        return bool(self.p_adjusted < ALPHA)

    @property
    def status_text(self) -> str:
        """The status, and where the verdicts agree but the estimate moved by a shown amount, that too."""
        if self.shown and self.status in ("held", "still open"):
            return f"{self.status}; the estimate moved"
        return self.status


@dataclass(frozen=True)
class Entry:
    """One study's comparison, oriented the same way in every study (options in alphabetical order: ``a`` < ``b``), so
    that a difference that changed sign between two studies reads as a change, not as two comparisons."""

    question: str
    kind: str
    a: str
    b: str
    where: str  # the learning rate of an option's comparison ("pooled", "interaction"), else the trials it compares
    n_pairs: int
    diff: float  # mean of (a − b)
    ci_low: float  # the study's own interval, the one its verdict is decided by
    ci_high: float
    se: float  # from the seeds and, where measured, the test images
    df: float
    outcome: str  # difference, equivalence or open

    @property
    def key(self) -> Key:
        return (self.question, self.kind, self.a, self.b, self.where)

    @property
    def verdict(self) -> str:
        """The outcome with its direction: a difference of the opposite sign is another answer."""
        if self.outcome == "difference" and self.kind != "interaction":
            return "difference +" if self.diff > 0 else "difference −"
        return self.outcome


def outcome(c: Comparison) -> str:
    """``difference``, ``equivalence`` or ``open``: what the study claims of ``c``."""
    claimed = getattr(c, "outcome", "")  # the inference engine's column, where the report has one
    if claimed:
        return claimed
    if c.claims_difference:
        return "difference"
    return "equivalence" if c.claims_equivalence else "open"


def entry(c: Comparison) -> Entry:
    """``c`` as an :class:`Entry`: options sorted, and the difference and interval flipped with them."""
    where = c.subset  # learning rate and epochs: which trials (loss=mse, lr=0.001, loss=mse, …)
    if c.question in ("activation", "loss"):
        where = c.lr if isinstance(c.lr, str) else f"lr {c.lr:g}"
    images = 0.0 if math.isnan(c.se_images) else c.se_images
    a, b, diff, low, high = c.a, c.b, c.diff, c.ci_low, c.ci_high
    if c.kind in ("difference", "pooled", "interaction") and a > b:
        a, b, diff, low, high = b, a, -diff, -high, -low
    return Entry(c.question, c.kind, a, b, where, c.n_pairs, diff, low, high, math.hypot(c.se_seeds, images), c.df, outcome(c))


def status(low: Entry, high: Entry, shown: bool) -> str:
    before, after = low.verdict, high.verdict
    if before == "open":
        return "still open" if after == "open" else "newly decided"
    if before == after:
        return "held"
    if shown:
        return "changed"
    return "no longer decided" if after == "open" else "differs, not shown"


def test_changes(changes: list[Change], error_rate: str = "fdr", alpha: float = ALPHA) -> list[Change]:
    """Welch's t of each change and one family over all of them (see the module's docstring); sets every status."""
    tested = []
    for c in changes:
        lo, hi = c.low, c.high
        c.change = hi.diff - lo.diff
        if lo.kind in TESTED_KINDS and lo.n_pairs >= 2 and hi.n_pairs >= 2:
            v1, v2 = lo.se**2, hi.se**2
            if v1 + v2 > 0 and lo.df > 0 and hi.df > 0:
                c.se = math.sqrt(v1 + v2)
                c.df = (v1 + v2) ** 2 / (v1**2 / lo.df + v2**2 / hi.df)
                c.p = float(2 * sps.t.sf(abs(c.change) / c.se, c.df))
                tested.append(c)
    if tested:
        pvalues = np.array([c.p for c in tested])
        m = len(tested)
        if error_rate == "fdr":
            rejected, adjusted, _, _ = multipletests(pvalues, alpha, method="fdr_bh")
            level = max(int(rejected.sum()), 1) * alpha / m  # Benjamini–Yekutieli's false-coverage-rate level
        else:
            rejected, adjusted, _, _ = multipletests(pvalues, alpha, method="bonferroni")
            level = alpha / m
        for c, p_adj in zip(tested, adjusted, strict=True):
            c.p_adjusted = float(p_adj)
            half = sps.t.ppf(1 - level / 2, c.df) * c.se
            c.ci_low, c.ci_high = c.change - half, c.change + half
    for c in changes:
        c.status = status(c.low, c.high, c.shown)
    return changes


def parse_source(text: str) -> tuple[str, str | None]:
    """A command-line study: (storage URL, study name or None) from a folder, a SQLite file or a URL, ``::NAME`` optional."""
    source, _, name = text.partition("::")
    if "://" not in source:
        path = Path(source)
        if path.is_dir():
            path = path / "study.db"
        elif path.is_file() and tarfile.is_tarfile(path):  # the GPU check's gpu-check-results.tar.gz
            path = _unpack_database(path)
        if not path.is_file():
            raise StudyError(f"{text}: no such study (give a folder holding study.db, a SQLite file, a GPU check's archive or a URL)")
        source = f"sqlite:///{path}"
    return source, name or None


def _unpack_database(archive: Path) -> Path:
    """The ``study.db`` of ``archive``, extracted into a temporary folder removed when the process ends."""
    with tarfile.open(archive) as tar:
        member = next((m for m in tar.getmembers() if m.isfile() and Path(m.name).name == "study.db"), None)
        if member is None:
            raise StudyError(f"{archive}: the archive holds no study.db (the GPU check packs one when its study ran)")
        folder = Path(tempfile.mkdtemp(prefix="cnn-compare-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        member.name = "study.db"
        tar.extract(member, folder, filter="data")
    return folder / "study.db"


def load_rung(text: str, margin: float | None = None, error_rate: str = "fdr") -> Rung:
    """Analyse one study of the ladder as ``reports.build`` does."""
    from reports.build import analyse
    from reports.frames import frames_from_study

    storage, name = parse_source(text)
    store = open_storage(storage, must_exist=True)
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    if name is None:
        if len(names) != 1:
            listing = ", ".join(repr(n) for n in names) or "none"
            raise StudyError(f"{text}: name the study as {text}::NAME (studies there: {listing})")
        name = names[0]
    elif name not in names:
        listing = ", ".join(repr(n) for n in names) or "none"
        raise StudyError(f"no study {name!r} in {mask_password(storage)}; studies there: {listing}")
    frames = frames_from_study(optuna.load_study(study_name=name, storage=store))
    if not frames.settings.paired:
        raise StudyError(f"{text}: study {name!r} is not a paired grid, so its verdicts cannot be set side by side "
                         "(run it with the default --sampler grid)")  # fmt: skip
    result = analyse(frames, margin, full=False, error_rate=error_rate)
    finished = int(frames.trials["state"].isin(["complete", "pruned"]).sum())
    by_key = {e.key: e for e in map(entry, result.comparisons)}
    return Rung(text, name, frames.settings.train_size, frames.settings.test_size, finished, by_key)


def ladder(rungs: list[Rung], error_rate: str = "fdr") -> tuple[list[Change], dict[Key, list[int]]]:
    """Every comparison read on each pair of neighbouring rungs (by training-set size), tested as one family; and, for
    the comparisons some rungs lack, the rungs (indices) that have them."""
    changes = []
    for low, high in itertools.pairwise(rungs):
        for k, c in low.comparisons.items():
            if k in high.comparisons:
                changes.append(Change(k, c, high.comparisons[k]))
    keys = dict.fromkeys(k for r in rungs for k in r.comparisons)
    partial = {k: [i for i, r in enumerate(rungs) if k in r.comparisons] for k in keys}
    partial = {k: have for k, have in partial.items() if len(have) < len(rungs)}
    return test_changes(changes, error_rate), partial


def frame(rungs: list[Rung], changes: list[Change]) -> pd.DataFrame:
    """The CSV: one row per comparison, each rung's estimate and outcome (suffix _1, _2, … by training-set size), and each
    neighbouring pair's change (suffix _1 for rungs 1→2, …)."""
    keys = list(dict.fromkeys(k for r in rungs for k in r.comparisons))
    found = {(ch.key, id(ch.low)): ch for ch in changes}
    rows = []
    for k in keys:
        row = dict(zip(("question", "kind", "a", "b", "lr"), k, strict=True))
        for i, r in enumerate(rungs, 1):
            c = r.comparisons.get(k)
            row |= {f"train_size_{i}": r.train_size, f"n_pairs_{i}": c.n_pairs if c else None, f"diff_{i}": c.diff if c else None,
                    f"ci_low_{i}": c.ci_low if c else None, f"ci_high_{i}": c.ci_high if c else None,
                    f"outcome_{i}": c.outcome if c else "absent"}  # fmt: skip
        for i, r in enumerate(rungs[:-1], 1):
            ch = found.get((k, id(r.comparisons[k]))) if k in r.comparisons else None
            row |= {f"change_{i}": ch.change if ch else None, f"change_low_{i}": ch.ci_low if ch else None,
                    f"change_high_{i}": ch.ci_high if ch else None, f"change_p_adjusted_{i}": ch.p_adjusted if ch else None,
                    f"status_{i}": ch.status if ch else "absent"}  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def _name(k: Key) -> str:
    question, kind, a, b, where = k
    where = {"pooled": "pooled over learning rates", "interaction": "interaction with the learning rate"}.get(where, where)
    if kind in ("drop", "gain", "loss rise"):
        return f"{kind}: {a} vs {b}, {where}"
    return f"{a} − {b}, {where}"


def _cell(c: Entry) -> str:
    if c.kind == "interaction":
        return c.outcome
    shown = f"{c.diff:+.1f}"
    if not math.isnan(c.ci_low):
        shown += f" [{c.ci_low:.1f}, {c.ci_high:.1f}]"
    return f"{shown} ({c.outcome}, n={c.n_pairs})"


def question_sentence(question: str, changes: list[Change], rungs: list[Rung]) -> str:
    """Whether the answer held as the data grew, in one sentence with its counts."""
    mine = [c for c in changes if c.key[0] == question]
    if not mine:
        return "No comparison of this question was made on two rungs."
    counts = {s: sum(c.status == s for c in mine) for s in STATUSES}
    listed = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    sizes = " → ".join(f"{r.train_size:,}" for r in rungs)
    if counts["changed"]:
        held = f"The answer moved with the data: {counts['changed']} of {len(mine)} verdicts changed"
    elif counts["differs, not shown"] or counts["no longer decided"]:
        moved = counts["differs, not shown"] + counts["no longer decided"]
        held = f"No change is shown, but {moved} of {len(mine)} verdicts read differently"
    else:
        held = f"The answer held: no verdict of {len(mine)} changed"
    return f"{held} as the training set grew ({sizes} images): {listed}."


def figure(question: str, rungs: list[Rung]):
    """Each tested comparison's paired difference against the training-set size, with its interval."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    keys = [k for k in dict.fromkeys(k for r in rungs for k in r.comparisons) if k[0] == question and k[1] in TESTED_KINDS]
    sizes = [r.train_size for r in rungs]
    offsets = np.linspace(-0.06, 0.06, max(len(keys), 1))
    for k, offset in zip(keys, offsets, strict=False):
        xs, ys, lo, hi = [], [], [], []
        for r in rungs:
            c = r.comparisons.get(k)
            if c is None or math.isnan(c.diff):
                continue
            xs.append(r.train_size * 10**offset)
            ys.append(c.diff)
            lo.append(c.diff - c.ci_low if not math.isnan(c.ci_low) else 0.0)
            hi.append(c.ci_high - c.diff if not math.isnan(c.ci_high) else 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=_name(k))
    ax.axhline(0, c="0.3", lw=1)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
    ax.minorticks_off()
    unit = "test loss" if question == "epochs" else "accuracy points"
    ax.set(xlabel="training images", ylabel=f"paired difference ({unit})", title=f"{question}: each study's differences and intervals")
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize="x-small")
    fig.tight_layout()
    return fig


def page(rungs: list[Rung], changes: list[Change], partial: dict[Key, list[int]], error_rate: str, out: Path) -> str:
    rate = ("false discovery rate 5% (Benjamini–Hochberg; intervals: Benjamini–Yekutieli false coverage)" if error_rate == "fdr"
            else "family-wise error rate 5% (Bonferroni)")  # fmt: skip
    studies = pd.DataFrame(
        [[str(i), r.label, f"`{r.source}`", r.study_name, str(r.n_trials), str(len(r.comparisons))] for i, r in enumerate(rungs, 1)],
        columns=["rung", "data", "study", "name", "finished trials", "comparisons"],
    )
    counts = pd.DataFrame(
        [[q, *(str(sum(c.status == s and c.key[0] == q for c in changes)) for s in STATUSES)] for q in QUESTIONS],
        columns=["question", *STATUSES],
    )
    preamble = [
        blocks.Text(
            "Each study's verdicts are its own report's; a *change* between two studies is claimed only when the two estimates are "
            f"shown to differ, at one error rate over the {sum(c.tested for c in changes)} comparisons tested on two rungs: {rate}. A "
            "change's interval excludes zero exactly when the change is claimed."
        ),
        Table(studies),
        blocks.Heading("Did the answers hold?"),
        *(blocks.Text(f"**{q.capitalize()}.** {question_sentence(q, changes, rungs)}") for q in QUESTIONS),
        Table(counts),
    ]
    sections = []
    for q in QUESTIONS:
        mine = [c for c in changes if c.key[0] == q]
        rows = [[_name(c.key), _cell(c.low), _cell(c.high),
                 "–" if not c.tested else f"{c.change:+.1f} {blocks.interval(c.ci_low, c.ci_high, 1)}", c.status_text]
                for c in mine]  # fmt: skip
        table = pd.DataFrame(rows, columns=["comparison", "smaller rung", "larger rung", "change [interval]", "status"])
        section = Section(q.capitalize()).add(question_sentence(q, changes, rungs), Table(table))
        if any(k[0] == q and k[1] in TESTED_KINDS for r in rungs for k in r.comparisons):
            section.add(Figure(f"compare_{q.replace(' ', '_')}", f"{q}: differences against training-set size",
                               lambda q=q: figure(q, rungs)))  # fmt: skip
        sections.append(section)
    if partial:
        rows = [[_name(k), ", ".join(str(i + 1) for i in have)] for k, have in partial.items()]
        sections.append(Section("Comparisons only some studies make").add(
            "A grid point one study lacks (another learning rate, a loss it did not try) or a comparison it had too few pairs for.",
            Table(pd.DataFrame(rows, columns=["comparison", "made by rungs"])),
        ))  # fmt: skip
    return blocks.write("Do the answers hold as the data grows?", preamble, sections, out)


def compare(sources: list[str], out: str | Path, margin: float | None = None, error_rate: str = "fdr") -> Path:
    """Analyse ``sources`` and write ``compare.md``, its figures and ``compare.csv`` into ``out``; returns the page's path."""
    if error_rate not in ERROR_RATES:
        raise ValueError(f"--error-rate must be one of {', '.join(ERROR_RATES)} but got {error_rate!r}")
    rungs = []
    for i, source in enumerate(sources, 1):
        print(f"[{i}/{len(sources)}] analysing {source} …", file=sys.stderr, flush=True)
        rungs.append(load_rung(source, margin, error_rate))
    rungs.sort(key=lambda r: (r.train_size, r.test_size))
    changes, partial = ladder(rungs, error_rate)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame(rungs, changes).to_csv(out / "compare.csv", index=False)
    path = out / "compare.md"
    path.write_text(page(rungs, changes, partial, error_rate, out))
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m reports.compare",
        description="Set the verdicts of two or more paired studies side by side, ordered by training-set size: which held, "
        "changed, were newly decided or stay open as the data grew.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "studies", nargs="+", metavar="STUDY",
        help="a folder holding study.db, a SQLite file, gpu-check-results.tar.gz or a storage URL (::NAME names the study)",
    )  # fmt: skip
    parser.add_argument("--out", default="runs/compare", help="output folder (default: %(default)s)")
    parser.add_argument("--margin", type=float, help="practical margin in accuracy points (default: each study's own)")
    parser.add_argument("--error-rate", choices=ERROR_RATES, default="fdr",
                        help="fdr: 5%% false discoveries among the claims (default); fwer: 5%% chance of any false claim")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.studies) < 2:
        parser.error("give at least two studies to compare")
    try:
        path = compare(args.studies, args.out, args.margin, args.error_rate)
    except (StudyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"comparison: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
