"""Checks of the kit as a package: generated code matches the notebooks, install files agree, CI runs the README's command."""
import configparser, json, re, shlex, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cfg():
    c = configparser.ConfigParser(delimiters=['=']); c.read(ROOT/'settings.ini', encoding='utf-8')
    return c['DEFAULT']


def _name(req):
    "Distribution name of a requirement string, normalised (`jax[cpu]>=0.4` -> `jax`)."
    return re.split(r'[\[<>=!~ ;]', req.strip(), maxsplit=1)[0].lower().replace('_', '-')


def test_export_reproduces_package(tmp_path):
    "nbdev_export on the committed notebooks reproduces fermusic/ byte for byte."
    for p in ('nbs', 'settings.ini', 'README.md'): (shutil.copytree if (ROOT/p).is_dir() else shutil.copy)(ROOT/p, tmp_path/p)
    (tmp_path/'fermusic').mkdir(); shutil.copy(ROOT/'fermusic'/'__init__.py', tmp_path/'fermusic'/'__init__.py')
    exe = Path(sys.executable).with_name('nbdev_export')
    res = subprocess.run([str(exe) if exe.exists() else 'nbdev_export'], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ours = {p.relative_to(ROOT/'fermusic'): p.read_bytes() for p in (ROOT/'fermusic').rglob('*.py') if '__pycache__' not in p.parts}
    fresh = {p.relative_to(tmp_path/'fermusic'): p.read_bytes() for p in (tmp_path/'fermusic').rglob('*.py') if '__pycache__' not in p.parts}
    assert sorted(map(str, ours)) == sorted(map(str, fresh)), 'fermusic/ holds files nbdev_export does not make (or misses some)'
    stale = [str(p) for p in ours if ours[p] != fresh[p]]
    assert not stale, f'fermusic/ differs from the notebooks in {stale}: edit the notebook, run nbdev_export, commit both'


def test_environment_yml_lists_every_requirement():
    "environment.yml (conda) and settings.ini (pip) name the same packages; dlib comes from conda-forge."
    cfg = _cfg()
    pip_side = {_name(r) for k in ('requirements', 'dev_requirements') for r in shlex.split(cfg.get(k, ''))}
    pip_side |= {'jupyterlab'}
    text = (ROOT/'environment.yml').read_text()
    listed = {_name(l.strip()[2:]) for l in text.splitlines() if l.strip().startswith('- ') and not l.strip().startswith('- -e')}
    missing = pip_side - listed
    assert not missing, f'environment.yml lacks {sorted(missing)}'
    assert 'dlib' in listed and 'dlib-bin' not in listed
    assert [_name(r) for r in shlex.split(cfg['dlib_requirements'])] == ['dlib-bin']


def _readme_test_command():
    text = (ROOT/'README.md').read_text(encoding='utf-8')
    m = re.search(r'<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```', text, re.S)
    assert m, 'README.md has no fenced block after <!-- test-command -->'
    return m.group(1).strip()


def test_ci_runs_readme_test_command():
    "CI runs the README's test command, then whole every lesson that has slow cells (and no other)."
    from conftest import is_slow_cell
    ci = [l.strip() for l in (ROOT/'.ci'/'run').read_text().splitlines() if l.strip() and not l.strip().startswith('#')]
    cmd = _readme_test_command()
    assert cmd in ci, f'.ci/run does not run the README test command {cmd!r}'
    (rest,) = ci[ci.index(cmd) + 1:]
    pre, sub = rest.split('$(')
    assert pre == 'pytest --nbval -m "" ' and sub.endswith(')'), rest
    picked = subprocess.run(['bash', '-c', sub[:-1]], cwd=ROOT, capture_output=True, text=True).stdout.split()
    slow = [f'nbs/{p.name}' for p in sorted((ROOT/'nbs').glob('*.ipynb'))
            if any(c['cell_type'] == 'code' and is_slow_cell(''.join(c['source']))
                   for c in json.loads(p.read_text(encoding='utf-8'))['cells'])]
    assert slow and picked == slow, (picked, slow)


def test_slow_cells_are_marked_slow():
    "A notebook cell with a `# NBVAL_SLOW` line gets pytest's `slow` mark (conftest.py), so the default run leaves it out."
    import nbformat
    from conftest import pytest_collection_modifyitems
    class IPyNbCell:     # stands in for nbval's item: what the hook reads is its class name, `cell` and its marks
        def __init__(self, src): self.cell, self.marks = nbformat.v4.new_code_cell(src), []
        def add_marker(self, m): self.marks.append(m.name)
    srcs = ('# NBVAL_IGNORE_OUTPUT\n# NBVAL_SLOW\nx = 1', 'x = 1  # NBVAL_SLOW', 'x = 1', 'x = 1\n# NBVAL_SLOW',
            '#NBVAL_SLOW\nx = 1', '  # NBVAL_SLOW\nx = 1')   # only the exact line, as CI's grep reads it
    items = [IPyNbCell(s) for s in srcs]
    pytest_collection_modifyitems(items)
    assert [i.marks for i in items] == [['slow'], [], [], ['slow'], [], []]


def test_notebooks_are_stored_run():
    "Every lesson notebook keeps outputs with execution counts (what nbval compares) and opens with a title and summary."
    for p in sorted((ROOT/'nbs').glob('*.ipynb')):
        nb = json.loads(p.read_text(encoding='utf-8'))
        code = [c for c in nb['cells'] if c['cell_type'] == 'code' and ''.join(c['source']).strip()]
        assert code and all(c.get('execution_count') is not None for c in code), f'{p.name}: run it and save the outputs (see CONTRIBUTING.md)'
        first = ''.join(nb['cells'][0]['source'])
        assert first.startswith('# ') and '\n> ' in first, f'{p.name}: the first cell must be a title and a > summary line'
        errors = [o for c in code for o in c.get('outputs', []) if o.get('output_type') == 'error']
        assert not errors, f'{p.name}: stored outputs contain an error'


def test_readme_is_rendered_from_index():
    "README.md is what `fermusic nb readme` makes of nbs/index.ipynb (edit the notebook, then regenerate)."
    from fermusic.notebooks import render_readme
    assert (ROOT/'README.md').read_text(encoding='utf-8') == render_readme(ROOT/'nbs'/'index.ipynb', out=None)

def test_record_command_of_python_c_keeps_its_code():
    "A record made under `python -c CODE` names the code and the kit's environment settings, so the run can be repeated."
    code = 'from fermusic.records import current_command; print(current_command())'
    env = {k: v for k, v in __import__('os').environ.items() if not k.startswith('FERMUSIC_')}
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                         env=dict(env, FERMUSIC_PROFILE='full', FERMUSIC_OVERRIDES='{"epochs": 3}')).stdout.strip()
    assert shlex.split(out)[:2] == ['FERMUSIC_PROFILE=full', 'FERMUSIC_OVERRIDES={"epochs": 3}'], out
    assert shlex.split(out)[-2:] == ['-c', code], out
