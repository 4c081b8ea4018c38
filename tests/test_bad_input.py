"""Bad input, generated at test time (nothing here is committed data): every case gives a spectrum or an error row,
no exception escapes `read_many` or `classify_files`, and nothing hangs. The reader test files are Open Specy's
(openspecy/inst/extdata) and SpectroChemPy's (foreign_files/, see its PROVENANCE.md)."""
import io, time, zipfile
from pathlib import Path
import numpy as np, pandas as pd, pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from mp_cnn import readers
from mp_cnn.readers import read_many
from mp_cnn.formats import ReadError

LIMIT = 20.   # seconds one file may take here: a reader that runs over is a failure of the time limit
EXTS = sorted(set(readers._BY_EXT) | {'.0', '.zip', '', '.xyz'})
W = np.arange(400., 4000., 4.)
Y = np.exp(-((W - 2915) / 15) ** 2) + np.exp(-((W - 1470) / 10) ** 2)


@pytest.fixture(scope='module')
def real_files(shared):
    "Every reader test file: Open Specy's and the foreign ones."
    fs = sorted((shared/'openspecy'/'inst'/'extdata').iterdir()) + sorted(p for p in (shared/'foreign_files').iterdir() if p.suffix.upper() in ('.SPA', '.SPC', '.SPG'))
    assert len(fs) == 12 + 13
    return fs

def check(paths, expect=None):
    "`read_many(paths)` returns in time, without raising, one entry per file: spectra or an error naming it. The rows read."
    t = time.time()
    ok, errs = read_many(paths, timeout=LIMIT)
    assert time.time() - t < LIMIT * max(1, len(paths) if isinstance(paths, list) else 1) + 5
    assert isinstance(errs, pd.DataFrame) and list(errs.columns) == ['file', 'error']
    for e, f in zip(errs.error, errs.file): assert Path(f).name in e and e.startswith('cannot read')
    read = {Path(s.meta.file[0].split('/')[0]).name for s in ok}
    names = [Path(p).name for p in (paths if isinstance(paths, list) else [paths])]
    assert all((n in read) or (n in {Path(f).name for f in errs.file}) for n in names), (names, read, errs)
    if expect == 'error': assert not ok and len(errs) == len(names), ok
    if expect == 'spectrum': assert ok and not len(errs), errs.error.tolist()
    return ok, errs

def csv_text(wn, y, sep=',', dec='.', header=None):
    lines = ([header] if header else []) + [f'{w:g}{sep}{v:.6g}' for w, v in zip(wn, y)]
    return '\n'.join(lines).replace('.', dec) if dec != '.' else '\n'.join(lines)


# --- each format truncated; random bytes under each extension; empty files and zips --------------------------------------------

@pytest.mark.parametrize('frac', [0, 0.001, 0.1, 0.5, 0.9, 0.999])
def test_truncated(real_files, tmp_path, frac):
    paths = []
    for f in real_files:
        b = f.read_bytes()
        p = tmp_path/f.name; p.write_bytes(b[:int(len(b) * frac)]); paths.append(p)
    ok, errs = check(paths)
    if frac == 0: assert len(errs) == len(paths) and not ok   # empty files

@pytest.mark.parametrize('ext', EXTS)
def test_random_bytes(tmp_path, ext):
    rng = np.random.default_rng(len(ext))
    for n in (1, 10, 600, 100_000):
        p = tmp_path/f'noise{n}{ext}'; p.write_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        check(p, 'error')

@pytest.mark.parametrize('ext', EXTS)
def test_empty_file(tmp_path, ext):
    (tmp_path/f'empty{ext}').write_bytes(b'')
    check(tmp_path/f'empty{ext}', 'error')

def test_zips(tmp_path):
    with zipfile.ZipFile(tmp_path/'empty.zip', 'w'): pass
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, 'w') as z: z.writestr('a.csv', csv_text(W, Y))
    with zipfile.ZipFile(tmp_path/'nested.zip', 'w') as z: z.writestr('inner.zip', inner.getvalue())
    with zipfile.ZipFile(tmp_path/'holds_empty.zip', 'w') as z: z.writestr('e.zip', (tmp_path/'empty.zip').read_bytes())
    _, errs = check(tmp_path/'empty.zip', 'error'); assert 'holds no spectrum' in errs.error[0]
    ok, _ = check(tmp_path/'nested.zip', 'spectrum'); assert ok[0].meta.file[0] == 'nested.zip/inner.zip/a.csv'
    check(tmp_path/'holds_empty.zip', 'error')
    (tmp_path/'d').mkdir(); _, errs = check(tmp_path/'d', None); assert 'no spectrum files' in errs.error[0]

def test_time_limit_names_the_file(tmp_path, monkeypatch):
    def slow(path): time.sleep(30)
    monkeypatch.setitem(readers._BY_EXT, '.slow', slow)
    (tmp_path/'stuck.slow').write_text('x')
    t = time.time()
    ok, errs = read_many([tmp_path/'stuck.slow'], timeout=0.5)
    assert time.time() - t < 5 and not ok and 'stuck.slow' in errs.error[0] and 'more than 0.5 s' in errs.error[0]

