#!/usr/bin/env python
"""Draw the FER2013 sample shipped in data/fer2013_sample/ from the full FER2013 csv.

    python data/make_fer2013_sample.py --csv ../shared/data/fer2013/fer2013.csv.xz \
        --provenance ../shared/data/fer2013/provenance.csv.xz --out data/fer2013_sample

Per class it takes N_TRAIN Training rows and N_TEST PublicTest + N_TEST PrivateTest rows, drawn with numpy's
default_rng(SEED) from the rows that are eligible:
  - pixel_source == 'exact_ferplus_png' in provenance.csv (pixel-exact rows, not the ones rebuilt from JPEGs);
  - not pixel-identical to any other row of the csv (FER2013 repeats some images, some across splits),
so the sample has no image in two splits. Images are written as lossless 8-bit greyscale PNG named
{Usage}_{row}.png (row: the 0-based csv data row, as in provenance.csv), in the image-folder layout
train/<class>/ and test/<class>/, with manifest.csv recording each file's csv row, labels and Kaggle name.
The output folder is written to a temporary sibling and renamed at the end.
"""
import argparse, hashlib, os, shutil, sys, tempfile
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image

SEED, N_TRAIN, N_TEST = 2013, 100, 15
EMOTIONS = ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')  # FER2013 labels 0..6

def main(argv=None):
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--csv', default=root.parent/'shared/data/fer2013/fer2013.csv.xz', type=Path)
    ap.add_argument('--provenance', default=root.parent/'shared/data/fer2013/provenance.csv.xz', type=Path)
    ap.add_argument('--out', default=root/'data/fer2013_sample', type=Path)
    ap.add_argument('--seed', default=SEED, type=int)
    ap.add_argument('--n-train', default=N_TRAIN, type=int)
    ap.add_argument('--n-test', default=N_TEST, type=int, help='per class and per test half (PublicTest, PrivateTest)')
    ap.add_argument('--force', action='store_true', help='replace --out if it exists')
    a = ap.parse_args(argv)
    if a.out.exists() and not a.force: sys.exit(f'{a.out} exists; pass --force to replace it.')

    df = pd.read_csv(a.csv, dtype={'emotion': int, 'pixels': str, 'Usage': str})
    prov = pd.read_csv(a.provenance)
    assert len(prov) == len(df) and (prov.row.to_numpy() == np.arange(len(df))).all(), 'provenance rows do not match the csv'
    assert (prov.Usage.to_numpy() == df.Usage.to_numpy()).all() and (prov.emotion.to_numpy() == df.emotion.to_numpy()).all()
    # pixel identity on the parsed values (not on the text), via a hash of the 2304 bytes
    digest = [hashlib.sha1(np.array(s.split(), np.uint8).tobytes()).hexdigest() for s in df.pixels]
    dup = pd.Series(digest).duplicated(keep=False).to_numpy()
    eligible = (prov.pixel_source.to_numpy() == 'exact_ferplus_png') & ~dup
    print(f'{len(df)} rows; {dup.sum()} rows share their pixels with another row; {eligible.sum()} eligible')

    rng = np.random.default_rng(a.seed)
    picks = []
    for usage, n in (('Training', a.n_train), ('PublicTest', a.n_test), ('PrivateTest', a.n_test)):
        for c in range(len(EMOTIONS)):
            pool = np.flatnonzero(eligible & (df.Usage.to_numpy() == usage) & (df.emotion.to_numpy() == c))
            picks += sorted(rng.choice(pool, size=n, replace=False).tolist())

    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{a.out.name}.', dir=a.out.parent))
    try:
        rec = []
        for r in picks:
            usage, c = df.Usage.iat[r], EMOTIONS[df.emotion.iat[r]]
            rel = Path('train' if usage == 'Training' else 'test')/c/f'{usage}_{r}.png'
            (tmp/rel).parent.mkdir(parents=True, exist_ok=True)
            img = np.array(df.pixels.iat[r].split(), np.uint8).reshape(48, 48)
            Image.fromarray(img).save(tmp/rel, format='PNG', optimize=True)
            assert (np.array(Image.open(tmp/rel)) == img).all()
            rec.append(dict(file=rel.as_posix(), csv_row=r, Usage=usage, emotion=int(df.emotion.iat[r]),
                            kaggle_image_name=prov.kaggle_image_name.iat[r], pixel_source=prov.pixel_source.iat[r]))
        pd.DataFrame(rec).sort_values('file').to_csv(tmp/'manifest.csv', index=False)
        os.chmod(tmp, 0o755)
        if a.out.exists(): shutil.rmtree(a.out)
        os.replace(tmp, a.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True); raise
    size = sum(f.stat().st_size for f in a.out.rglob('*') if f.is_file())
    print(f'wrote {len(picks)} images to {a.out} ({size/1e6:.2f} MB)')

if __name__ == '__main__': main()
