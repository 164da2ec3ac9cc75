"""`fermusic sort` beyond the lesson (nbs/14_sort.ipynb): bad paths, names, images, links, numeric options,
permissions, a property-based test of the path rules and a fault-injection test of a sort killed midway."""
import io, json, os, stat, subprocess, sys, tempfile
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
from hypothesis import example, given, settings, strategies as st, HealthCheck
import fermusic.sort as S
from fermusic.sort import (_ours, sort_images, sort_summary, undo_sort, read_manifest, SORT_CSV, MANIFEST,
                           UnsafeOutputError, OutputWriteError)
from fermusic.data import EMOTIONS, DataError
from fermusic.cli import main, EXIT_CODES

ROOT = Path(__file__).resolve().parents[1]
FAKE = '''
import numpy as np
class FakeModel:
    "A stand-in for a Keras model: 24x24 greyscale in, 7 probabilities out (from the mean grey level)."
    input_shape, output_shape = (None, 24, 24, 1), (None, 7)
    def predict_proba(self, x):
        k = (np.asarray(x, float).reshape(len(x), -1).mean(1) // 37).astype(int) % 7
        p = np.full((len(x), 7), 0.05); p[np.arange(len(x)), k] = 0.7
        return p
'''
exec(FAKE)
fake = FakeModel()  # noqa: F821 (defined by FAKE)

def png(level:int=100, size=(24, 24), mode='L') -> bytes:
    buf = io.BytesIO(); Image.new(mode, size, level).save(buf, 'PNG'); return buf.getvalue()

def snapshot(root:Path) -> dict:
    "Every entry under `root` (links not followed): folders, files with bytes and mode, links with targets."
    snap = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(d)/n; st_ = p.lstat()
            if stat.S_ISLNK(st_.st_mode): snap[p] = ('link', os.readlink(p))
            elif stat.S_ISDIR(st_.st_mode): snap[p] = ('dir',)
            else: snap[p] = ('file', p.read_bytes(), stat.S_IMODE(st_.st_mode))
    return snap

@pytest.fixture
def folder(tmp_path):
    "Six faces (two in a sub-folder, one RGB), a text file, a truncated PNG and a JPEG without an extension."
    src = tmp_path/'in'; (src/'sub').mkdir(parents=True)
    for i in range(6): ((src/'sub') if i >= 4 else src).joinpath(f'f{i}.png').write_bytes(png(40 * i))
    Image.new('RGB', (30, 30), (10, 200, 30)).save(src/'sub'/'f0.png')   # same name as a top-level file
    Image.new('L', (30, 30), 90).save(src/'photo', 'JPEG')
    (src/'readme.txt').write_text('not an image')
    (src/'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated')
    return src

def tree(p):
    return sorted((f.relative_to(p).as_posix(), f.read_bytes()) for f in p.rglob('*') if f.is_file())

# ------------------------------------------------------------------------------------------------ the normal path

def test_copies_never_moves(folder, tmp_path):
    before = tree(folder)
    t = sort_images(folder, tmp_path/'out', model=fake)
    assert tree(folder) == before
    ok = t[t.status == 'copied']
    assert len(ok) == 8 and {'sub/f0.png', 'f0.png', 'photo'} <= set(ok.file)   # by content; same names kept apart
    for r in ok.itertuples(): assert (tmp_path/'out'/r.copied_to).read_bytes() == (folder/r.file).read_bytes()
    assert sorted(p.relative_to(tmp_path/'out').as_posix() for p in (tmp_path/'out').rglob('*') if p.is_file()) == \
        sorted(read_manifest(tmp_path/'out')['files'] + [MANIFEST])

def test_keras_model_sets_the_size(folder, tmp_path):
    "A real (untrained) Keras model at 24x24 RGB: sort reads its input shape and predicts through train.predict_proba."
    from fermusic.train import tiny_cnn
    t = sort_images(folder, tmp_path/'out', model=tiny_cnn((24, 24, 3)))
    ok = t[t.status == 'copied']
    np.testing.assert_allclose(ok[[f'p_{e}' for e in EMOTIONS]].sum(axis=1), 1, atol=1e-4)

def test_dry_run_writes_nothing(folder, tmp_path):
    t = sort_images(folder, tmp_path/'out', model=fake, dry_run=True)
    assert not (tmp_path/'out').exists() and (t.status == 'would copy').sum() == 8
    assert sort_summary(t).startswith('would copy 8 images')