def test_any_exception_becomes_an_error_row(tmp_path, monkeypatch):
    def buggy(path): raise RecursionError('a bug of ours')
    monkeypatch.setitem(readers._BY_EXT, '.bug', buggy)
    (tmp_path/'x.bug').write_text('x'); (tmp_path/'a.csv').write_text(csv_text(W, Y))
    ok, errs = read_many([tmp_path/'x.bug', tmp_path/'a.csv'])
    assert len(ok) == 1 and 'x.bug' in errs.error[0] and 'a bug of ours' in errs.error[0]


# --- values and axes ---------------------------------------------------------------------------------------------------------

def spectra_cases():
    "name -> CSV text: odd values and axes, each a spectrum (flagged later) or an error row."
    c = {}
    y = Y.copy(); y[::7] = np.nan; c['nan.csv'] = csv_text(W, y)
    y = Y.copy(); y[5] = np.inf; y[9] = -np.inf; c['inf.csv'] = csv_text(W, y)
    c['allnan.csv'] = '\n'.join(f'{w:g},nan' for w in W)
    c['constant.csv'] = csv_text(W, np.ones_like(W))
    c['onepoint.csv'] = '1000,0.5\n'
    c['twopoints.csv'] = '1000,0.5\n1004,0.6\n'
    o = np.random.default_rng(0).permutation(len(W)); c['shuffled.csv'] = csv_text(W[o], Y[o])
    c['duplicated.csv'] = csv_text(np.repeat(W, 2), np.repeat(Y, 2))
    c['negative.csv'] = csv_text(W - 5000, Y)
    c['nm.csv'] = csv_text(1e7 / W[::-1], Y[::-1], header='wavelength_nm,abs')
    c['um.csv'] = csv_text(1e4 / W[::-1], Y[::-1], header='wavelength (µm),abs')
    c['nm_unsaid.csv'] = csv_text(1e7 / W[::-1], Y[::-1])
    c['comma.csv'] = csv_text(W, Y, sep=';', dec=',', header='Wellenzahl;Absorbanz')
    c['semicolon.csv'] = csv_text(W, Y, sep=';')
    c['header_only.csv'] = 'wavenumber,absorbance\n'
    c['text.csv'] = 'hello\nworld\n'
    return c

def write_cases(d):
    for k, v in spectra_cases().items(): (d/k).write_text(v)
    (d/'utf16.csv').write_bytes('\ufeff'.encode('utf-16-le') + csv_text(W, Y, sep=';', dec=',').encode('utf-16-le'))
    (d/'utf16be.txt').write_bytes(csv_text(W, Y, sep='\t').encode('utf-16'))
    (d/'bom.csv').write_bytes(b'\xef\xbb\xbf' + csv_text(W, Y, header='wn,abs').encode())
    return sorted(d.iterdir())

def test_values_and_axes(tmp_path):
    files = write_cases(tmp_path)
    ok, errs = check(files)
    got = {s.meta.file[0]: s for s in ok}
    for f in ('comma.csv', 'semicolon.csv', 'utf16.csv', 'utf16be.txt', 'bom.csv', 'shuffled.csv', 'nan.csv', 'nm.csv', 'um.csv'):
        s = got[f]; assert len(s.wavenumbers) == len(W) and abs(s.wavenumbers[np.nanargmax(s.X[0])] - 2915) < 5, f
    assert 'duplicated.csv' in set(errs.file.map(lambda f: Path(f).name))       # an axis with repeated points: say so
    assert {'onepoint.csv', 'header_only.csv', 'text.csv'} <= set(errs.file.map(lambda f: Path(f).name))

def test_a_million_columns(tmp_path):
    n = 1_000_000
    (tmp_path/'wide.csv').write_text(','.join(f'{w:.3f}' for w in np.linspace(400, 4000, n)) + '\n' + ','.join(['0.5'] * n) + '\n')
    (tmp_path/'line.csv').write_text(','.join(['1.5'] * n) + '\n')
    ok, _ = check(tmp_path/'wide.csv', 'spectrum'); assert ok[0].X.shape == (1, n)
    check(tmp_path/'line.csv', 'error')


# --- the classifier: a flag or an error row for each, the rest classified ------------------------------------------------------

@pytest.fixture(scope='module')
def clf():
    from mp_cnn.classify import Classifier
    return Classifier.load()

