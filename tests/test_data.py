"Bad input and edge cases of `fermusic.data` (the lesson nbs/00_data.ipynb covers the normal paths)."
import gzip, io, lzma, os, tarfile, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
import fermusic.data as D
from fermusic.data import (DATA_ENV, EMOTIONS, EMOTIONS_EXT, DataError, DatasetNotFoundError, check_dataset,
                           export_csv, export_folders, find_dataset, group_kfold, load_ckplus, load_fer2013,
                           load_fer2013_folder, load_ferplus_labels, load_image_folder, load_rafdb, read_fer2013_csv,
                           read_image, read_rafdb_labels, train_val_split)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT/'data'/'fer2013_sample'
FULL = Path(os.environ.get(DATA_ENV) or ROOT.parent/'shared'/'data')
needs_full = lambda rel: pytest.mark.skipif(not (FULL/rel).exists(), reason=f'full data absent: {FULL/rel}')

NOT_IMAGE = 'not an image: no format Pillow reads; convert it to PNG or JPEG if it is one'

@pytest.fixture(autouse=True)
def no_env(monkeypatch): monkeypatch.delenv(DATA_ENV, raising=False)

@pytest.fixture(scope='module')
def sample():
    with warnings.catch_warnings(): warnings.simplefilter('error'); return load_fer2013_folder(SAMPLE)

def fer_csv(path, faces, usages=None, fmt=None):
    "Write `faces` as a FER2013 csv; `fmt(i, line)` may alter line i."
    usages = usages or ['Training'] * faces.n
    lines = ['emotion,pixels,Usage'] + [f"{y},{' '.join(map(str, x.ravel()))},{u}" for x, y, u in zip(faces.x, faces.y, usages)]
    if fmt: lines = [lines[0]] + [fmt(i, l) for i, l in enumerate(lines[1:])]
    Path(path).write_text('\n'.join(lines) + '\n')
    return Path(path)

def png(arr, mode=None):
    buf = io.BytesIO(); im = Image.fromarray(arr); (im.convert(mode) if mode else im).save(buf, 'PNG'); return buf.getvalue()

def fer_folder(root, sample, n=2, splits=('train', 'test')):
    "A FER2013 folder layout with `n` sample images per class and split."
    for s in splits:
        for c, name in enumerate(EMOTIONS):
            d = root/s/name; d.mkdir(parents=True)
            for i in np.flatnonzero(sample.y == c)[:n]:
                (d/f"{'Training' if s == 'train' else 'PublicTest'}_{i}.png").write_bytes(png(sample.x[i]))
    return root

# --- the shipped sample and its provenance ---------------------------------------------------------------------------

def test_sample_matches_manifest(sample):
    man = pd.read_csv(SAMPLE/'manifest.csv')
    assert len(man) == sample.n == 910 and set(man.pixel_source) == {'exact_ferplus_png'}
    assert sorted(man.file) == sorted(sample.files.tolist())
    assert (man.set_index('file').loc[sample.files, 'emotion'].to_numpy() == sample.y).all()
    assert man.groupby('Usage').size().to_dict() == {'PrivateTest': 105, 'PublicTest': 105, 'Training': 700}
    assert len({x.tobytes() for x in sample.x}) == sample.n  # no two identical faces, so no train/test leakage
    assert sum(f.stat().st_size for f in SAMPLE.rglob('*')) < 3e6

def test_quick_uses_sample_full_uses_env(tmp_path, monkeypatch, sample):
    "Without a path the profile decides: quick reads the shipped sample even where $FERMUSIC_DATA is set, full reads $FERMUSIC_DATA."
    assert find_dataset('fer2013', profile='quick') == SAMPLE
    (tmp_path/'fer2013').mkdir()
    fer_csv(tmp_path/'fer2013'/'fer2013.csv', sample[:5])
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert find_dataset('fer2013', profile='quick') == SAMPLE
    assert find_dataset('fer2013', profile='full') == tmp_path/'fer2013'/'fer2013.csv'
    monkeypatch.setenv('FERMUSIC_PROFILE', 'full')
    assert load_fer2013().n == 5

