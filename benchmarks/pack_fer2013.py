#!/usr/bin/env python
"""Pack FER2013 into a compact, lossless bundle that fits what travels to a lent GPU machine (64 MiB in all).

The csv (35,887 faces, 79 MiB of pixels; 78 MB as .csv.xz) is too big to carry. The bundle keeps each distinct
face once (1,851 rows of FER2013 repeat another row pixel for pixel) in mosaics of 4,096 faces, each mosaic a
lossless image file (JPEG XL through the `pillow-jxl-plugin` package when it is installed, else PNG), plus
`meta.npz`: labels, Usage, csv rows, the row -> distinct-face index, FER+ majority labels and 'not a face' flags
when given, and the SHA-256 of the original pixels, which `unpack` checks, so a bundle that does not rebuild
FER2013 exactly fails.

    python benchmarks/pack_fer2013.py [--source ../shared/data/fer2013/fer2013.csv.xz] [--out .gpu/fer2013]
                                      [--ferplus ../shared/data/ferplus/fer2013new.csv.gz] [--codec jxl|png]
    python benchmarks/pack_fer2013.py --travel [--carry .gpu .whl]   # what a device call would carry
    python benchmarks/pack_fer2013.py --stages [--out .gpu/fer2013]  # split the bundle into calls that fit
    python benchmarks/pack_fer2013.py --landmarks [--source ...]      # add Han's dlib landmarks (also of the disturbed test faces)

A bundle (47 MiB) plus the wheels (5 MiB) plus the tracked tree (35 MiB, 25 of them the shipped CNN8 model) is
more than one device call carries (64 MiB). `--stages` copies the bundle's files into `.gpu/stage-1`, `.gpu/stage-2`,
..., each small enough to carry beside the tree (the last beside the wheels too). Each call but the last carries one
stage and only checks that it arrived; the last carries the last stage and `.whl` and runs `gpu_run.sh`, which
joins the stages left on the warm machine (ignored folders stay there between calls) and checks the SHA-256.

Measured on FER2013 (2026-11-26): JPEG XL lossless (effort 7) 49.7 MiB for all rows, about 47 MiB distinct rows
only; PNG 55.4; WebP lossless 54.9; JPEG 2000 lossless 54.5; xz -9e 60.4 (raw), 53.2 (after a LOCO-I predictor).
"""
import argparse, hashlib, io, json, os, shutil, subprocess, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np

USAGES = ('Training', 'PublicTest', 'PrivateTest')
TILE = 4096    # faces per mosaic file: 64 x 64 faces of 48 x 48 = 3072 x 3072 pixels
COLS = 64
SIDE = 48
LIMIT = 64 * 2**20   # what one device call may carry: the working tree plus carried paths

def _jxl() -> bool:
    "True when PIL can write and read JPEG XL (the `pillow-jxl-plugin` package registers it on import)."
    try: import pillow_jxl  # noqa: F401
    except ImportError: return False
    return True

def digest(x:np.ndarray) -> str:
    "SHA-256 of an array's shape and bytes: the check that a rebuilt dataset is the original."
    h = hashlib.sha256(str(x.shape).encode()); h.update(np.ascontiguousarray(x).tobytes()); return h.hexdigest()

