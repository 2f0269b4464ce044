"""Open a study's optuna-dashboard pages in a real headless browser and check what they say.

    python scripts/dashboard_check.py [--db docs/example/study.db] [--study-name cifar10-sequential] [--out dashboard-check]

On a COPY of the database (the given one is never written): builds the report (which names the
objective and writes the study's note, ``study.notes``), starts optuna-dashboard on 127.0.0.1,
and has headless Chromium render the study page, its analytics page (hyperparameter importance)
its note page and its trials page to PNG screenshots and to their rendered text. Exits non-zero, with one line
saying what is missing, when the study page does not show the metric's name or the note's answers.
Needs ``chromium`` (Debian: ``apt-get install chromium``).
"""

import html
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

from cnn.cli import ArgumentParser  # noqa: E402

BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1600",
    "--virtual-time-budget=15000",  # let the page's scripts fetch the study and draw before the capture
]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python scripts/dashboard_check.py", description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("--db", default=str(REPO / "docs" / "example" / "study.db"), help="SQLite study database (default: %(default)s)")
    parser.add_argument("--study-name", default="cifar10-sequential", help="study in it (default: %(default)s)")
    parser.add_argument("--out", default="dashboard-check", help="folder for the copy, report and screenshots (default: %(default)s)")
    parser.add_argument("--browser", default=shutil.which("chromium") or "chromium", help="the browser (default: %(default)s)")
    return parser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"error: optuna-dashboard did not answer at {url} within {seconds:.0f} s")


def render(browser: str, url: str, png: Path) -> str:
    """Screenshot ``url`` into ``png``; return the page's text after its scripts ran."""
    subprocess.run([browser, *BROWSER_FLAGS, f"--screenshot={png}", url], capture_output=True, timeout=120, check=False)
    dom = subprocess.run([browser, *BROWSER_FLAGS, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False).stdout
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.DOTALL)  # the page's text, not its code
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.browser).is_file() and not shutil.which(args.browser):
        print(f"error: no browser {args.browser!r}; install one (Debian: apt-get install chromium) or pass --browser", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    copy = out / "study.db"
    shutil.copy(args.db, copy)
    storage = f"sqlite:///{copy}"
    from reports.build import main as build_report

    if build_report(["--storage", storage, "--study-name", args.study_name, "--out", str(out / "report"), "--no-samples"]) != 0:
        return 1
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "study.dashboard", "--storage", storage, "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_up(f"{base}/api/studies")
        studies = json.loads(urllib.request.urlopen(f"{base}/api/studies", timeout=10).read())["study_summaries"]
        study_id = next(s["study_id"] for s in studies if s["study_name"] == args.study_name)
        pages = {  # optuna-dashboard 0.21: the study page, its note (a tab of its own), importance and trials
            "study": f"{base}/dashboard/studies/{study_id}",
            "note": f"{base}/dashboard/studies/{study_id}/note",
            "analytics": f"{base}/dashboard/studies/{study_id}/analytics",
            "trials": f"{base}/dashboard/studies/{study_id}/trials",
        }
        texts = {}
        for name, url in pages.items():
            texts[name] = render(args.browser, url, out / f"{name}.png")
            (out / f"{name}.txt").write_text(texts[name] + "\n")
            print(f"{name}: {url} -> {out / f'{name}.png'} ({len(texts[name])} characters of text)")
    finally:
        server.terminate()
        server.wait(timeout=10)
    wanted = {  # what -> (page, text)
        "the metric's name": ("study", "accuracy (%)"),
        "the report's answers": ("note", "What the report answers"),
        "what replicate is": ("note", "replicate is not a hyperparameter"),
    }
    missing = [f"{what} on the {page} page" for what, (page, text) in wanted.items() if text not in texts[page]]
    if missing:
        print(f"error: the dashboard does not show {'; '.join(missing)}: see the screenshots and texts in {out}", file=sys.stderr)
        return 1
    print(f"the dashboard shows {', '.join(wanted)}; screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
