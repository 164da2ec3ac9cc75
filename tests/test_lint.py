"""The lint gate of the default suite: ruff's pyflakes rules over the package and the lessons'
code, and the house width (100 columns, `[tool.ruff]` in pyproject.toml) over both.

Undefined names, unused imports and redefinitions are bugs or dead weight (a name imported only in a
hidden notebook cell once made `multimodal.run_fer2013` raise NameError). The package is generated
from the notebooks, so a finding is fixed in the notebook, then `nbdev_export`."""

import shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff():
    exe = shutil.which('ruff') or str(Path(sys.executable).with_name('ruff'))
    if not Path(exe).exists():
        pytest.fail('ruff is not installed: pip install -e ".[dev]" (it is a dev requirement)')
    return exe


@pytest.mark.parametrize('target', ['fermusic', 'nbs', 'tests', 'benchmarks', 'tools'])
def test_pyflakes_rules_pass(target):
    cmd = (
        'check --select F --output-format concise --no-cache --exclude fermusic/_modidx.py'.split()
    )
    res = subprocess.run([_ruff(), *cmd, target], cwd=ROOT, capture_output=True, text=True)
    msg = f'ruff finds problems in {target}/ (fix them in the notebooks):\n{res.stdout[-4000:]}'
    assert res.returncode == 0, msg


FIX = (
    'run `python tools/fmt_nbs.py` (it formats nbs/*.ipynb, runs nbdev_export and lists any line '
    'it cannot shorten, to shorten by hand in the notebook)'
)


def test_notebooks_are_formatted():
    "The notebooks' code is as `ruff format` (pyproject.toml's settings) leaves it."
    cmd = [_ruff(), 'format', '--check', '--no-cache', 'nbs']
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    out = res.stdout[-3000:] + res.stderr[-1000:]
    assert res.returncode == 0, f'ruff format would change these notebooks; {FIX}:\n{out}'


def test_no_line_over_the_house_width():
    "No line of the notebooks' code or of fermusic/*.py (bar nbdev's own) is over the width."
    sys.path.insert(0, str(ROOT / 'tools'))
    try:
        import fmt_nbs
    finally:
        sys.path.remove(str(ROOT / 'tools'))
    width = fmt_nbs.line_length()
    nbs = sorted((ROOT / 'nbs').glob('*.ipynb'))
    wide = fmt_nbs.long_lines(nbs + fmt_nbs.package_files(), width)
    assert not wide, f'{len(wide)} line(s) over {width} columns; {FIX}:\n' + '\n'.join(wide[:40])