def mosaic(faces:np.ndarray) -> np.ndarray:
    "Up to `TILE` faces (k x 48 x 48) laid out in rows of `COLS` as one greyscale image, zero-padded."
    k = len(faces); rows = -(-k // COLS)
    a = np.concatenate([faces, np.zeros((rows * COLS - k, SIDE, SIDE), np.uint8)])
    return a.reshape(rows, COLS, SIDE, SIDE).transpose(0, 2, 1, 3).reshape(rows * SIDE, COLS * SIDE)

def unmosaic(img:np.ndarray, k:int) -> np.ndarray:
    "The first `k` faces of a `mosaic`."
    rows = img.shape[0] // SIDE
    return img.reshape(rows, SIDE, COLS, SIDE).transpose(0, 2, 1, 3).reshape(-1, SIDE, SIDE)[:k]

def pack(x:np.ndarray, # N x 48 x 48 uint8 faces, in csv row order
         y:np.ndarray, # FER2013 labels 0-6
         usage:np.ndarray, # 'Training' / 'PublicTest' / 'PrivateTest' per face
         out:Path|str, # the bundle folder to write (replaced atomically)
         rows:np.ndarray|None=None, # csv row of each face
         ferplus:np.ndarray|None=None, # FER+ majority label per face (-1: none), aligned with x
         nonface:np.ndarray|None=None, # FER+ 'not a face' (more than 5 of 10 NF votes) per face, aligned with x
         codec:str|None=None, # 'jxl' or 'png'; default: jxl when the plugin is installed
        ) -> dict:
    "Write the bundle; returns its description (files, bytes, distinct faces)."
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[-1] == 1: x = x[..., 0]
    if x.dtype != np.uint8 or x.shape[1:] != (SIDE, SIDE): raise ValueError(f'expected N x 48 x 48 uint8 faces, got {x.shape} {x.dtype}')
    bad = sorted(set(np.unique(usage)) - set(USAGES))
    if bad: raise ValueError(f'unknown Usage values {bad}; expected {USAGES}')
    codec = codec or ('jxl' if _jxl() else 'png')
    if codec == 'jxl' and not _jxl(): raise ValueError("codec 'jxl' needs the pillow-jxl-plugin package: pip install pillow-jxl-plugin")
    if codec not in ('jxl', 'png'): raise ValueError(f"codec must be 'jxl' or 'png', got {codec!r}")
    from PIL import Image
    _, first, inv = np.unique(x.reshape(len(x), -1), axis=0, return_index=True, return_inverse=True)
    keep = np.sort(first)                                   # distinct faces, in order of first appearance
    index = np.searchsorted(keep, first)[inv.ravel()]      # row -> its face's place among the distinct ones
    out = Path(out); out.parent.mkdir(parents=True, exist_ok=True)   # the temporary folder must sit beside `out`
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', dir=out.parent))
    try:
        files = []
        for t, s in enumerate(range(0, len(keep), TILE)):
            name = f'tile-{t:02d}.{codec}'; b = io.BytesIO()
            img = Image.fromarray(mosaic(x[keep[s:s + TILE]]))
            if codec == 'jxl': img.save(b, 'JXL', lossless=True, effort=7)
            else: img.save(b, 'PNG', optimize=True)
            (tmp/name).write_bytes(b.getvalue()); files.append(name)
        meta = dict(y=np.asarray(y, np.int8), usage=np.array([USAGES.index(u) for u in usage], np.int8), index=index.astype(np.int32),
                    rows=np.arange(len(x), dtype=np.int32) if rows is None else np.asarray(rows, np.int32),
                    info=np.array(json.dumps(dict(n=len(x), distinct=len(keep), codec=codec, files=files, tile=TILE, cols=COLS,
                                                  sha256=digest(x), usages=USAGES))))
        if ferplus is not None: meta['ferplus'] = np.asarray(ferplus, np.int8)
        if nonface is not None: meta['nonface'] = np.asarray(nonface, bool)
        np.savez_compressed(tmp/'meta.npz', **meta)
        if out.exists(): shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True); raise
    sizes = {f.name: f.stat().st_size for f in sorted(out.iterdir())}
    return dict(folder=str(out), n=len(x), distinct=len(keep), codec=codec, bytes=sum(sizes.values()), files=sizes)