def test_full_profile_never_falls_back_to_sample(tmp_path, monkeypatch):
    "A full-profile run without the full data fails loudly instead of training on the sample."
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match='not used in the full profile'): find_dataset('fer2013', profile='full')
    monkeypatch.delenv(DATA_ENV)
    with pytest.raises(DatasetNotFoundError, match='not set'): find_dataset('fer2013', profile='full')

def test_not_found_message_names_places_and_sources(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as e: find_dataset('rafdb')
    msg = str(e.value)
    for s in ('rafdb/basic', 'rafdb/class', 'whdeng.cn/raf/model1.html', 'no shipped sample', str(tmp_path)): assert s in msg
    with pytest.raises(FileNotFoundError, match='Pittsburgh'): load_ckplus()
    with pytest.raises(DatasetNotFoundError, match='the path you gave'): load_fer2013(tmp_path/'nope.csv')
    monkeypatch.delenv(DATA_ENV)
    with pytest.raises(DatasetNotFoundError, match='challenges-in-representation-learning'): find_dataset('fer2013', tmp_path/'x')
    with pytest.raises(ValueError, match='Unknown dataset'): find_dataset('affectnet')

# --- FER2013 csv: every problem is an error naming file, row and line --------------------------------------------------

@pytest.mark.parametrize('fmt, match', [
    (lambda i, l: l.replace(' ', ' 1 ', 1) if i == 2 else l, r'row 3 \(line 4\): 2305 pixel values, expected 2304'),
    (lambda i, l: l.rsplit(' ', 1)[0] + ',Training' if i == 1 else l, r'row 2 \(line 3\): 2303 pixel values'),
    (lambda i, l: l.replace(' ', '  ', 1) if i == 1 else l, None),  # a doubled space is still 2304 values
    (lambda i, l: l.replace(' ', ' abc ', 1) if i == 0 else l, r"row 1 \(line 2\): pixel value 'abc' is not an integer"),
    (lambda i, l: l.replace(' ', ' -3 ', 1) if i == 0 else l, r"pixel value '-3' is not an integer"),
    (lambda i, l: l.replace(' ', ' 12.5 ', 1) if i == 0 else l, r"pixel value '12.5'"),
    (lambda i, l: '7' + l[1:] if i == 1 else l, r"row 2 \(line 3\): emotion '7' is not a FER2013 label"),
    (lambda i, l: 'happy' + l[1:] if i == 1 else l, r"emotion 'happy'"),
    (lambda i, l: l.rsplit(',', 1)[0] + ',Validation' if i == 2 else l, r"row 3 \(line 4\): Usage 'Validation' is not one of"),
    (lambda i, l: l.rsplit(',', 1)[0] + ',' if i == 2 else l, r"Usage ''"),
])
def test_csv_bad_rows(tmp_path, sample, fmt, match):
    p = fer_csv(tmp_path/'bad.csv', sample[:5], fmt=fmt)
    if match is None: assert (read_fer2013_csv(p).x == sample.x[:5]).all(); return
    with pytest.raises(DataError, match=match) as e: read_fer2013_csv(p)
    assert str(p) in str(e.value)

def test_csv_value_out_of_range(tmp_path, sample):
    p = tmp_path/'bad.csv'
    x = sample.x[:3].reshape(3, -1).astype(int); x[1, 5] = 300
    p.write_text('emotion,pixels,Usage\n' + ''.join(f"0,{' '.join(map(str, r))},Training\n" for r in x))
    with pytest.raises(DataError, match=r'row 2 \(line 3\): pixel value 300 is outside 0..255'): read_fer2013_csv(p)

def test_csv_many_bad_rows_are_counted(tmp_path, sample):
    p = fer_csv(tmp_path/'bad.csv', sample[:9], fmt=lambda i, l: l.rsplit(' ', 1)[0] + ',Training')
    with pytest.raises(DataError, match=r'9 bad row\(s\)[\s\S]*and 4 more'): read_fer2013_csv(p)

def test_csv_empty_and_truncated(tmp_path, sample):
    (tmp_path/'empty.csv').write_bytes(b'')
    with pytest.raises(DataError, match='empty'): read_fer2013_csv(tmp_path/'empty.csv')
    with gzip.open(tmp_path/'empty.csv.gz', 'wb'): pass
    with pytest.raises(DataError, match='empty once decompressed'): read_fer2013_csv(tmp_path/'empty.csv.gz')
    (tmp_path/'header.csv').write_text('emotion,pixels,Usage\n')
    with pytest.raises(DataError, match='no data rows'): read_fer2013_csv(tmp_path/'header.csv')
    full = fer_csv(tmp_path/'ok.csv', sample[:20]).read_bytes()
    (tmp_path/'cut.csv.xz').write_bytes(lzma.compress(full)[:3000])
    with pytest.raises(DataError, match='truncated'): read_fer2013_csv(tmp_path/'cut.csv.xz')
    (tmp_path/'cut.csv').write_bytes(full[:len(full) // 2])  # cut mid-row: that row is short and has no Usage
    with pytest.raises(DataError, match='row'): read_fer2013_csv(tmp_path/'cut.csv')
    (tmp_path/'binary.csv').write_bytes(png(sample.x[0]))
    with pytest.raises(DataError): read_fer2013_csv(tmp_path/'binary.csv')

def test_csv_columns(tmp_path, sample):
    p = fer_csv(tmp_path/'a.csv', sample[:2])
    p.write_text(p.read_text().replace('emotion,pixels,Usage', 'label,pixels,Usage'))
    with pytest.raises(DataError, match='missing column'): read_fer2013_csv(p)
    text = ''.join(l.rsplit(',', 1)[0] + '\n' for l in fer_csv(p, sample[:2]).read_text().splitlines())
    p.write_text(text)  # Kaggle's train.csv: emotion,pixels only
    with pytest.raises(DataError, match="usage='Training'"): read_fer2013_csv(p)
    assert read_fer2013_csv(p, usage='Training').n == 2
    p.write_text(' emotion, pixels, Usage\n' + ''.join(l + ',Training\n' for l in text.splitlines()[1:]))  # icml_face_data.csv style
    assert read_fer2013_csv(p).n == 2

def test_csv_missing_split_and_layout_conversions(tmp_path, sample):
    p = tmp_path/'a.csv.gz'
    fer_csv(tmp_path/'a.csv', sample[:4], ['Training', 'Training', 'PublicTest', 'PublicTest'])
    p.write_bytes(gzip.compress((tmp_path/'a.csv').read_bytes()))
    with pytest.raises(DatasetNotFoundError, match="split 'PrivateTest' is missing"): read_fer2013_csv(p, 'PrivateTest')
    f = load_fer2013(p, 'test', color_mode='rgb', size=(32, 40))
    assert f.x.shape == (2, 32, 40, 3) and f.x.dtype == np.uint8 and (f.x[..., 0] == f.x[..., 2]).all()
    assert f.rows.tolist() == [2, 3] and f.y.dtype == np.int64
    with pytest.raises(ValueError, match='Unknown FER2013 split'): load_fer2013(p, 'valid')

@pytest.mark.full
@needs_full('fer2013/fer2013.csv.xz')
def test_full_csv_is_fast_and_official():
    t = time.time(); f = read_fer2013_csv(FULL/'fer2013/fer2013.csv.xz'); dt = time.time() - t
    assert f.x.shape == (35887, 48, 48) and dt < 60, dt
    table = D._counts_table(f, 'fer2013', list(D.FER2013_USAGES), f.split)  # what check_dataset shows
    assert table.loc['total'].tolist() == [28709, 28709, 3589, 3589, 3589, 3589]
    for s in D.FER2013_USAGES: assert (table[s] == table[f'{s} official']).all()
    first = pd.read_csv(FULL/'fer2013/fer2013.csv.xz', nrows=2)
    assert (f.x[1].ravel() == np.array(first.pixels[1].split(), int)).all() and f.y[1] == first.emotion[1]

# --- image folders: problems are skipped and counted, or raised with strict=True ----------------------------------------

def test_folder_bad_files_skipped_and_counted(tmp_path, sample):
    root = fer_folder(tmp_path/'fer', sample)
    d = root/'train'/'happy'
    good = png(sample.x[0])
    (d/'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n not really a png')
    (d/'truncated.png').write_bytes(good[:len(good) // 2])
    (d/'empty.jpg').write_bytes(b'')
    (d/'notes.txt').write_text('hello')
    (root/'train'/'loose.png').write_bytes(good)
    with pytest.warns(UserWarning, match=r'skipped 5 file\(s\) \(not in a class folder: 1, unreadable: 3, not an image: 1\)'):
        f = load_fer2013_folder(root)
    assert f.n == 28 and len(f.skipped) == 5
    assert dict(f.skip_counts) == {'unreadable': 3, 'not an image': 1, 'not in a class folder': 1}
    assert ('train/happy/notes.txt', NOT_IMAGE) in f.skipped
    with pytest.raises(DataError, match='truncated.png|corrupt.png|empty.jpg|loose.png|notes.txt'): load_fer2013_folder(root, strict=True)
    t = check_dataset(root, verbose=False)
    assert t.attrs['skipped'] == {'unreadable': 3, 'not an image': 1, 'not in a class folder': 1} and len(t.attrs['skipped_files']) == 5

def test_folder_mixed_modes_are_converted(tmp_path, sample):
    root = fer_folder(tmp_path/'fer', sample, n=1)
    d = root/'train'/'sad'
    for mode in ('RGB', 'RGBA', 'LA', 'P', '1'): (d/f'Training_{mode}.png').write_bytes(png(sample.x[1], mode))
    Image.fromarray((sample.x[1].astype(np.uint16) * 257)).save(d/'Training_I16.png')
    Image.fromarray(sample.x[1]).convert('RGB').save(d/'Training_rgb.jpg', quality=100)
    f = load_fer2013_folder(root, 'train')
    assert f.x.shape == (14, 48, 48) and not f.skipped
    grey = {n: f.x[list(f.files).index(f'train/sad/Training_{n}')] for n in ('RGB.png', 'RGBA.png', 'LA.png', 'P.png', 'I16.png')}
    for a in grey.values(): assert np.abs(a.astype(int) - sample.x[1]).max() <= 1
    rgb = load_fer2013_folder(root, 'train', color_mode='rgb')
    assert rgb.x.shape == (14, 48, 48, 3)

def test_folder_missing_split_and_unknown_class(tmp_path, sample):
    root = fer_folder(tmp_path/'fer', sample, splits=('train',))
    with pytest.raises(DatasetNotFoundError, match=r"split 'test' is missing \(no test/ folder\)"): load_fer2013_folder(root)
    assert load_fer2013_folder(root, 'train').n == 14
    t = check_dataset(root, verbose=False)
    assert t.attrs['problems'] == ["split 'test' is missing (no test/ folder)"] and 'test' not in t.columns
    (root/'train'/'bored').mkdir()
    with pytest.raises(DataError, match="unknown class folder 'bored'"): load_fer2013_folder(root, 'train')
    (root/'train'/'bored').rmdir(); (root/'train'/'contempt').mkdir()
    with pytest.raises(DataError, match="unknown class folder 'contempt'"): load_fer2013_folder(root, 'train')

def test_folder_test_halves(tmp_path, sample):
    root = fer_folder(tmp_path/'fer', sample)
    assert load_fer2013_folder(root, 'PublicTest').n == 14
    for f in (root/'test').rglob('*.png'): f.rename(f.with_name(f.name.replace('PublicTest_', '')))
    with pytest.raises(DataError, match="no PublicTest_/PrivateTest_ prefix"): load_fer2013_folder(root, 'PublicTest')
    assert set(load_fer2013_folder(root, 'test').split) == {'test'}

def test_sizes_must_agree_unless_resized(tmp_path, sample):
    d = tmp_path/'imgs'; d.mkdir()
    (d/'a.png').write_bytes(png(sample.x[0]))
    Image.fromarray(sample.x[1]).resize((64, 64)).save(d/'b.png')
    with pytest.raises(DataError, match=r'differ in size[\s\S]*size='): load_image_folder(d)
    f = load_image_folder(d, size=(40, 30), color_mode='grayscale', add_channel=True)
    assert f.x.shape == (2, 40, 30, 1) and f.y is None and f.files.tolist() == ['a.png', 'b.png']

def test_image_folder_errors_and_archive(tmp_path, sample):
    d = tmp_path/'imgs'; (d/'.hidden').mkdir(parents=True)
    (d/'x.txt').write_text('no')
    (d/'.hidden'/'a.png').write_bytes(png(sample.x[0]))
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r'no readable images \(2 files skipped\)'): load_image_folder(d)
    with pytest.warns(UserWarning, match='skipped 2 file'): f = load_image_folder(d, allow_empty=True, size=8)
    assert f.n == 0 and f.skipped == [('.hidden/', 'hidden folder: not read; rename it to include it'), ('x.txt', NOT_IMAGE)]
    with pytest.raises(DatasetNotFoundError): load_image_folder(tmp_path/'nope')
    (d/'b.png').write_bytes(png(sample.x[0]))
    with tarfile.open(tmp_path/'imgs.tar.gz', 'w:gz') as tf: tf.add(d/'b.png', arcname='faces/b.png')
    f = load_image_folder(tmp_path/'imgs.tar.gz')
    assert f.files.tolist() == ['faces/b.png'] and f.x.shape == (1, 48, 48, 3)

def test_bad_arguments_raise(tmp_path, sample):
    with pytest.raises(ValueError, match='size must be'): load_fer2013_folder(SAMPLE, 'train', size=(48,))
    with pytest.raises(ValueError, match='color_mode must be'): load_fer2013_folder(SAMPLE, 'train', color_mode='RGB')
    with pytest.raises(ValueError, match='Unknown kind'): check_dataset(SAMPLE, kind='affectnet', verbose=False)

def test_read_image_args():
    with pytest.raises(ValueError, match='size must be'): read_image(png(np.zeros((4, 4), np.uint8)), size=(1, 2, 3))
    assert read_image(io.BytesIO(png(np.zeros((4, 6), np.uint8))), size=8).shape == (8, 8)

# --- conversions are atomic -------------------------------------------------------------------------------------------

def test_exports_are_atomic(tmp_path, sample, monkeypatch):
    usages = (['Training', 'PublicTest', 'PrivateTest'] * 20)[:sample[::30].n]
    csv = fer_csv(tmp_path/'s.csv', sample[::30], usages)
    n = {'k': 0}
    real_save = Image.Image.save
    def flaky(self, *a, **k):
        n['k'] += 1
        if n['k'] == 10: raise OSError('disk full')
        return real_save(self, *a, **k)
    monkeypatch.setattr(Image.Image, 'save', flaky)
    with pytest.raises(OSError, match='disk full'): export_folders(csv, tmp_path/'out')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['s.csv']  # nothing half-written
    monkeypatch.setattr(Image.Image, 'save', real_save)
    table = export_folders(csv, tmp_path/'out')
    assert table.loc['total', 'train'] + table.loc['total', 'test'] == sample[::30].n
    assert oct((tmp_path/'out').stat().st_mode & 0o777) != oct(0o700)
    files = sorted(p.name for p in (tmp_path/'out').rglob('*.png'))
    assert 'Training_0.png' in files and 'PublicTest_1.png' in files and 'PrivateTest_2.png' in files
    with pytest.raises(FileExistsError): export_folders(csv, tmp_path/'out')
    export_folders(csv, tmp_path/'out', overwrite=True)
    monkeypatch.setattr(pd.DataFrame, 'to_csv', lambda *a, **k: (_ for _ in ()).throw(OSError('disk full')))
    with pytest.raises(OSError): export_csv(tmp_path/'out', tmp_path/'back.csv')
    assert not any(p.name.startswith('.') for p in tmp_path.iterdir()) and not (tmp_path/'back.csv').exists()
    monkeypatch.undo()
    export_csv(tmp_path/'out', tmp_path/'back.csv.xz')
    back = read_fer2013_csv(tmp_path/'back.csv.xz')
    orig = read_fer2013_csv(csv)
    key = lambda f: sorted(zip(f.split.tolist(), f.y.tolist(), [x.tobytes() for x in f.x]))
    assert key(back) == key(orig)

def test_export_csv_needs_usage_for_unprefixed_test(tmp_path, sample):
    root = fer_folder(tmp_path/'fer', sample, n=1)
    for f in (root/'test').rglob('*.png'): f.rename(f.with_name(f.name.replace('PublicTest_', 'img')))
    with pytest.raises(DataError, match="test_usage='PublicTest'"): export_csv(root, tmp_path/'a.csv')
    assert not (tmp_path/'a.csv').exists()
    export_csv(root, tmp_path/'a.csv', test_usage='PrivateTest')
    assert Counter_(read_fer2013_csv(tmp_path/'a.csv').split) == {'Training': 7, 'PrivateTest': 7}
    Image.fromarray(sample.x[0]).resize((64, 64)).save(root/'train'/'happy'/'big.png')
    with pytest.raises(DataError, match='differ in size'): export_csv(root, tmp_path/'b.csv', test_usage='PublicTest')

def Counter_(a): return dict(pd.Series(a).value_counts())

# --- CK+ ----------------------------------------------------------------------------------------------------------------

def ck_tree(root, sample):
    for j, c in enumerate(('anger', 'contempt', 'sadness')):
        d = root/'CK+48'/c; d.mkdir(parents=True)
        for s in (5, 10, 22):
            for fr in (1, 2, 3): (d/f'S{s:03d}_{j+1:03d}_{fr:08d}.png').write_bytes(png(sample.x[j * 9 + s % 7 + fr]))
    return root/'CK+48'

def test_ckplus_folder_archive_and_bad_files(tmp_path, sample):
    d = ck_tree(tmp_path/'ck', sample)
    (d/'anger'/'README.txt').write_text('x')
    (d/'anger'/'face.png').write_bytes(png(sample.x[0]))
    with tarfile.open(tmp_path/'CK+48.tar.gz', 'w:gz') as tf: tf.add(d, arcname='CK+48')
    with pytest.warns(UserWarning, match='skipped 2'): f = load_ckplus(tmp_path/'CK+48.tar.gz')
    assert f.n == 27 and f.classes == EMOTIONS_EXT and set(f.y) == {0, 4, 7}
    assert f.subjects[:3].tolist() == ['S005'] * 3 and f.sequences[0] == 1
    assert dict(f.skip_counts) == {'not an image': 1, 'name is not S<subject>_<sequence>_<frame>': 1}
    with pytest.raises(DataError, match='face.png'): load_ckplus(d, strict=True)
    with pytest.warns(UserWarning): g = load_ckplus(tmp_path/'ck')  # the folder above CK+48/ works too
    assert (g.x == f.x).all() and (g.subjects == f.subjects).all()
    (tmp_path/'cut.tar.gz').write_bytes((tmp_path/'CK+48.tar.gz').read_bytes()[:2000])
    with pytest.raises(DataError, match='not a readable tar archive'): load_ckplus(tmp_path/'cut.tar.gz')
    (d/'bored').mkdir()
    with pytest.raises(DataError, match="unknown class folder 'bored'"): load_ckplus(d)

@pytest.mark.full
@needs_full('ckplus/CK+48.tar.gz')
def test_ckplus_real_archive():
    f = load_ckplus(FULL/'ckplus/CK+48.tar.gz')
    assert f.n == 981 and f.x.shape[1:] == (48, 48) and not f.skipped
    assert f.counts()[['angry', 'contempt', 'disgust', 'fear', 'happy', 'sad', 'surprise']].tolist() == [135, 54, 177, 75, 207, 84, 249]
    assert len(set(f.subjects)) == 118 and len(set(zip(f.subjects, f.sequences))) == 327
    for tr, va in group_kfold(f.y, f.subjects, n_splits=10): assert not set(f.subjects[tr]) & set(f.subjects[va])

# --- RAF-DB -------------------------------------------------------------------------------------------------------------

def raf_basic(root, sample, missing=()):
    (root/'EmoLabel').mkdir(parents=True); (root/'Image'/'aligned').mkdir(parents=True)
    lines = []
    for k, raf in enumerate([1, 2, 3, 4, 5, 6, 7, 4], start=1):
        for s in ('train', 'test'):
            name = f'{s}_{k:05d}'
            lines.append(f'{name}.jpg {raf}')
            if name not in missing:
                Image.fromarray(sample.x[k]).convert('RGB').resize((100, 100)).save(root/'Image'/'aligned'/f'{name}_aligned.jpg')
    (root/D.RAFDB_LABEL_FILE).write_text('\n'.join(lines) + '\n')
    return root

def test_rafdb_basic(tmp_path, sample):
    root = raf_basic(tmp_path/'basic', sample, missing=('test_00003',))
    with pytest.warns(UserWarning, match='missing: 1'): f = load_rafdb(root, color_mode='grayscale', size=48)
    assert f.n == 15 and f.x.shape == (15, 48, 48) and [(n, r.split(':')[0]) for n, r in f.skipped] == [('Image/aligned/test_00003_aligned.jpg', 'missing')]
    assert 'restore the file' in f.skipped[0][1]
    with pytest.raises(DataError, match='test_00003_aligned.jpg: missing'): load_rafdb(root, strict=True)
    assert load_rafdb(root, 'train').y.tolist() == [5, 2, 1, 3, 4, 0, 6, 3]
    with pytest.raises(ValueError, match='Unknown RAF-DB split'): load_rafdb(root, 'val')
    (root/D.RAFDB_LABEL_FILE).write_text('train_00001.jpg 5\ntrain_00002.jpg 9\nhello\n\ntest_0001.jpg 1\n')
    with pytest.raises(DataError, match=r"2 bad line\(s\)[\s\S]*line 2: 'train_00002.jpg 9'[\s\S]*line 3: 'hello'"): read_rafdb_labels(root)
    (root/D.RAFDB_LABEL_FILE).write_text('')
    with pytest.raises(DataError, match='empty'): read_rafdb_labels(root)

def test_rafdb_labels_without_images(tmp_path, monkeypatch):
    (tmp_path/'rafdb'/'EmoLabel').mkdir(parents=True)
    (tmp_path/'rafdb'/D.RAFDB_LABEL_FILE).write_text('train_00001.jpg 5\n')
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r'found the label file but no images in Image/aligned/'): load_rafdb()
    (tmp_path/'rafdb'/D.RAFDB_LABEL_FILE).rename(tmp_path/'rafdb'/'list_patition_label.txt')  # the file lying loose in rafdb/
    with pytest.raises(DatasetNotFoundError, match=r'found the label file but no images'): load_rafdb()

def test_rafdb_class_folders(tmp_path, sample):
    for s in ('train', 'test'):
        for raf in range(1, 8):
            d = tmp_path/'class'/s/str(raf); d.mkdir(parents=True)
            Image.fromarray(sample.x[raf]).convert('RGB').save(d/f'{s}_{raf:05d}_aligned.jpg')
    f = load_rafdb(tmp_path/'class', size=128)
    assert f.x.shape == (14, 128, 128, 3) and sorted(f.y[f.split == 'test'].tolist()) == list(range(7))
    assert f.y[f.files.tolist().index('train/1/train_00001_aligned.jpg')] == EMOTIONS.index('surprise')
    assert D.detect_dataset(tmp_path/'class') == 'rafdb'
    import shutil; shutil.rmtree(tmp_path/'class'/'test')
    with pytest.raises(DatasetNotFoundError, match="split 'test' is missing"): load_rafdb(tmp_path/'class')
    assert load_rafdb(tmp_path/'class', 'train').n == 7

@pytest.mark.full
@needs_full('rafdb/list_patition_label.txt')
def test_rafdb_real_label_file():
    df = read_rafdb_labels(FULL/'rafdb/list_patition_label.txt')
    assert len(df) == 15339 and df.split.value_counts().to_dict() == {'train': 12271, 'test': 3068}
    off = D.OFFICIAL_COUNTS['rafdb']
    for s in ('train', 'test'):
        assert np.bincount(df.label[df.split == s], minlength=7).tolist() == list(off[s].values())
    t = check_dataset(FULL/'rafdb', verbose=False)  # labels without images: counted, and the missing images reported
    assert t.attrs['layout'] == 'labels' and t.attrs['matches_official'] and 'Image/aligned' in t.attrs['problems'][0]
    assert check_dataset(FULL/'rafdb/list_patition_label.txt', verbose=False).loc['total', 'train'] == 12271

# --- FER+ ---------------------------------------------------------------------------------------------------------------

def test_ferplus_bad_votes(tmp_path):
    p = tmp_path/'f.csv'
    p.write_text('Usage,Image name,' + ','.join(D.FERPLUS_COLUMNS) + '\nTraining,a.png,1,2,3,x,0,0,0,0,0,0\n')
    with pytest.raises(DataError, match=r'row 1 \(line 2\)'): load_ferplus_labels(p)
    p.write_text('Usage,Image name,neutral\nTraining,a.png,1\n')
    with pytest.raises(DataError, match='missing column'): load_ferplus_labels(p)
    with pytest.raises(DatasetNotFoundError, match='microsoft/FERPlus'): load_ferplus_labels()

@pytest.mark.full
@needs_full('ferplus/fer2013new.csv.gz')
def test_ferplus_real_file():
    y = load_ferplus_labels(FULL/'ferplus/fer2013new.csv.gz')
    assert len(y) == 35887 and set(np.unique(y)) <= set(range(-1, 8))
    assert 30000 < (y >= 0).sum() < 35887  # most faces have a valid majority; not-a-face and ties get -1

# --- splits -------------------------------------------------------------------------------------------------------------

def test_splits(sample):
    xt, xv, yt, yv = train_val_split(sample.x, sample.y, 0.1, seed=1)
    assert len(xv) == 91 and abs(np.bincount(yv, minlength=7) - 13).max() <= 1
    again = train_val_split(sample.x, sample.y, 0.1, seed=1)
    assert (again[3] == yv).all()
    groups = np.repeat(np.arange(91), 10)
    folds = group_kfold(sample.y, groups, n_splits=5)
    assert len(folds) == 5 and all(not set(groups[a]) & set(groups[b]) for a, b in folds)
    with pytest.raises(ValueError, match='groups cannot fill'): group_kfold(sample.y[:20], groups[:20], n_splits=5)

def test_faces_container(sample):
    x, y = sample
    assert x is sample.x and y is sample.y
    sub = sample[sample.y == 3]
    assert sub.n == 130 and set(sub.y) == {3} and sub.files.shape == (130,) and sub.rows is None
    assert sample[0].x.shape == (1, 48, 48)
    assert 'fer2013 folders: 910 images 48x48 grayscale' in repr(sample)