def test_skipped_files_listed_with_reason_and_fix(folder, tmp_path):
    os.symlink(tmp_path/'nowhere.png', folder/'dangling.png')
    (tmp_path/'outside.png').write_bytes(png()); os.symlink(tmp_path/'outside.png', folder/'out.png')
    os.symlink(folder/'sub', folder/'subdir-link')
    os.symlink(folder/'f1.png', folder/'inner-link.png')                  # a link to a file inside INPUT is followed
    (folder/'tiny.png').write_bytes(png(size=(1, 1)))
    os.mkfifo(folder/'pipe.png')                                           # would block a reader forever
    t = sort_images(folder, tmp_path/'out', model=fake)
    sk = t[t.status.str.startswith('skipped')].set_index('file')
    assert sk.status.to_dict() == {'broken.jpg': 'skipped: unreadable', 'dangling.png': 'skipped: dangling link',
                                   'out.png': 'skipped: link out of the folder', 'pipe.png': 'skipped: not a regular file (a pipe, socket or device); move it out of the folder',
                                   'readme.txt': 'skipped: not an image', 'subdir-link/': 'skipped: link to a folder',
                                   'tiny.png': 'skipped: too small'}
    assert 're-save or re-download it' in sk.reason['broken.jpg'] and 'convert it' in sk.reason['readme.txt']
    assert 'use a larger image' in sk.reason['tiny.png'] and 'fix the link or remove it' in sk.reason['dangling.png']
    assert 'inner-link.png' in set(t[t.status == 'copied'].file)
    summary = sort_summary(t)
    assert 'skipped dangling.png: dangling link' in summary and 'skipped 7 files' in summary
    csv = pd.read_csv(tmp_path/'out'/SORT_CSV)
    assert set(csv.file) == set(t.file) and list(csv.columns[:3]) == ['file', 'status', 'reason']

def test_folder_without_images(tmp_path):
    src = tmp_path/'in'; src.mkdir(); (src/'a.txt').write_text('x'); (src/'b.png').write_bytes(b'nope')
    t = sort_images(src, tmp_path/'out', model=fake)
    assert t.status.tolist() == ['skipped: not an image', 'skipped: unreadable'] and (tmp_path/'out'/SORT_CSV).is_file()

def test_name_not_utf8(folder, tmp_path):
    "A Latin-1 name is copied as it is; the CSV (UTF-8) escapes it; the manifest keeps it exactly."
    bad = os.fsdecode(b'caf\xe9.png')
    (folder/bad).write_bytes(png(77))
    t = sort_images(folder, tmp_path/'out', model=fake)
    row = t.set_index('file').loc[bad]
    assert (tmp_path/'out'/row.copied_to).read_bytes() == png(77) and row.copied_to in read_manifest(tmp_path/'out')['files']
    assert 'caf\\xe9.png' in set(pd.read_csv(tmp_path/'out'/SORT_CSV).file)
    assert 'caf\\xe9.png' in sort_summary(t.assign(status='skipped: x', reason='y'))
    assert undo_sort(tmp_path/'out')['output_removed']

# ------------------------------------------------------------------------------------------------ OUTPUT rules

def test_output_inside_input_and_back(folder, tmp_path):
    with pytest.raises(UnsafeOutputError, match='inside the input folder'): sort_images(folder, folder/'sub'/'out', model=fake)
    with pytest.raises(UnsafeOutputError, match='is inside OUTPUT'): sort_images(folder, tmp_path, model=fake)
    with pytest.raises(UnsafeOutputError, match='inside the input folder'):
        sort_images(folder, tmp_path/'elsewhere'/'..'/'in'/'x', model=fake)
    assert not (folder/'sub'/'out').exists()

@pytest.mark.parametrize('bad', ['../evil', 'a/b', '..', '', '.', SORT_CSV, MANIFEST])
def test_class_names_must_be_plain_folder_names(folder, tmp_path, bad):
    with pytest.raises(UnsafeOutputError, match='not a plain folder name'):
        sort_images(folder, tmp_path/'out', model=fake, class_names=(bad,) + EMOTIONS[1:])
    assert not (tmp_path/'out').exists() and not (tmp_path/'evil').exists()