def test_classify_files_survives_everything(clf, tmp_path, real_files):
    from mp_cnn.batch import classify_files
    files = write_cases(tmp_path)
    rng = np.random.default_rng(1)
    for ext in EXTS: (tmp_path/f'noise{ext}').write_bytes(rng.integers(0, 256, 700, dtype=np.uint8).tobytes())
    (tmp_path/'empty.csv').write_bytes(b'')
    good = [f for f in real_files if f.name in ('ftir_ps.0', 'IG_SAMP.SPC')]
    df, _ = classify_files([str(p) for p in sorted(tmp_path.iterdir())] + [str(p) for p in good], clf)
    assert set(df.file.str.split('/').str[0]) >= {p.name for p in tmp_path.iterdir()}
    ok = df.flag == ''
    assert df.loc[ok, 'top1'].notna().all() and (df.flag[~ok].str.len() > 0).all()
    assert df.set_index('file').label['ftir_ps.0'] == 'PS'
    assert df.set_index('file').flag['IG_SAMP.SPC'].startswith('interferogram')
    for f in ('nan.csv', 'comma.csv', 'utf16.csv', 'nm.csv'): assert isinstance(df.set_index('file').top1[f], str), f
    for f, flag in [('allnan.csv', 'all NaN'), ('constant.csv', 'constant'), ('negative.csv', 'outside the grid'),
                    ('nm_unsaid.csv', 'covers only'), ('onepoint.csv', 'unreadable')]:
        assert df.set_index('file').flag[f].startswith(flag), (f, df.set_index('file').flag[f])


# --- hypothesis: every reader test file corrupted at random --------------------------------------------------------------------

@st.composite
def corruption(draw):
    kind = draw(st.sampled_from(['flip', 'truncate', 'insert', 'zero', 'splice']))
    return kind, draw(st.floats(0, 1)), draw(st.integers(1, 64)), draw(st.binary(min_size=1, max_size=64))

def corrupt(b, kind, at, n, junk):
    i = int(at * len(b))
    if kind == 'flip': return b[:i] + bytes(x ^ 0xFF for x in b[i:i + n]) + b[i + n:]
    if kind == 'truncate': return b[:i]
    if kind == 'insert': return b[:i] + junk + b[i:]
    if kind == 'zero': return b[:i] + b'\0' * n + b[i + n:]
    return b[:i] + junk + b[i + len(junk):]                    # splice: overwrite

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.integers(0, 24), how=corruption())
def test_corrupted_real_files(real_files, clf, tmp_path_factory, which, how):
    from mp_cnn.batch import classify_files
    f = real_files[which]
    d = tmp_path_factory.mktemp('c')
    (d/f.name).write_bytes(corrupt(f.read_bytes(), *how))
    ok, errs = check(d/f.name)
    df, _ = classify_files([str(d/f.name)], clf, progress=False, timeout=LIMIT)
    assert len(df) == sum(len(s) for s in ok) + len(errs) and (df.flag.ne('') | df.top1.notna()).all()


# --- spectra that are not absorbance, transmittance or reflectance: a flag that says what to do ---------------------------------

def spa_with_units(src, code, dst):
    "A copy of OMNIC file `src` whose header declares Y code `code` (we have no real interferogram or single-beam .spa)."
    import struct
    b = bytearray(src.read_bytes())
    n = struct.unpack_from('<H', b, 294)[0]
    h = next(struct.unpack_from('<I', b, 304 + 16 * i + 2)[0] for i in range(n) if b[304 + 16 * i] == 2)
    struct.pack_into('<I', b, h + 12, code)
    dst.write_bytes(bytes(b)); return dst

def test_units_flags_in_a_batch(clf, shared, tmp_path):
    from mp_cnn.batch import classify_files
    ext, ff = shared/'openspecy'/'inst'/'extdata', shared/'foreign_files'
    for code, name in [(22, 'volts.spa'), (15, 'single.spa'), (99, 'code99.spa'), (12, 'logr.spa')]: spa_with_units(ff/'2-BaSO4_0.SPA', code, tmp_path/name)
    jdx = (ext/'fitr_nitrocellulose.jdx').read_text(errors='replace').replace('##DATA TYPE=INFRARED SPECTRUM', '##DATA TYPE=INFRARED INTERFEROGRAM')
    (tmp_path/'ig.jdx').write_text(jdx)
    df, _ = classify_files([str(p) for p in sorted(tmp_path.iterdir())] + [str(ext/'ftir_ps.0'), str(ff/'IG_SAMP.SPC'), str(ff/'IG_BKGND.SPC')], clf)
    f = df.set_index('file').flag
    assert f['volts.spa'].startswith('detector signal in volts (an interferogram?): Fourier-transform it first')
    assert f['single.spa'].startswith('single-beam spectrum: divide it by its background') and f['IG_BKGND.SPC'] == f['single.spa']
    assert f['code99.spa'].startswith("units 'unknown (OMNIC y code 99)'") and f['logr.spa'].startswith("units 'log(1/R)'")
    assert f['ig.jdx'].startswith('interferogram: Fourier-transform it first') and f['IG_SAMP.SPC'] == f['ig.jdx']
    assert df.set_index('file').label['ftir_ps.0'] == 'PS' and df.label.notna().sum() == 1

def test_srs_says_what_to_do(tmp_path):
    (tmp_path/'series.srs').write_bytes(b'Spectral Data File' + bytes(1000))
    _, errs = check(tmp_path/'series.srs', 'error')
    assert 'OMNIC series (.srs)' in errs.error[0] and 'export its spectra' in errs.error[0]