def unpack(folder:Path|str, # a bundle written by `pack`
           threads:int|None=None, # mosaics decoded in parallel
          ) -> dict:
    "The dataset of a bundle: x (N x 48 x 48 uint8), y, usage (names), rows and, when packed, ferplus; checked against its SHA-256."
    folder = Path(folder)
    if not (folder/'meta.npz').is_file():
        raise FileNotFoundError(f'{folder}: no meta.npz; build the bundle with `python benchmarks/pack_fer2013.py --out {folder}`')
    with np.load(folder/'meta.npz') as z: meta = {k: z[k] for k in z.files}
    info = json.loads(str(meta.pop('info')))
    if info['codec'] == 'jxl' and not _jxl():
        raise ImportError(f'{folder} holds JPEG XL mosaics: install pillow-jxl-plugin (carried as a wheel on the GPU machine)')
    from PIL import Image
    def read(i_name):
        i, name = i_name
        k = min(info['tile'], info['distinct'] - i * info['tile'])
        with Image.open(folder/name) as im: return unmosaic(np.asarray(im.convert('L')), k)
    with ThreadPoolExecutor(threads or min(16, os.cpu_count() or 1)) as ex: parts = list(ex.map(read, enumerate(info['files'])))
    x = np.concatenate(parts)[meta['index']]
    if digest(x) != info['sha256']:
        raise ValueError(f'{folder}: the rebuilt pixels do not match the SHA-256 recorded at packing: the bundle is corrupt; rebuild it')
    out = dict(x=x, y=meta['y'].astype(np.int64), usage=np.array(USAGES)[meta['usage']], rows=meta['rows'].astype(np.int64), info=info)
    if 'ferplus' in meta: out['ferplus'] = meta['ferplus'].astype(np.int64)
    if 'nonface' in meta: out['nonface'] = meta['nonface'].astype(bool)
    if 'landmarks' in meta:
        out.update(landmarks=meta['landmarks'].astype(np.float32), n_faces=meta['n_faces'].astype(np.int64), outside=meta['outside'])
    out.update({k: meta[k].astype(np.float32) for k in meta if k.startswith('robust_')})   # per row; zeros off the test
    return out

def _whole_pixels(folder, pts, shape, what='landmarks') -> np.ndarray:
    "`pts` as uint8, after checking its shape and that its points are whole pixels in the frame."
    pts = np.asarray(pts)
    if pts.shape != shape:
        raise ValueError(f'{folder}: {what} of shape {pts.shape} for {shape[0]} faces: compute them from this bundle\'s faces')
    if not (np.array_equal(pts, np.round(pts)) and pts.min() >= 0 and pts.max() <= 255):
        raise ValueError(f'{folder}: {what} must be whole pixels inside the frame (as `face_features` clips dlib\'s points)')
    return pts.astype(np.uint8)

def add_landmarks(folder:Path|str, # a bundle written by `pack`
                  feats:dict, # `fermusic.multimodal.cached_features` of the same faces, in the bundle's row order
                  robust:dict|None=None, # {perturbation: landmarks re-detected on the disturbed faces of `rows`}
                  rows=None, # the bundle rows `robust` describes (the lesson's test faces)
                 ) -> int:
    """Put dlib's 68 landmarks (uint8: whole pixels in the frame), faces found and out-of-frame flags into `meta.npz`,
    and the landmarks of the disturbed test faces as `robust_<perturbation>` (zeros on other rows); returns its bytes."""
    from fermusic.data import atomic_write
    folder = Path(folder)
    with np.load(folder/'meta.npz') as z: meta = {k: z[k] for k in z.files}
    n = len(meta['y'])
    meta.update(landmarks=_whole_pixels(folder, feats['landmarks'], (n, 68, 2)),
                n_faces=np.minimum(feats['n_faces'], 255).astype(np.uint8), outside=np.asarray(feats['outside'], bool))
    for k, pts in (robust or {}).items():
        full = np.zeros((n, 68, 2), np.uint8)
        full[rows] = _whole_pixels(folder, pts, (len(rows), 68, 2), f'{k} landmarks')
        meta[f'robust_{k}'] = full
    def write(tmp):
        with open(tmp, 'wb') as fh: np.savez_compressed(fh, **meta)   # a handle: savez would add '.npz' to a name
    atomic_write(folder/'meta.npz', write)
    return (folder/'meta.npz').stat().st_size

def _du(p:Path) -> int:
    if p.is_symlink() or p.is_file(): return p.lstat().st_size
    return sum(f.lstat().st_size for f in p.rglob('*') if f.is_file() or f.is_symlink())

def travel_size(root:Path|str='.', # the checkout a device call sends
                carry=(), # ignored paths it carries too
               ) -> dict:
    "Bytes a device call would send: tracked files, untracked files git does not ignore, and the carried paths."
    root = Path(root)
    ls = lambda *a: subprocess.run(['git', 'ls-files', '-z', *a], cwd=root, capture_output=True, check=True).stdout.decode().split('\0')
    files = {f for f in ls('--cached') + ls('--others', '--exclude-standard') if f and (root/f).exists()}
    tree = sum((root/f).lstat().st_size for f in files)
    big = sorted(((root/f).lstat().st_size, f) for f in files)[-3:][::-1]
    carried = {c: _du(root/c) for c in carry if (root/c).exists()}
    total = tree + sum(carried.values())
    return dict(tree=tree, largest=big, carried=carried, total=total, limit=LIMIT, fits=total <= LIMIT)

