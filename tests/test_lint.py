"""The lint gate of the default suite: ruff's pyflakes rules over the package and the lessons' code.

Undefined names, unused imports and redefinitions are bugs or dead weight (a name imported only in a hidden
notebook cell once made `multimodal.run_fer2013` raise NameError). The package is generated from the notebooks,
so a finding is fixed in the notebook, then `nbdev_export`."""
import shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff():
    exe = shutil.which('ruff') or str(Path(sys.executable).with_name('ruff'))
    if not Path(exe).exists(): pytest.fail('ruff is not installed: pip install -e ".[dev]" (it is a dev requirement)')
    return exe


@pytest.mark.parametrize('target', ['fermusic', 'nbs', 'tests', 'benchmarks'])
def test_pyflakes_rules_pass(target):
    res = subprocess.run([_ruff(), 'check', '--select', 'F', '--output-format', 'concise', '--no-cache',
                          '--exclude', 'fermusic/_modidx.py', target], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, f'ruff finds problems in {target}/ (fix them in the notebooks):\n{res.stdout[-4000:]}'