def test_overwrite_removes_only_what_a_sort_wrote(folder, tmp_path):
    mine = tmp_path/'mine'; mine.mkdir(); (mine/SORT_CSV).write_text('precious'); (mine/'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='holds no fermusic-sort.json'): sort_images(folder, mine, model=fake, overwrite=True)
    assert tree(mine) == [('keep.txt', b'x'), (SORT_CSV, b'precious')]
    out = tmp_path/'out'
    sort_images(folder, out, model=fake)
    with pytest.raises(FileExistsError, match='pass --overwrite'): sort_images(folder, out, model=fake)
    (out/'notes.txt').write_text('mine'); (out/'happy').mkdir(exist_ok=True); (out/'happy'/'x.txt').write_text('mine too')
    (folder/'f2.png').unlink()                                              # the new sort writes less
    sort_images(folder, out, model=fake, overwrite=True)
    assert (out/'notes.txt').read_text() == 'mine' and (out/'happy'/'x.txt').read_text() == 'mine too'
    files = read_manifest(out)['files']
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob('*') if p.is_file()) == \
        sorted(files + [MANIFEST, 'notes.txt', 'happy/x.txt'])
    r = undo_sort(out)
    assert not r['output_removed'] and sorted(r['left']) == ['happy', 'notes.txt'] and (out/'happy'/'x.txt').is_file()

def test_collisions_and_links_inside_output(folder, tmp_path):
    out = tmp_path/'out'
    t = sort_images(folder, out, model=fake)
    cls = t[t.status == 'copied'].emotion.iloc[0]
    target = tmp_path/'victim'; target.mkdir()
    undo_sort(out); out.mkdir(); (out/MANIFEST).write_text(json.dumps(dict(kind='fermusic sort', state='complete',
                                                                           files=[], dirs=[], created_output=False)))
    os.symlink(target, out/cls)                                             # a link where a class folder goes
    with pytest.raises(UnsafeOutputError, match='is a link or a file where the sort needs a folder'):
        sort_images(folder, out, model=fake, overwrite=True)
    (out/cls).unlink(); (out/cls).mkdir(); (out/cls/'f0.png').write_text('not the sort\'s')
    with pytest.raises(FileExistsError, match='was not written by a sort'): sort_images(folder, out, model=fake, overwrite=True)
    assert list(target.iterdir()) == [] and (out/cls/'f0.png').read_text() == 'not the sort\'s'

def test_forged_manifest_refused(folder, tmp_path):
    out = tmp_path/'out'; out.mkdir(); (tmp_path/'precious.txt').write_text('x')
    for files in (['../precious.txt'], ['/etc/passwd'], 'all'):
        (out/MANIFEST).write_text(json.dumps(dict(kind='fermusic sort', state='complete', files=files, dirs=[])))
        with pytest.raises(DataError, match='not a valid sort manifest'): sort_images(folder, out, model=fake, overwrite=True)
        with pytest.raises(DataError, match='not a valid sort manifest'): undo_sort(out)
    (out/MANIFEST).write_text('{broken')
    with pytest.raises(DataError, match='not a readable sort manifest'): undo_sort(out)
    assert (tmp_path/'precious.txt').exists()

def test_existing_outputs(folder, tmp_path, monkeypatch):
    empty = tmp_path/'empty'; empty.mkdir(); ino = empty.stat().st_ino
    sort_images(folder, empty, model=fake)
    assert empty.stat().st_ino == ino                                        # used as it is, not deleted and recreated
    assert not undo_sort(empty)['output_removed'] and empty.is_dir()        # the sort did not make it: it stays
    (tmp_path/'file').write_text('x')
    with pytest.raises(UnsafeOutputError, match='not a folder'): sort_images(folder, tmp_path/'file', model=fake)
    (tmp_path/'target').mkdir(); os.symlink(tmp_path/'target', tmp_path/'link')
    with pytest.raises(UnsafeOutputError, match='is a link'): sort_images(folder, tmp_path/'link', model=fake)
    with pytest.raises(FileNotFoundError, match='no such folder to make OUTPUT in'):
        sort_images(folder, tmp_path/'a'/'b', model=fake)
    with pytest.raises(ValueError, match='OUTPUT is empty'): sort_images(folder, '', model=fake)
    cwd = tmp_path/'here'; cwd.mkdir(); monkeypatch.chdir(cwd)
    (cwd/SORT_CSV).write_text('mine')                                       # '.' holding a predictions.csv of its own
    with pytest.raises(FileExistsError, match='holds no fermusic-sort.json'): sort_images(folder, '.', model=fake, overwrite=True)
    (cwd/SORT_CSV).unlink()
    sort_images(folder, '.', model=fake); sort_images(folder, '.', model=fake, overwrite=True)
    assert not undo_sort('.')['output_removed'] and Path.cwd() == cwd and list(cwd.iterdir()) == []