def _mib(b): return f'{b / 2**20:.1f} MiB'

def plan_stages(files:dict, # {file name: bytes} of a bundle (meta.npz included)
                room:int, # bytes one call may carry beside the tree
                last_room:int, # bytes the last call may carry beside the tree and the wheels
               ) -> list:
    "Split a bundle's files into the fewest stages in order, each within `room` (the last within `last_room`)."
    if room <= 0 or last_room <= 0: raise ValueError(f'no room beside the tree: {_mib(room)} / {_mib(last_room)}')
    big = [f for f, b in files.items() if b > room]
    if big: raise ValueError(f'{big[0]} ({_mib(files[big[0]])}) is larger than one call can carry: pack smaller tiles')
    if files.get('meta.npz', 0) > last_room: raise ValueError(f'meta.npz ({_mib(files["meta.npz"])}) does not fit the last call')
    names = sorted(files, key=lambda f: (f == 'meta.npz', f))   # meta.npz last: its arrival completes the bundle
    fill = room
    while True:   # greedy fill in order; shrink the fill until the last stage fits beside the wheels
        stages, cur = [], []
        for f in names:
            if cur and sum(files[g] for g in cur) + files[f] > fill: stages.append(cur); cur = []
            cur.append(f)
        stages.append(cur)
        if sum(files[g] for g in stages[-1]) <= last_room or fill <= 0: return stages
        fill -= 2**20

def write_stages(bundle:Path|str, # a bundle written by `pack`
                 root:Path|str='.', # the checkout a device call sends
                 wheels:str='.whl', # the carried wheels' folder (the last call carries it)
                 margin:int=2 * 2**20, # bytes left free per call, for the tree growing before the call
                ) -> list:
    "Copy the bundle into `.gpu/stage-K/NAME` folders that each fit one device call; returns the stages' folders."
    bundle, root = Path(bundle), Path(root)
    files = {f.name: f.stat().st_size for f in sorted(bundle.iterdir()) if f.is_file()}
    if 'meta.npz' not in files: raise FileNotFoundError(f'{bundle}: no meta.npz; build the bundle first (pack_fer2013.py)')
    tree = travel_size(root)['tree']
    room = LIMIT - tree - margin
    plan = plan_stages(files, room, room - (_du(root/wheels) if (root/wheels).exists() else 0))
    base = bundle.parent
    for old in base.glob('stage-*'): shutil.rmtree(old)
    out = []
    for k, names in enumerate(plan, 1):
        d = base/f'stage-{k}'/bundle.name; d.mkdir(parents=True)
        for n in names: shutil.copy2(bundle/n, d/n)
        out.append(d.parent)
    return out

