"Bad input and edge cases of `fermusic.lyrics` (the lesson nbs/11_lyrics.ipynb covers the normal paths)."
import os
from pathlib import Path
import numpy as np, pandas as pd, pytest
from sklearn.exceptions import NotFittedError
from fermusic.data import DATA_ENV, EMOTIONS, DataError, DatasetNotFoundError
from fermusic.lyrics import (FEATURES, SCORES, HierarchicalSVC, LexiconFeatures, check_emotion, cv_evaluate, find_lyrics,
                             lexicon_hits, load_labelled_lyrics, load_lyric_model, lyric_features, lyric_model,
                             predict_emotions, read_text, tokenize)

ROOT = Path(__file__).resolve().parents[1]
FULL = Path(os.environ.get(DATA_ENV) or ROOT.parent/'shared'/'data')
LYRICS = FULL/'lyrics'/'kassia_zh_final.csv.xz'

@pytest.fixture(autouse=True)
def no_env(monkeypatch): monkeypatch.delenv(DATA_ENV, raising=False)

@pytest.fixture(scope='module')
def model(): return load_lyric_model()


@pytest.mark.parametrize('name', ['', 'melancholy', 'contempt', None, 3])
def test_unknown_emotion_lists_valid_names(name):
    with pytest.raises(ValueError, match='valid names: angry, disgust, fear, happy, sad, surprise, neutral'): check_emotion(name)

@pytest.mark.parametrize('name, want', [('HAPPY', 'happy'), (' sadness ', 'sad'), ('anger', 'angry'), ('surprised', 'surprise')])
def test_emotion_synonyms(name, want): assert check_emotion(name) == want

@pytest.mark.parametrize('text', [None, float('nan'), '', '   ', '，。！', '12345', 'hello world'])
def test_no_lexicon_hit_gives_zero_scores(text):
    assert lexicon_hits(text) == 0
    f = lyric_features(text)
    assert f.shape == (len(FEATURES),) and not f[:len(SCORES)].any() and np.isfinite(f).all()

def test_bytes_are_refused_with_a_hint():
    with pytest.raises(TypeError, match='decode the file first'): lyric_features('开心'.encode('utf-8'))

def test_traditional_and_simplified_give_the_same_features():
    assert np.allclose(lyric_features('我非常開心，不想離開'), lyric_features('我非常开心，不想离开'))
    assert tokenize('開心') == ['开心']

def test_no_hit_fallback_is_neutral(model):
    p = predict_emotions(['今天下雨', '', None, '我很开心我很开心我很开心'], model)
    assert p.emotion[:3].tolist() == ['neutral'] * 3 and p.fallback[:3].all() and not p.fallback[3]
    assert p.emotion.isin(EMOTIONS).all()
    p = predict_emotions(['今天下雨'], model, no_hit='sad')
    assert p.emotion.tolist() == ['sad']
    with pytest.raises(ValueError, match='valid names'): predict_emotions(['今天下雨'], model, no_hit='bored')

def test_model_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='full profile'): load_lyric_model(tmp_path/'x.joblib')
    (tmp_path/'x.joblib').write_bytes(b'\x00' * 10)
    with pytest.raises(ValueError, match='not a loadable lyric model'): load_lyric_model(tmp_path/'x.joblib')

def test_shipped_model_is_small_and_takes_raw_text(model):
    assert (ROOT/'data'/'models'/'lyrics_hsvc.joblib').stat().st_size < 2e6
    assert sorted(model.classes_) == sorted(EMOTIONS)
    assert model.predict(['寻寻觅觅，冷冷清清，凄凄惨惨戚戚。'])[0] in EMOTIONS


@pytest.mark.parametrize('content, enc, match', [
    ('id,text,label\n1,我很开心,happy\n', 'gbk', 'is not valid utf-8 text'),
    ('id,text,label\n1,我很開心,happy\n', 'big5', "encoding='gb18030'"),
    ('', 'utf-8', 'the file is empty'),
    ('id,lyric,emotion\n1,我很开心,happy\n', 'utf-8', r"missing column\(s\) \['label', 'text'\]"),
    ('id,text,label\n1,,happy\n2,我很开心,bored\n3,我很开心,\n', 'utf-8', 'no usable row'),
])
def test_bad_lyric_files(tmp_path, content, enc, match):
    p = tmp_path/'lyrics.csv'; p.write_bytes(content.encode(enc))
    with pytest.raises(DataError, match=match): load_labelled_lyrics(p)

def test_encoding_error_names_the_file(tmp_path):
    p = tmp_path/'情歌.txt'; p.write_bytes('我很开心'.encode('gb18030'))
    with pytest.raises(DataError, match='情歌.txt is not valid utf-8 text'): read_text(p)
    assert read_text(p, encoding='gb18030') == '我很开心'

def test_unknown_labels_are_dropped_and_counted(tmp_path):
    p = tmp_path/'l.csv'
    pd.DataFrame(dict(text=['我很开心', '我很难过', '好怕'], label=['happy', 'bored', 'fear'])).to_csv(p, index=False)
    ll = load_labelled_lyrics(p)
    assert ll.emotion.tolist() == ['happy', 'fear'] and ll.attrs['dropped'] == {'unknown label': 1}
    assert ll.id.tolist() == [0, 2]   # an id column is made when the file has none

def test_hierarchy_input_checks():
    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.array(['sad', 'happy'] * 20, dtype=object)
    h = HierarchicalSVC(tree=('sad', 'happy'))
    with pytest.raises(NotFittedError): h.predict(X)
    with pytest.raises(ValueError, match='one label per row'): h.fit(X, y[:-1])
    with pytest.raises(ValueError, match='a pair'): HierarchicalSVC(tree=('sad',)).fit(X, y)
    h.fit(X, y)
    with pytest.raises(ValueError, match='X must be n x 3'): h.predict(X[:, :2])
    assert h.leaf_scores(X).shape == (40, 2)

def test_cv_is_deterministic():
    X, y = np.random.default_rng(0).normal(size=(60, 3)), np.array(['sad', 'happy', 'fear'] * 20, dtype=object)
    a, b = (cv_evaluate(HierarchicalSVC(tree=('sad', ('happy', 'fear'))), X, y, folds=3, seed=1) for _ in range(2))
    assert a['y_pred'].tolist() == b['y_pred'].tolist() and a['confusion'] == b['confusion']

def test_lyric_model_kinds():
    with pytest.raises(ValueError, match="'hierarchical' or 'flat'"): lyric_model('forest')
    assert LexiconFeatures().fit_transform([]).shape == (0, len(FEATURES))

def test_find_lyrics_says_where_it_looked(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match=r'\$FERMUSIC_DATA \(not set\)'): find_lyrics()
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match='kassia_zh_final.csv.xz'): find_lyrics()
    with pytest.raises(DatasetNotFoundError, match='the path you gave'): find_lyrics(tmp_path/'nope.csv')


@pytest.mark.full
@pytest.mark.skipif(not LYRICS.exists(), reason=f'full data absent: {LYRICS}')
def test_full_lyrics_load_as_documented():
    ll = load_labelled_lyrics(LYRICS)
    assert len(ll) == 3587 and ll.attrs['dropped'] == {'two labels': 2, 'no text': 1, 'no label': 1}
    assert ll.emotion.value_counts().to_dict() == dict(sad=1418, happy=855, neutral=794, angry=316, fear=110, disgust=56, surprise=38)
