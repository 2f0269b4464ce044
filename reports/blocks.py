"""What a report is made of: sections of text, tables and figures, written in one place.

Section functions (``reports.sections``) compute and return these blocks; :func:`write`
numbers the question headings, draws the figures into PNG files and joins the markdown.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd


@dataclass
class Text:
    text: str


@dataclass
class Table:
    frame: pd.DataFrame  # cells already formatted as strings


@dataclass
class Figure:
    name: str  # file name without .png
    caption: str
    draw: Callable[[], plt.Figure]


@dataclass
class Heading:
    text: str  # a sub-heading (###) inside a section


Block = Text | Table | Figure | Heading


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    numbered: bool = False  # the notebook's questions are numbered 1-4

    def add(self, *blocks: Block | str) -> "Section":
        self.blocks.extend(Text(b) if isinstance(b, str) else b for b in blocks)
        return self


def pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}%"


def pts(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+.{digits}f}"


def interval(low: float, high: float, digits: int = 2) -> str:
    return "–" if low is None or math.isnan(low) else f"[{low:.{digits}f}, {high:.{digits}f}]"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def lr_text(lr: float) -> str:
    return f"{lr:g}"


def markdown_table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True) if len(frame) else "_(no rows)_"


def write(title: str, preamble: list[Block], sections: list[Section], out: Path) -> str:
    """Draw every figure into ``out`` and return the report's markdown; question sections get numbers."""
    lines = [f"# {title}", ""]
    number = 0

    def emit(blocks: list[Block]) -> None:
        for block in blocks:
            if isinstance(block, Text):
                lines.append(block.text)
            elif isinstance(block, Table):
                lines.append(markdown_table(block.frame))
            elif isinstance(block, Heading):
                lines.append(f"### {block.text}")
            else:
                fig = block.draw()
                fig.savefig(out / f"{block.name}.png", dpi=110)
                plt.close(fig)
                lines.append(f"![{block.caption}]({block.name}.png)")
            lines.append("")

    emit(preamble)
    for section in sections:
        if section.numbered:
            number += 1
        lines.extend([f"## {number}. {section.title}" if section.numbered else f"## {section.title}", ""])
        emit(section.blocks)
    return "\n".join(lines).rstrip() + "\n"