def test_write_failure_rolls_back(folder, tmp_path, monkeypatch):
    calls, real = [], S.shutil.copy2
    def flaky(a, b):
        calls.append(a)
        if len(calls) == 3: raise OSError(28, 'No space left on device', str(b))
        return real(a, b)
    monkeypatch.setattr(S.shutil, 'copy2', flaky)
    with pytest.raises(OutputWriteError, match='No space left on device; choose an OUTPUT .* nothing was left behind'):
        sort_images(folder, tmp_path/'out', model=fake)
    assert not (tmp_path/'out').exists()

def test_read_only_output(folder, tmp_path, monkeypatch, capsys):
    def refuse(self, *a, **k): raise OSError(30, 'Read-only file system', str(self))
    monkeypatch.setattr(Path, 'mkdir', refuse)
    with pytest.raises(OutputWriteError, match='Read-only file system'): sort_images(folder, tmp_path/'ro', model=fake)
    monkeypatch.setattr(S, '_load_model', lambda m, c: fake)
    assert main(['sort', str(folder), str(tmp_path/'ro')]) == 4
    assert 'fermusic: error: cannot write' in capsys.readouterr().err and not (tmp_path/'ro').exists()

def test_model_and_input_errors(folder, tmp_path):
    with pytest.raises(ValueError, match='7 outputs but 3 class names'): sort_images(folder, tmp_path/'out', model=fake, class_names=('a', 'b', 'c'))
    with pytest.raises(FileNotFoundError, match='no such folder'): sort_images(tmp_path/'nope', tmp_path/'out', model=fake)
    with pytest.raises(NotADirectoryError, match='INPUT must be a folder'): sort_images(folder/'f1.png', tmp_path/'out', model=fake)
    with pytest.raises(FileNotFoundError, match='no emotion model'): sort_images(folder, tmp_path/'out', model=tmp_path/'none.keras')
    assert not (tmp_path/'out').exists()

# ------------------------------------------------------------------------------------------------ the command

def test_cli_sort_and_exit_codes(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(S, '_load_model', lambda m, c: fake)
    assert main(['sort', str(folder), str(tmp_path/'out'), '--dry-run']) == 0
    assert 'would copy 8 images' in capsys.readouterr().out and not (tmp_path/'out').exists()
    assert main(['sort', str(folder), str(tmp_path/'out')]) == 0
    assert main(['sort', str(folder), str(tmp_path/'out')]) == 2 and '--overwrite' in capsys.readouterr().err
    assert main(['sort', str(folder), str(folder/'o')]) == 2
    assert main(['sort', str(folder), '']) == 2 and 'OUTPUT is empty' in capsys.readouterr().err
    assert main(['unsort', str(tmp_path/'out')]) == 0 and not (tmp_path/'out').exists()
    assert main(['unsort', str(tmp_path/'out')]) == 2
    assert main(['sort', '--help']) == 0
    out = capsys.readouterr().out
    assert all(f'{k:>3}  {v}' in out for k, v in EXIT_CODES.items())
    assert main(['--help']) == 0 and 'exit status:' in capsys.readouterr().out

@pytest.mark.parametrize('args', [['--min-score', 'nan'], ['--min-score', 'inf'], ['--min-score', 'x'],
                                  ['--top', '0'], ['--top', '-3'], ['--top', '2.5']])
def test_cli_numeric_options(args, capsys):
    assert main(['recommend', 'photo.jpg', *args]) == 2
    assert 'pass e.g.' in capsys.readouterr().err

def test_sixteen_bit_photo_reads_like_eight_bit(tmp_path):
    "The 16-bit greyscale photo `recommend` once called empty: one reader, one answer."
    from fermusic.config import sample_dir
    from fermusic.faces import read_photo
    from fermusic.pipeline import photo_to_music
    grey = np.asarray(Image.open(sample_dir()/'demo'/'astronaut.jpg').convert('L'))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path/'g16.png')
    assert Image.open(tmp_path/'g16.png').mode == 'I;16'
    np.testing.assert_array_equal(read_photo(tmp_path/'g16.png')[..., 0], grey)
    assert len(photo_to_music(tmp_path/'g16.png', top_k=1)) >= 1

# ------------------------------------------------------------------------------------------------ property-based

