"Bad input and edge cases of `fermusic.recommend` (the lesson nbs/12_recommend.ipynb covers the normal paths)."
import json
from pathlib import Path
import pandas as pd, pytest
from fermusic.data import EMOTIONS, DataError
from fermusic.recommend import (LIFT, emotion_library, label_similarity, load_song_library,
                                read_songci_json, recommend, save_song_library, song_labels, user_profile)

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def lib(): return load_song_library()

def test_shipped_library(lib):
    assert len(lib) == 280 and lib.id.tolist() == list(range(280))
    assert lib.emotion.isin(EMOTIONS).all()
    forms = {'short-form', 'medium-form', 'long-form'}
    assert all(len(forms & set(ls)) == 1 for ls in lib.labels)
    assert set(lib.emotion) == set(EMOTIONS)   # every library has at least one song

def test_xlsx_and_csv_agree(lib):
    xl = load_song_library(ROOT/'data'/'songs'/'songci300.xlsx')
    assert xl.drop(columns=[c for c in xl if c.startswith('score_')]).equals(lib.drop(columns=[c for c in lib if c.startswith('score_')]))

@pytest.mark.parametrize('emotion', ['melancholy', '', 'contempt'])
def test_unknown_emotion(lib, emotion):
    with pytest.raises(ValueError, match='valid names: angry, disgust, fear, happy, sad, surprise, neutral'): recommend(emotion, lib)

def test_empty_library(lib, tmp_path):
    with pytest.raises(ValueError, match='the song library is empty'): recommend('happy', lib.iloc[:0])
    with pytest.raises(ValueError, match='the song library is empty'): recommend('happy', pd.DataFrame())
    (tmp_path/'empty.csv').write_text('')
    with pytest.raises(DataError, match='the song library is empty'): load_song_library(tmp_path/'empty.csv')
    (tmp_path/'empty.json').write_text('[]')
    with pytest.raises(DataError, match='no songs'): read_songci_json(tmp_path/'empty.json')

@pytest.mark.parametrize('kw, match', [(dict(top_k=0), 'top_k must be a positive integer'), (dict(top_k=2.5), 'top_k'),
                                       (dict(policy='cheer'), 'Unknown policy'), (dict(typical=[9999]), 'is not in the library'),
                                       (dict(space='euclid'), "'profile' or 'union'")])
def test_bad_arguments(lib, kw, match):
    with pytest.raises(ValueError, match=match): recommend('happy', lib, **kw)

def test_non_utf8_files(tmp_path):
    (tmp_path/'lib.csv').write_bytes('title,author,labels,emotion\n声声慢,李清照,autumn,sad\n'.encode('gb18030'))
    with pytest.raises(DataError, match=r"lib.csv is not valid utf-8 text .*encoding='gb18030'"): load_song_library(tmp_path/'lib.csv')
    (tmp_path/'ci.json').write_bytes(json.dumps([dict(author='李清照', rhythmic='聲聲慢', paragraphs=['尋尋覓覓'])], ensure_ascii=False).encode('big5'))
    with pytest.raises(DataError, match='ci.json is not valid utf-8'): read_songci_json(tmp_path/'ci.json')

def test_bad_library_files(tmp_path):
    (tmp_path/'a.csv').write_text('title,author\nx,y\n')
    with pytest.raises(DataError, match=r"missing column\(s\) \['labels', 'emotion'\]"): load_song_library(tmp_path/'a.csv')
    (tmp_path/'b.csv').write_text('title,author,labels,emotion\nx,y,moon,bored\n')
    with pytest.raises(DataError, match=r"unknown emotion\(s\) \['bored'\]"): load_song_library(tmp_path/'b.csv')
    (tmp_path/'c.json').write_text('{not json')
    with pytest.raises(DataError, match='not valid JSON'): read_songci_json(tmp_path/'c.json')
    with pytest.raises(FileNotFoundError, match='no song library'): load_song_library(tmp_path/'none.csv')

def test_a_library_without_scores_still_works():
    "A user's own library: labels and emotions only, no lyric-model scores."
    mine = pd.DataFrame(dict(title=list('abcdef'), author='me', emotion=['happy'] * 5 + ['sad'],
                             labels=['moon; wine', 'moon', 'wine; rain', 'rain', 'moon; wine; rain', 'tears']))
    r = recommend('happy', mine, top_k=10)
    assert r.title.tolist() == ['e', 'd'] and r.similarity.tolist() == [0.962, 0.333]   # typical: the first 3 happy songs: moon 2, wine 2, rain 1
    with pytest.raises(ValueError, match="the 'angry' library is empty"): recommend('angry', mine)
    assert recommend('sad', mine, typical=['f']).title.tolist() == []    # nothing left to recommend: an empty table

def test_songs_without_labels_or_lexicon_hits(tmp_path):
    songs = [dict(author='x', rhythmic='无题', paragraphs=['一二三四。']), dict(author='y', rhythmic='春词', paragraphs=['春风开心。'])]
    (tmp_path/'s.json').write_text(json.dumps(songs, ensure_ascii=False), encoding='utf-8')
    lib = load_song_library(tmp_path/'s.json')
    assert lib.loc[0, 'emotion'] == 'neutral' and lib.loc[0, 'lexicon_hits'] == 0   # documented fallback
    assert lib.loc[0, 'labels'] == ['short-form']
    assert label_similarity(user_profile([['moon']]), [[], ['moon', 'rain']], space='union').round(3).tolist() == [0.0, 0.707]
    save_song_library(lib, tmp_path/'out')
    assert load_song_library(tmp_path/'out'/'songci300.csv').labels.tolist() == lib.labels.tolist()

def test_small_libraries_are_topped_up(lib):
    for e in EMOTIONS:
        el = emotion_library(lib, e, min_size=10)
        assert len(el) >= 10 and el.in_library.sum() == (lib.emotion == e).sum()
        r = recommend(e, lib, policy='lift')
        assert r.library.unique().tolist() == [LIFT.get(e, e)] and len(r) == 5

def test_profile_counts_a_label_once_per_song():
    assert user_profile([['moon', 'moon', 'wine'], ['moon']]).to_dict() == {'moon': 2, 'wine': 1}
    assert song_labels('') == ['short-form']
