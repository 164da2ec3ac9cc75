"""The nbgrader round trip of the four assignments in coursework/source/, in a temporary course directory.

Generating the student version strips the solutions; autograding the source (the instructor's solutions)
gives full marks, and autograding the untouched student version gives zero. nbgrader runs in-process through
its Python API (`NbGraderAPI`), as `nbgrader generate_assignment` and `nbgrader autograde` would.
"""
import json, os, shutil, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ('yu2020', 'han', 'ugochukwu', 'shinde')
pytestmark = pytest.mark.filterwarnings('ignore:Object of type:Warning')  # nbgrader's own SQLAlchemy use
WHO = {'instructor': 'source', 'student': 'release'}   # submitted as: the source notebook, the student version


def _api(course:Path):
    "An NbGraderAPI on `course`, configured by the course's nbgrader_config.py."
    try:
        from nbgrader.apps import NbGraderAPI
        from traitlets.config.loader import PyFileConfigLoader
    except ImportError:
        pytest.fail('nbgrader is a dev requirement (settings.ini): pip install -e ".[dev]"')
    cfg = PyFileConfigLoader('nbgrader_config.py', path=str(course)).load_config()
    cfg.CourseDirectory.root = str(course)
    return NbGraderAPI(config=cfg)


def _ok(result:dict, what:str):
    assert result['success'], f"{what} failed:\n{result.get('error', '')}\n{result.get('log', '')[-3000:]}"


@pytest.fixture(scope='module')
def course(tmp_path_factory):
    "A course directory with every assignment generated, submitted twice and autograded; its scores."
    course = tmp_path_factory.mktemp('course')
    shutil.copy(ROOT/'coursework'/'nbgrader_config.py', course)
    shutil.copytree(ROOT/'coursework'/'source', course/'source')
    api = _api(course)
    with pytest.MonkeyPatch.context() as mp:
        # the kernels that autograde runs must import this checkout's fermusic; nbgrader's database
        # migrations run the `alembic` script installed beside this Python
        mp.setenv('PYTHONPATH', os.pathsep.join([str(ROOT), *filter(None, [os.environ.get('PYTHONPATH')])]))
        mp.setenv('PATH', os.pathsep.join([str(Path(sys.executable).parent), os.environ.get('PATH', '')]))
        mp.chdir(course)
        for a in ASSIGNMENTS: _ok(api.generate_assignment(a), f'generate_assignment {a}')
        for a in ASSIGNMENTS:
            for who, folder in WHO.items():
                (course/'submitted'/who/a).mkdir(parents=True)
                shutil.copy(course/folder/a/f'{a}.ipynb', course/'submitted'/who/a)
                _ok(api.autograde(a, who), f'autograde {a} {who}')
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course/'gradebook.db'}") as gb:
        scores = {(a, w): (gb.find_submission(a, w).score, gb.find_submission(a, w).max_score)
                  for a in ASSIGNMENTS for w in WHO}
    return course, scores


@pytest.mark.parametrize('a', ASSIGNMENTS)
def test_solutions_get_full_marks(course, a):
    score, most = course[1][(a, 'instructor')]
    assert most > 0 and score == most, f'{a}: the source solutions score {score} of {most}'


@pytest.mark.parametrize('a', ASSIGNMENTS)
def test_untouched_student_version_gets_zero(course, a):
    score, most = course[1][(a, 'student')]
    assert most > 0 and score == 0, f'{a}: the student version scores {score} of {most} without an answer'


@pytest.mark.parametrize('a', ASSIGNMENTS)
def test_student_version_hides_the_solutions(course, a):
    "The released notebook has no solution region and none of the key's large answers."
    text = (course[0]/'release'/a/f'{a}.ipynb').read_text(encoding='utf-8')
    assert 'BEGIN SOLUTION' not in text and 'NotImplementedError' in text
    from fermusic.exercises import load_answer_key
    for k, v in load_answer_key().items():
        if isinstance(v['answer'], int) and v['answer'] >= 10_000: assert str(v['answer']) not in text, (a, k)


def test_assignments_grade_known_exercises():
    "Every graded cell checks an exercise of `fermusic.exercises` with `passes`, worth points."
    from fermusic.exercises import EXERCISES
    for a in ASSIGNMENTS:
        nb = json.loads((ROOT/'coursework'/'source'/a/f'{a}.ipynb').read_text(encoding='utf-8'))
        tests = [c for c in nb['cells'] if c['metadata'].get('nbgrader', {}).get('grade')]
        assert 4 <= len(tests) <= 8, a
        for c in tests:
            key = c['metadata']['nbgrader']['grade_id'].removesuffix('-test')
            assert key in EXERCISES and f"passes('{key}'," in ''.join(c['source']), (a, key)
            assert c['metadata']['nbgrader']['points'] > 0
