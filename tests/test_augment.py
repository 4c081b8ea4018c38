"No-leak tests for the splits and property tests for the augmentations (mp_cnn.augment) and the training sets made of them (mp_cnn.datasets)."
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, HealthCheck, strategies as st

from mp_cnn.spectra import Spectra
from mp_cnn.corpus import load_corpus
from mp_cnn.augment import (split_groups, split_by_source, Augmenter, add_noise, add_baseline, scale, shift, broaden, atr_ratio,
                            truncate, add_atmosphere, mix, water_band, MAGNITUDES)
from mp_cnn.datasets import augment_then_split, balance, AugmentedDataset, augment_batch

AUGS = [add_noise, add_baseline, scale, shift, broaden, atr_ratio, truncate, add_atmosphere]


@pytest.fixture(scope='module')
def corpus(shared): return load_corpus(data_dir=shared)


def _check_split(s, train, test):
    assert len(train) + len(test) == len(s)
    assert sorted(train.meta.sample_id.tolist() + test.meta.sample_id.tolist()) == sorted(s.meta.sample_id)
    assert not set(train.meta.group) & set(test.meta.group)


# --- splits on the real corpus -------------------------------------------------------------------------------------

def test_split_groups_corpus(corpus):
    train, test = split_groups(corpus, 0.2, seed=1)
    _check_split(corpus, train, test)
    frac = test.labels.value_counts() / corpus.labels.value_counts()
    big = corpus.meta.groupby('label').group.nunique() >= 30
    assert np.allclose(frac[big[big].index].fillna(0), 0.2, atol=0.06), frac


def test_split_by_source_corpus(corpus):
    for src in corpus.meta.source.unique():
        train, test = split_by_source(corpus, src)
        _check_split(corpus, train, test)
        assert set(test.meta.source) == {src} and src not in set(train.meta.source)


def test_leaky_protocol_leaks(corpus):
    small = corpus[corpus.labels.isin(['PU', 'rubber', 'EVA', 'CA'])]
    train, test = augment_then_split(small, 60, seed=0, augmenter=Augmenter(corpus.wavenumbers))
    kids = set(train.meta.parent[train.meta.synthetic])
    originals = test.meta.sample_id[~test.meta.synthetic]
    assert originals.isin(kids).sum() > 0           # synthetic children of test originals are in training
    assert set(train.meta.group) & set(test.meta.group)


def test_balance_keeps_parent_group(corpus):
    train, _ = split_groups(corpus)
    small = train[train.labels.isin(['PU', 'PA', 'PE'])]
    bal = balance(small, 80, seed=0)
    assert bal.labels.value_counts().tolist() == [80, 80, 80]
    syn = bal.meta[bal.meta.synthetic]
    by_id = small.meta.set_index('sample_id')
    assert (syn.group.to_numpy() == by_id.loc[syn.parent, 'group'].to_numpy()).all()
    assert bal.meta.sample_id.is_unique
    tr, te = split_groups(bal, seed=3)           # a later group split never separates a child from its parent
    assert not set(tr.meta.parent) & set(te.meta.parent)


# --- hypothesis: small synthetic Spectra ---------------------------------------------------------------------------

@st.composite
def small_spectra(draw):
    n_groups = draw(st.integers(1, 25))
    sizes = draw(st.lists(st.integers(1, 6), min_size=n_groups, max_size=n_groups))
    labels = draw(st.lists(st.sampled_from(['a', 'b', 'c']), min_size=n_groups, max_size=n_groups))
    g = np.repeat(np.arange(n_groups), sizes)
    meta = pd.DataFrame({'group': [f'g{i}' for i in g], 'label': np.repeat(labels, sizes),
                         'source': np.where(g % 2, 's1', 's2'), 'sample_id': [f'id{i}' for i in range(len(g))]})
    X = np.random.default_rng(len(g)).random((len(g), 30)).astype(np.float32)
    return Spectra(np.arange(1000., 1120., 4.), X, meta)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_spectra(), st.floats(0.05, 0.5), st.integers(0, 1000))
def test_split_groups_property(s, test_size, seed):
    train, test = split_groups(s, test_size, seed)
    _check_split(s, train, test)
    # stratification: per class, the test count is never further from the target than the largest group of that class
    for c in s.labels.unique():
        n_c = (s.labels == c).sum()
        biggest = s.meta[s.labels == c].groupby('group').size().max()
        assert abs((test.labels == c).sum() - test_size * n_c) <= biggest + test_size * n_c * 0.5 + 1


@settings(max_examples=30, deadline=None)
@given(small_spectra())
def test_split_by_source_property(s):
    train, test = split_by_source(s, s.meta.source.iloc[-1])
    _check_split(s, train, test)