DIRS = ['a', 'b', 'a/c']                                                   # always there; the rest is drawn
entry = st.tuples(st.sampled_from(DIRS + ['.']), st.sampled_from(['x.png', 'y', 'z.txt', 'l', 'new', 'angry']),
                  st.sampled_from(['image', 'image', 'text', 'link', 'dir']),
                  st.sampled_from(DIRS + ['nowhere', '..', '../..', '../beside.png', 'a/x.png', 'b/new', '.']))
INPUTS = ['a', 'a/c', 'a', 'a/c', 'l', 'a/c/..', 'a/l', 'nope', 'a/x.png']            # repeats weight the draw
OUTPUTS = ['new', 'b/new', 'new', 'b/new', 'b', 'b/l', 'b/c/..', 'b/x.png', '.', 'a/c', 'nope/x', 'l']

plant = st.one_of(st.none(), st.tuples(st.sampled_from(['angry', 'angry/face.png', 'sad', 'sad/c', 'mine.txt', 'angry/c',
                                                        'sad/face.png', 'angry/c/face.png']),
                                       st.sampled_from(['image', 'text', 'link', 'dir']),
                                       st.sampled_from(['..', '../..', '../a', 'nowhere', '/tmp', '../beside.png'])))

def make(p:Path, kind:str, to:str):
    if p.exists() or p.is_symlink() or not p.parent.is_dir() or p.parent.is_symlink(): return
    if kind == 'dir': p.mkdir()
    elif kind == 'image': p.write_bytes(png(len(str(p)) * 7 % 256))
    elif kind == 'text': p.write_text(p.name)
    else: os.symlink(to, p)

@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(entries=st.lists(entry, max_size=8), out=st.sampled_from(OUTPUTS),
       runs=st.lists(st.tuples(st.sampled_from(['sort', 'overwrite', 'undo', 'overwrite', 'dry']), st.sampled_from(INPUTS), plant),
                     min_size=1, max_size=4))
@example(entries=[], out='new', runs=[('sort', 'a', None), ('undo', 'a', ('angry/c', 'text', '..'))])
@example(entries=[], out='new', runs=[('sort', 'a/c', None), ('overwrite', 'a', ('angry/face.png', 'text', '..'))])
@example(entries=[], out='new', runs=[('sort', 'a/c', None), ('overwrite', 'a', ('angry', 'link', '../..'))])
@example(entries=[], out='new', runs=[('sort', 'a', None), ('overwrite', 'a/c', ('angry/c', 'text', '..'))])
def test_path_rules_on_random_trees(entries, out, runs):
    """For random trees of folders, images, other files and links (inside and out), run sorts, dry runs,
    overwrites and undos, with files and links planted in OUTPUT between runs: no file outside OUTPUT is created,
    changed or deleted (so no input file changes), nothing in OUTPUT that no manifest listed is touched, copies
    are whole, and no temporary file stays."""
    with tempfile.TemporaryDirectory() as t:
        u = Path(os.path.realpath(t))/'u'; world = u/'w'
        for d in DIRS: (world/d).mkdir(parents=True, exist_ok=True)
        (world/'a'/'face.png').write_bytes(png(30)); (world/'a'/'c'/'face.png').write_bytes(png(150))
        (u/'beside.png').write_bytes(png(3))
        for parent, name, kind, to in entries: make(world/parent/name, kind, to)
        cwd = os.getcwd(); os.chdir(world)
        try:
            for action, inp, planted in runs:
                o = Path(out)
                region = None if o.is_symlink() else Path(os.path.realpath(o))
                if planted and region and region.is_dir(): make(region/planted[0], planted[1], planted[2])
                before, listed = snapshot(u), set()
                if region and (region/MANIFEST).is_file():
                    try:
                        m = read_manifest(region)      # a listed file replaced by other bytes is not the sort's
                        listed = {region/f for f in m['files'] if _ours(region, f, m)}
                    except DataError: pass
                try:
                    if action == 'undo': res = undo_sort(out)
                    else: res = sort_images(inp, out, model=fake, dry_run=action == 'dry', overwrite=action == 'overwrite')
                except (UnsafeOutputError, FileExistsError, FileNotFoundError, NotADirectoryError, DataError): res = None
                after = snapshot(u)
                for p in before.keys() | after.keys():
                    inside = region is not None and (p == region or region in p.parents)
                    if not inside or action == 'dry' or res is None: assert before.get(p) == after.get(p), p
                    elif p in before and p not in listed and p.name != MANIFEST and before[p][0] != 'dir':
                        assert before[p] == after.get(p), p                 # OUTPUT's own files: untouched
                    assert not p.name.endswith('.tmp'), p
                if res is not None and action in ('sort', 'overwrite'):
                    real_in = Path(os.path.realpath(inp))
                    for r in res[res.status == 'copied'].itertuples():
                        assert (region/r.copied_to).read_bytes() == (real_in/r.file).read_bytes()
                    assert read_manifest(region)['state'] == 'complete'
        finally: os.chdir(cwd)

