"""pytest set-up for the README's test command, `pytest --nbval`, run from the repository root.

- Notebook kernels start from this process's environment: the quick profile, TensorFlow's C++ logging
  silenced, no overrides, so the stored quick-profile outputs are what a run reproduces.
- nbval compares text outputs. stderr carries noise that no one reads as a result (TensorFlow's start-up
  lines, deprecation warnings from dependencies), so stderr streams are left out of the comparison; a
  notebook's checks are its stdout, its displayed values and its assertions.
- tests/nbval_sanitize.cfg replaces memory addresses, temporary paths, timestamps, durations and progress
  bars before comparing; it is used without having to name it on the command line.
- Kernels run in this environment (`--nbval-current-env`), not whatever kernel a notebook names.
- A notebook cell with the comment line `# NBVAL_SLOW` (the kit's own marker, not nbval's) gets pytest's
  `slow` mark, so the default suite leaves it out like the other opt-in checks; so must every later cell
  that uses what it made. `pytest --nbval -m "" nbs/LESSON.ipynb` runs a lesson whole.
See CONTRIBUTING.md for the markers (NBVAL_IGNORE_OUTPUT, ...) the notebooks use.
"""
import os
from pathlib import Path

import pytest

os.environ['FERMUSIC_PROFILE'] = 'quick'
os.environ.pop('FERMUSIC_OVERRIDES', None)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('KERAS_BACKEND', 'tensorflow')
os.environ.setdefault('PYTHONWARNINGS', 'ignore')

HERE = Path(__file__).resolve().parent

try:
    import nbval.plugin as _nbval
except ImportError:  # plain pytest without nbval still runs tests/
    _nbval = None

if _nbval is not None:
    _transform = _nbval.transform_streams_for_comparison

    def _without_stderr(outputs):
        "Drop stderr streams before nbval compares a cell's outputs."
        return _transform([o for o in outputs if not (o.get('output_type') == 'stream' and o.get('name') == 'stderr')])

    _nbval.transform_streams_for_comparison = _without_stderr


def pytest_configure(config):
    opt = config.option
    if getattr(opt, 'nbval', False) or getattr(opt, 'nbval_lax', False):
        if not opt.nbval_sanitize_with: opt.nbval_sanitize_with = str(HERE/'tests'/'nbval_sanitize.cfg')
        if not opt.nbval_kernel_name: opt.nbval_current_env = True


SLOW_MARKER = 'NBVAL_SLOW'


def is_slow_cell(source: str) -> bool:
    """Whether a cell's source has the line `# NBVAL_SLOW`, exactly (as CI's grep finds it); a near miss
    such as `#NBVAL_SLOW` stays in the default run, where it shows, rather than in no run."""
    return f'# {SLOW_MARKER}' in source.splitlines()


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by mark (`-m "not slow"`)
def pytest_collection_modifyitems(items):
    "Mark notebook cells that `is_slow_cell` `slow`."
    for item in items:
        cell = getattr(item, 'cell', None)
        if cell is not None and type(item).__name__ == 'IPyNbCell' and is_slow_cell(cell.source):
            item.add_marker(pytest.mark.slow)