@st.composite
def arrays_with_nan(draw):
    n, p = draw(st.integers(1, 6)), draw(st.integers(20, 80))
    rng = np.random.default_rng(draw(st.integers(0, 10**6)))
    X = (rng.random((n, p)) * draw(st.sampled_from([1., 100.]))).astype(np.float32)
    lo = draw(st.integers(0, p // 3)); hi = draw(st.integers(0, p // 3))
    X[:, :lo] = np.nan
    if hi: X[:, -hi:] = np.nan
    if draw(st.booleans()): X[0] = np.nan                         # a row never measured
    return np.linspace(650, 4000, p), X


@settings(max_examples=40, deadline=None)
@given(arrays_with_nan(), st.integers(0, 1000))
def test_magnitude_zero_is_identity(wx, seed):
    wn, X = wx
    for f in AUGS: np.testing.assert_array_equal(f(wn, X, 0., seed), X)
    np.testing.assert_array_equal(mix(wn, X, 0., seed, bank=water_band(wn)), X)
    np.testing.assert_array_equal(Augmenter(wn, magnitudes={k: 0 for k in MAGNITUDES})(X, seed), X)


@settings(max_examples=40, deadline=None)
@given(arrays_with_nan(), st.integers(0, 1000), st.floats(0.01, 1.))
def test_nan_preserved(wx, seed, m):
    wn, X = wx
    nan = np.isnan(X)
    for f in AUGS + [lambda w, x, m, s: mix(w, x, m, s, bank=water_band(w))]:
        Y = f(wn, X, m * (10 if f in (shift, broaden) else 1), seed)
        assert Y.shape == X.shape and Y.dtype == np.float32
        if f is truncate: assert (np.isnan(Y) >= nan).all()           # truncation only adds NaN
        else: np.testing.assert_array_equal(np.isnan(Y), nan)
    Y = Augmenter(wn)(X, seed)
    assert (np.isnan(Y) >= nan).all()


@settings(max_examples=20, deadline=None)
@given(arrays_with_nan(), st.integers(0, 1000))
def test_deterministic_and_torch_matches_numpy(wx, seed):
    wn, X = wx
    aug = Augmenter(wn)
    np.testing.assert_array_equal(aug(X, seed), aug(X, seed))
    x = torch.from_numpy(X)
    a = augment_batch(x, wn, aug, torch.Generator().manual_seed(seed))
    b = aug.torch(x, torch.Generator().manual_seed(seed))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(X, x.numpy())                     # input not modified in place
    for f in AUGS:                                                 # tensor in, tensor out
        assert isinstance(f(wn, x, 0.5, torch.Generator().manual_seed(seed)), torch.Tensor)


def test_dataset_epochs():
    wn = np.linspace(650, 4000, 50)
    X = np.random.default_rng(0).random((10, 50)).astype(np.float32)
    s = Spectra(wn, X, pd.DataFrame({'label': list('ab') * 5}))
    ds = AugmentedDataset(s, augmenter=Augmenter(wn, probabilities=dict(add_noise=1.)), seed=3)
    x0, y0 = ds[2]
    assert torch.equal(x0, ds[2][0]) and ds.classes[y0] == 'a'
    ds.set_epoch(1)
    assert not torch.equal(x0, ds[2][0])
    ds.set_epoch(0)
    assert torch.equal(x0, ds[2][0])


# --- views: every spectrum augmented, made once ---------------------------------------------------------------------

def test_views_dataset(corpus):
    from mp_cnn.datasets import ViewsDataset
    from mp_cnn.preprocess import Pipeline, DEFAULT_STEPS
    sub = corpus[np.sort(np.random.default_rng(0).choice(len(corpus), 300, replace=False))]
    prep = Pipeline.from_config(DEFAULT_STEPS)
    a = ViewsDataset(sub, 3, augmenter=Augmenter.from_spectra(sub), transform=prep, seed=1, chunk=128)
    b = ViewsDataset(sub, 3, augmenter=Augmenter.from_spectra(sub), transform=prep, seed=1, chunk=128)
    np.testing.assert_array_equal(a.views[0].numpy(), prep(sub).X)          # view 0 is the spectrum as measured
    for v in (1, 2):
        assert torch.equal(a.views[v], b.views[v])                          # reproducible
        assert not torch.equal(a.views[v], a.views[0])                      # and different from the original
        assert torch.isfinite(a.views[v]).all()                             # preprocessing filled the truncated ends
    assert not torch.equal(a.views[1], a.views[2])
    a.set_epoch(4); x, y = a[5]
    assert torch.equal(x, a.views[1][5]) and a.classes[int(y)] == sub.labels.iloc[5]


def test_chapter2_prose_matches_the_ablation():
    "Chapter 2 quotes the augmentation ablation (results/augment_ablation.md): recomputed here so that the text cannot drift from it."
    import json
    from pathlib import Path
    from test_evaluate import _md_table, _prose
    ab = _md_table(Path(__file__).resolve().parents[1]/'results'/'augment_ablation.md', '')
    a, c = ab['A'], ab['C']
    from decimal import Decimal, ROUND_HALF_UP
    f2 = lambda k, r: str(Decimal(r[k]).quantize(Decimal('0.01'), ROUND_HALF_UP))      # the table's 3 decimals, to 2
    claim = (f"fell to {f2('SNR 30', a)} accuracy on test spectra with SNR 30 noise and {f2('nothing < 1250', a)} with nothing measured below 1250 cm-1. "
             f"Chapter 4's trainer sees every spectrum in four views (`ViewsDataset`, chapter 2a); with these defaults, leave-one-source-out accuracy rose "
             f"from {a['LOSO mean'].rstrip(' *')} to {c['LOSO mean']}, SNR 30 from {f2('SNR 30', a)} to {f2('SNR 30', c)} and below-1250 truncation from "
             f"{f2('nothing < 1250', a)} to {f2('nothing < 1250', c)}, at a cost of {float(a['group acc']) - float(c['group acc']):.2f} on the group split "
             f"({a['group acc']} -> {c['group acc']})")
    assert claim in _prose('02_augment'), claim


def test_chapter2_prose_corpus_counts(corpus):
    "Chapter 2's 'small and lopsided': the largest and the smallest class of the corpus, counted."
    from test_evaluate import _prose
    c = corpus.labels.value_counts()
    claim = f"lopsided ({c.iloc[0]:,} {c.index[0]} against {c.iloc[-1]:,} {c.index[-1]})"
    assert claim in _prose('02_augment'), claim