def join_stages(base:Path|str, # the folder holding stage-1, stage-2, ... (e.g. .gpu)
                name:str='fer2013', # the bundle's name inside each stage
               ) -> Path:
    "Gather the stages' files into `base/name` (hard links where possible); says which stage is missing."
    base = Path(base); dest = base/name
    stages = sorted(base.glob('stage-*'), key=lambda p: int(p.name.split('-')[1]))
    if not stages: return dest
    if not any((s/name/'meta.npz').is_file() for s in stages):
        raise FileNotFoundError(f'{base}: the last stage (with meta.npz) has not arrived; carry it in this call')
    dest.mkdir(exist_ok=True)
    for s in stages:
        for f in (s/name).iterdir():
            if not (dest/f.name).exists():
                try: os.link(f, dest/f.name)
                except OSError: shutil.copy2(f, dest/f.name)
    with np.load(dest/'meta.npz') as z: info = json.loads(str(z['info']))
    missing = [f for f in info['files'] if not (dest/f).is_file()]
    if missing:
        raise FileNotFoundError(f'{base}: {len(missing)} of the bundle\'s files have not arrived ({missing[0]}, ...): '
                                'an earlier stage call is missing or the machine was given back between calls; '
                                'carry every stage again, one call each')
    return dest

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--source', default=None, help='FER2013 csv or folders (default: fermusic.data.find_dataset)')
    ap.add_argument('--ferplus', default=None, help='fer2013new.csv(.gz) to pack FER+ majority labels (needs the csv source)')
    ap.add_argument('--out', default='.gpu/fer2013')
    ap.add_argument('--codec', choices=['jxl', 'png'], default=None)
    ap.add_argument('--travel', action='store_true', help='only report what a device call would carry')
    ap.add_argument('--carry', nargs='*', default=['.gpu', '.whl'])
    ap.add_argument('--stages', action='store_true', help='split the bundle at --out into stages that fit one call each')
    ap.add_argument('--join', action='store_true', help='(on the GPU machine) gather the stages into --out')
    ap.add_argument('--landmarks', action='store_true', help="add the lesson's dlib landmarks (Han, lesson 20) to the bundle "
                    'at --out: read from the feature cache, computed there first when missing (about 15 min on 2 cores)')
    a = ap.parse_args(argv)
    if a.join: return print(f'joined: {join_stages(Path(a.out).parent, Path(a.out).name)}')
    if a.landmarks:   # the same calls and cache keys as the lesson's `fer2013_data` and `robustness`
        from fermusic.data import load_fer2013
        from fermusic.multimodal import cached_features, perturb, HAN_FULL, PERTURBATIONS
        f = load_fer2013(a.source, add_channel=True)
        kw = dict(upsample=HAN_FULL['upsample'], hog=HAN_FULL['hog'])
        feats = cached_features(f.x, 'fer2013', **kw)
        te = np.flatnonzero(np.asarray(f.split) == 'PrivateTest')
        robust = {k: cached_features(perturb(f.x[te], feats['landmarks'][te], k), f'fer2013-test-{k}', progress=False,
                                     **kw)['landmarks'] for k in PERTURBATIONS[1:]}
        size = _mib(add_landmarks(a.out, feats, robust, te))
        return print(f"landmarks of {len(f.x)} faces, and of {len(te)} test faces under {len(robust)} disturbances "
                     f"-> {a.out}/meta.npz ({size})")
    if a.stages:
        st = write_stages(a.out)
        for k, d in enumerate(st, 1):
            carry = [str(d)] + (['.whl'] if k == len(st) else [])
            print(f'call {k} of {len(st)}: carry {carry}: {_mib(travel_size(".", carry)["total"])}'
                  + ('  then: bash benchmarks/gpu_run.sh' if k == len(st) else '  then: bash benchmarks/gpu_run.sh --stage'))
        return st
    if not a.travel:
        from fermusic.data import load_fer2013, load_ferplus_labels
        t0 = time.perf_counter(); f = load_fer2013(a.source)
        plus = nonface = None
        if a.ferplus:
            if f.rows is None: raise SystemExit('--ferplus matches FER+ labels by csv row: give the FER2013 csv as --source')
            from fermusic.multimodal import ferplus_nonface
            plus, nonface = load_ferplus_labels(a.ferplus)[f.rows], ferplus_nonface(f.rows, a.ferplus)
        rows = f.rows if f.rows is not None else None
        desc = pack(f.x, f.y, f.split, a.out, rows=rows, ferplus=plus, nonface=nonface, codec=a.codec)
        back = unpack(a.out)  # proves the bundle rebuilds the data exactly (SHA-256)
        assert (back['x'] == (f.x[..., 0] if f.x.ndim == 4 else f.x)).all()
        print(f"{desc['n']} faces ({desc['distinct']} distinct) -> {a.out}: {_mib(desc['bytes'])} as {desc['codec']} "
              f"in {len(desc['files'])} files; unpacked and checked ({time.perf_counter() - t0:.0f} s)")
    t = travel_size('.', a.carry)
    print(f"one device call carrying all of it would carry {_mib(t['total'])} of {_mib(t['limit'])}: tree {_mib(t['tree'])} "
          f"(largest: {', '.join(f'{f} {_mib(b)}' for b, f in t['largest'])}), "
          + ', '.join(f'{c} {_mib(b)}' for c, b in t['carried'].items()) + (' - fits' if t['fits'] else ' - TOO BIG'))
    return t

if __name__ == '__main__': main()
