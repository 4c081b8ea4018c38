"""The fast inference path (float32 pipeline, `Resampler`, folded numpy network) against today's: the reference is the
code of base commit 4fd7797, kept verbatim in `_reference_4fd7797.py`, run on the same input in the same test."""
import numpy as np
import pytest
from mp_cnn.spectra import Spectra, Resampler, guess_units
from mp_cnn.corpus import load_corpus
from mp_cnn.classify import Classifier
from mp_cnn.readers import read_spectra
import _reference_4fd7797 as ref

TOL = 1e-4

@pytest.fixture(scope='module')
def clf():
    "The shipped classifier with its network answering alone: the parity here is of the preprocessing and the network (the stacking on top: `test_stacked_reader_files`)."
    c = Classifier.load(); c.stack = None
    return c

@pytest.fixture(scope='module')
def old(): return ref.Reference()

@pytest.fixture(scope='module')
def corpus(shared): return load_corpus()

def _same(clf, old, sp, units=None):
    "Flags equal and probabilities within TOL, new path against the reference; returns the worst difference."
    X0, f0 = old.prepare(sp, units)
    P0 = old.probabilities(X0)
    _, P1, f1 = clf.outputs(sp, units)
    assert list(f1) == list(f0)
    assert P1.shape == P0.shape
    d = float(np.abs(P1 - P0).max(initial=0))
    assert d < TOL, d
    return d

def _instrument(corpus, n, step, units, seed=0):
    "`n` corpus spectra as an instrument would write them: on a `step` cm-1 axis from 450 cm-1 (NaN where not measured), in `units`."
    rng = np.random.default_rng(seed)
    wn = np.arange(450., 4000. + step / 2, step)
    X = ref.resample_array(corpus.wavenumbers, corpus.X[rng.integers(0, len(corpus), n)], wn).astype(np.float64)
    X = X * rng.uniform(0.5, 2, (n, 1)) + rng.normal(0, 1e-3, X.shape)
    if units == '%T': X = 100 * 10 ** -np.clip(X, -1, 5)
    return wn, X.astype(np.float32)

def test_corpus_sample(clf, old, corpus):
    _same(clf, old, corpus[::7])                  # absorbance, the corpus's own grid and NaN ranges

@pytest.mark.parametrize('step', [1., 2., 4., 8., 0.96, 3.86])
@pytest.mark.parametrize('units', ['A', '%T'])
def test_instrument_grids(clf, old, corpus, step, units):
    wn, X = _instrument(corpus, 300, step, units)
    _same(clf, old, (wn, X))                      # units guessed per row
    _same(clf, old, (wn[::-1], X[:, ::-1]), units)  # a descending axis, units declared

@pytest.mark.parametrize('step', [1., 3.857])
@pytest.mark.parametrize('units', ['A', '%T'])
def test_operator_path(clf, old, corpus, step, units):
    "Rows with no NaN on an instrument axis take the pipeline's one-matrix path (`fast=True`): the reference's flags and probabilities."
    import sys, json
    from pathlib import Path
    from mp_cnn import preprocess
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'scripts'))
    from bench_classify import queries
    wn, X = queries(corpus, 300, step, units, 0)   # corpus spectra extended flat to 450-4000 cm-1: no NaN
    X0, f0 = old.prepare((wn, X)); P0 = old.probabilities(X0)
    X1, f1 = clf.prepare((wn, X), fast=True); P1 = clf.probabilities(X1)
    assert (np.asarray(wn, np.float64).tobytes(), json.dumps(clf.pipe.steps[:3])) in preprocess._OPERATORS   # the matrix was built and used
    assert list(f1) == list(f0) and float(np.abs(P1 - P0).max()) < TOL

def test_nan_gaps(clf, old, corpus):
    wn, X = _instrument(corpus, 200, 2., 'A', seed=1)
    X[:50, 900:920] = np.nan; X[50:100, :600] = np.nan; X[100:110] = np.nan; X[110:120, 5:] = np.nan
    _same(clf, old, (wn, X))