# ------------------------------------------------------------------------------------------------ fault injection

KILL = FAKE + '''
import os, sys
from pathlib import Path
import fermusic.sort as S
n, calls, real = int(sys.argv[3]), [0], S.atomic_write
def dying(path, data, overwrite=True):
    "The n-th atomic write stops half-way through its temporary file and the process dies (no cleanup runs)."
    calls[0] += 1
    if calls[0] < n: return real(path, data, overwrite)
    def half(tmp):
        if callable(data): data(tmp); b = Path(tmp).read_bytes()
        else: b = data
        Path(tmp).write_bytes(b[:len(b) // 2]); os._exit(137)
    return real(path, half, overwrite)
S.atomic_write = dying
S.sort_images(sys.argv[1], sys.argv[2], model=FakeModel(), overwrite=len(sys.argv) > 4)
'''

def kill_at(src, out, n, overwrite=False):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, '-c', KILL, str(src), str(out), str(n)] + (['overwrite'] if overwrite else []),
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 137, r.stderr[-2000:]

def files_of(p:Path) -> dict:
    return {f.relative_to(p).as_posix(): f.read_bytes() for f in p.rglob('*') if f.is_file()}

# writes: 1 the manifest, 2-9 the eight copies, 10 the CSV, 11 the finished manifest
@pytest.mark.parametrize('n,then', [(1, 'rerun'), (4, 'rerun'), (10, 'rerun'), (11, 'rerun'), (4, 'undo'), (6, 'overwrite')])
def test_killed_sort_finishes_or_rolls_back(folder, tmp_path, n, then):
    ref = tmp_path/'ref'; sort_images(folder, ref, model=fake); want = files_of(ref)
    before, out = files_of(folder), tmp_path/'out'
    if then == 'overwrite':
        (folder/'f1.png').rename(folder/'moved.png'); sort_images(folder, out, model=fake)
        (folder/'moved.png').rename(folder/'f1.png'); before = files_of(folder)
    kill_at(folder, out, n, overwrite=then == 'overwrite')
    assert files_of(folder) == before                                       # the input is untouched
    if then == 'undo':
        undo_sort(out)
        assert not out.exists()
    else:
        sort_images(folder, out, model=fake, overwrite=then == 'overwrite')
        got = files_of(out)
        m, mr = json.loads(got.pop(MANIFEST)), json.loads(want[MANIFEST])
        assert got == {k: v for k, v in want.items() if k != MANIFEST}     # every copy whole, nothing extra
        assert (m['files'], m['dirs'], m['state']) == (mr['files'], mr['dirs'], 'complete')
    assert files_of(folder) == before

def test_sort_needs_no_study_module():
    "The command sorts without importing the hyperparameter study (fermusic.hparams and KerasTuner)."
    code = ('import sys, fermusic.cli, fermusic.sort, fermusic.pipeline; '
            'assert not {"keras_tuner", "fermusic.hparams"} & set(sys.modules), sorted(sys.modules)')
    r = subprocess.run([sys.executable, '-c', code], env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1500:]


def test_a_copy_replaced_by_the_user_is_never_removed(folder, tmp_path):
    "The manifest keeps each copy's SHA-256: a file put in a copy's place (same name, other bytes) is not the sort's."
    out = tmp_path/'out'
    res = sort_images(folder, out, model=fake)
    rel = res[res.status == 'copied'].copied_to.iloc[0]
    (out/rel).write_bytes(b'my own drawing, saved over the copy')
    with pytest.raises(FileExistsError, match='changed since'): sort_images(folder, out, model=fake, overwrite=True)
    assert (out/rel).read_bytes() == b'my own drawing, saved over the copy'
    r = undo_sort(out)
    assert (out/rel).read_bytes() == b'my own drawing, saved over the copy' and not r['output_removed']
    assert r['left'] == [rel.split('/')[0]]
