"""The layers import one way: cnn (bottom) <- study <- reports (top); only a command's main calls up."""

import subprocess
import sys

import pytest
from helpers import REPO

# module -> packages it must never load, directly or through what it imports.
# One fresh interpreter per row (each imports torch: a few seconds), so the rows cover every module by what
# it imports: study.runner loads all of study but its command, reports.build all of reports.
RULES = {
    "cnn, cnn.bench": ("optuna", "study", "reports"),
    "study.runner, study.load": ("reports",),
    "study.run": ("reports",),  # its main imports the report lazily, after the study ran
    "reports.build": ("study.runner", "study.objective", "study.space", "study.config", "study.samplers", "study.run"),
}


@pytest.mark.slow  # a fresh interpreter per row
@pytest.mark.parametrize(("module", "forbidden"), RULES.items())
def test_module_does_not_import_upward(module, forbidden):
    # A fresh interpreter: what this one has already imported must not hide a violation.
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout.split()
    bad = [name for name in loaded if any(name == f or name.startswith(f + ".") for f in forbidden)]
    assert not bad, f"{module} loads {bad}"