def test_reader_files(clf, old, shared):
    ext = shared/'openspecy'/'inst'/'extdata'
    n = 0
    for f in sorted(ext.iterdir()):
        try: sp = read_spectra(f)
        except Exception: continue                # unreadable files are the readers' tests
        _same(clf, old, sp); n += 1
    assert n >= 10

def test_stacked_reader_files(old, shared):
    "The shipped answer, stacked with library search (chapter 5b), from the reference's model input and probabilities: within TOL too."
    from mp_cnn.stack import stacked
    c = Classifier.load()
    ext, n = shared/'openspecy'/'inst'/'extdata', 0
    for f in sorted(ext.iterdir()):
        try: sp = read_spectra(f)
        except Exception: continue
        X0, f0 = old.prepare(sp)
        _, P1, f1 = c.outputs(sp)
        if not len(X0): continue
        want = stacked(old.probabilities(X0), c.rule.library.match(X0.astype(np.float32))[2], c.stack['w'], c.stack['T'])
        assert list(f1) == list(f0) and float(np.abs(P1 - want).max()) < TOL, f; n += 1
    assert n >= 6   # the files with a classifiable (mid-IR) spectrum

def test_resampler_matches(corpus):
    rng = np.random.default_rng(0)
    for step in (0.5, 0.96, 1., 1.93, 4., 5., 8.):
        wn = np.arange(rng.uniform(400, 700), rng.uniform(3500, 4100), step)
        X = rng.standard_normal((4, len(wn))); X[1, :50] = np.nan; X[2, 300:303] = np.nan
        for g in (corpus.wavenumbers, np.arange(600., 4000., 1.)):
            a, b = ref.resample_array(wn, X, g), Resampler(wn, g)(X)
            assert np.array_equal(np.isnan(a), np.isnan(b))
            assert np.nanmax(np.abs(a - b)) < 1e-6

def test_guess_units_matches(corpus):
    rng = np.random.default_rng(1)
    X = np.concatenate([corpus.X[:500], 100 * 10 ** -corpus.X[500:1000], 10 ** -corpus.X[1000:1500]])
    assert list(guess_units(X)) == list(ref.guess_units(X))
    Y = np.round(rng.standard_normal((300, 20)) * 3 + 20, 0); Y[::3, ::4] = np.nan   # ties and even counts
    assert list(guess_units(Y)) == list(ref.guess_units(Y))

def test_numpy_net_matches_torch(clf, corpus):
    import torch
    X = clf.pipe.apply(corpus.wavenumbers, corpus.X[::11])[1]
    with torch.inference_mode(): want = clf.model(torch.from_numpy(X)).numpy()
    from mp_cnn.fold import lenet_logits
    assert np.abs(lenet_logits(clf.net, X) - want).max() < 1e-4

@pytest.mark.parametrize('engine', ['numpy', 'torch'])
def test_engines(clf, old, corpus, engine):
    clf.engine = engine
    try: _same(clf, old, _instrument(corpus, 500, 1., '%T', seed=2))
    finally: clf.engine = 'auto'

def test_readme_quotes_results():
    import sys, pandas as pd
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root/'scripts'))
    from bench_classify import readme_text, read_results
    assert readme_text(read_results(root/'results'/'speed_end_to_end.csv')) in (root/'README.md').read_text()


def test_chapter3b_prose_quotes_import_cost():
    "Chapter 3b says why the command line runs the folded network in numpy: torch's import cost, from `results/import_cost.csv`, on top of the cold start."
    import pandas as pd
    from pathlib import Path
    from test_evaluate import _prose
    R = Path(__file__).resolve().parents[1]/'results'
    r = pd.read_csv(R/'import_cost.csv').set_index('module').loc['torch']
    claim = f"importing it adds {r.wall_s:.2f} s and {r.rss_mb:.0f} MB of resident memory to the command line's start (`results/import_cost.csv`)"
    assert claim in _prose('03b_fold'), claim
    e = pd.read_csv(R/'speed_end_to_end.csv')
    assert e[e.part == 'cold_start'].wall_s.item() + r.wall_s > 1.5     # "a one-file command line (1.5 s budget) ... cannot pay"
