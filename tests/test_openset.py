"Open-set rule and evidence (nbs/05a_openset.ipynb): a tiny network trained here on polymers only, and the shipped model's weights."
import numpy as np
import pandas as pd
import pytest
import torch
from mp_cnn.corpus import load_corpus
from mp_cnn.preprocess import Pipeline, DEFAULT_STEPS
from mp_cnn.augment import split_groups
from mp_cnn.models import get_model
from mp_cnn.train import Trainer
from mp_cnn.openset import (OpenSetRule, fit_open_set, build_library, load_library, logits_features, open_set_scores,
                            thresholds, unit_rows)
from mp_cnn.augment import blank_spectra

NATURAL = ['animal fur', 'plant fibres', 'chitin', 'coal', 'charcoal', 'sand']

def prep(s): return np.asarray(Pipeline.from_config(DEFAULT_STEPS)(s).X, np.float32)

def per_class(sp, n, seed=0):
    "At most `n` spectra of each class of `sp`."
    idx = sp.meta.reset_index(drop=True).groupby('label').sample(frac=1, random_state=seed).groupby('label').head(n).index
    return sp[np.sort(idx.to_numpy())]

@pytest.fixture(scope='module')
def corpus(shared): return load_corpus()

@pytest.fixture(scope='module')
def tiny(corpus):
    "(model, classes, rule, fit, cal, test): a small lenet_1d (width 0.25, 15 epochs, no augmentation) that never saw a non-plastic; its rule from its fit and calibration groups."
    sp = corpus[(corpus.labels != 'non_plastic').to_numpy()]
    train, test = split_groups(sp, 0.2, 0)
    fit, cal = split_groups(train, 0.2, 0)
    fit, cal = per_class(fit, 100), per_class(cal, 40)
    classes = sorted(fit.labels.unique())
    torch.manual_seed(0)
    net, threads = get_model('lenet_1d', len(classes), width=0.25), torch.get_num_threads()
    torch.set_num_threads(1)      # a small net trains fastest on one thread, and far faster on a busy machine
    try: Trainer(net, (prep(fit), pd.Categorical(fit.labels, categories=classes).codes), None, bs=64, lr=3e-3, wd=1e-2, seed=0, verbose=0).fit(15)
    finally: torch.set_num_threads(threads)
    return net.eval(), classes, fit_open_set(net, classes, fit, cal), fit, cal, per_class(test, 40)

def flagged(rule, model, X):
    return rule(X, *logits_features(model, X))

def test_non_polymer_held_out_is_flagged(tiny, corpus):
    "Primpke's mineral and carbon particles (sand, coal, charcoal), never trained on, are flagged, with a reason."
    model, classes, rule, *_ = tiny
    m = corpus.meta
    nat = corpus[((m.dataset == 'primpke_2018') & m.raw_label.isin(NATURAL)).to_numpy()]
    assert 'non_plastic' not in classes and len(nat) >= 60
    unk, why, ev = flagged(rule, model, prep(nat))
    print(f"natural materials flagged: {unk.mean():.2f} of {len(nat)}")
    mineral = nat.meta.raw_label.isin(['sand', 'coal', 'charcoal']).to_numpy()
    assert mineral.sum() == 8 and unk[mineral].all(), nat.meta.raw_label[mineral & ~unk].tolist()
    assert all(why[i] for i in np.flatnonzero(mineral)) and (ev.hqi[mineral] < 0.7).all()

def test_known_polymer_not_flagged(tiny):
    model, classes, rule, _, _, test = tiny
    t = test[test.labels.isin(['PE', 'PP', 'PET', 'PS']).to_numpy()]
    unk, why, _ = flagged(rule, model, prep(t))
    print(f"accepted {1 - unk.mean():.2f} of {len(t)}")
    assert 1 - unk.mean() >= 0.85 and all(w == '' for w, u in zip(why, unk) if not u)

def test_blanks_flagged(tiny):
    model, classes, rule, *_ = tiny
    unk, why, _ = flagged(rule, model, prep(blank_spectra(25)))
    assert unk.mean() >= 0.9, unk.mean()

def test_thresholds_from_calibration_only(tiny):
    model, classes, rule, fit, cal, _ = tiny
    Xc = prep(cal)
    S = open_set_scores(rule.stats, rule.library, Xc, *logits_features(model, Xc))
    assert rule.thr == thresholds(S, rule.method, 0.95)                       # the thresholds are quantiles of the calibration scores
    unk, _, _ = rule(Xc, *logits_features(model, Xc))
    assert 0.95 <= 1 - unk.mean() <= 0.97
    n = rule.method.split('+')[0]                                              # without the least typical tenth of them, a higher threshold
    assert thresholds(S.drop(S[n].nsmallest(len(S) // 10).index), rule.method, 0.95)[n] > rule.thr[n]
    assert 'unknown' not in ' '.join(OpenSetRule.fit.__code__.co_varnames)    # fit takes no unknowns to tune on

def test_library_round_trip(tiny, tmp_path):
    model, classes, rule, fit, cal, _ = tiny
    lib = rule.library
    assert lib.X.dtype == np.float16 and lib.meta['n'].sum() == len(fit) and set(lib.meta.licence) >= {'CC BY-SA 4.0'}
    lib.save(tmp_path); lib2 = load_library(tmp_path)
    np.testing.assert_array_equal(lib2.X, lib.X); pd.testing.assert_frame_equal(lib2.meta, lib.meta)
    Xc = prep(cal[:20])
    pd.testing.assert_frame_equal(lib2.evidence(Xc), lib.evidence(Xc))
    np.testing.assert_allclose(lib.match(Xc)[1], np.max(unit_rows(Xc) @ unit_rows(lib.X.astype(np.float32)).T, 1), atol=1e-5)
    rule.save(tmp_path); r2 = OpenSetRule.load(tmp_path)
    L, F = logits_features(model, Xc)
    assert r2.thr == rule.thr and (r2(Xc, L, F)[0] == rule(Xc, L, F)[0]).all()

@pytest.fixture(scope='module')
def shipped():
    from mp_cnn.classify import Classifier, pretrained_dir
    return Classifier.load(), OpenSetRule.load(pretrained_dir())

@pytest.mark.parametrize('folder,name,expected', [('openspecy/inst/extdata', 'ftir_ps.0', 'PS'), ('openspecy/inst/extdata', 'ftir_ldpe_soil.asp', 'PE'),
                                                  ('foreign_files', '2-BaSO4_0.SPA', None), ('foreign_files', 'HCL.SPC', None)])
def test_shipped_rule(shipped, shared, folder, name, expected):
    "The shipped model's rule: real polymer files from Open Specy are accepted, barium sulfate and HCl gas (SpectroChemPy test data) flagged."
    from mp_cnn.readers import read_spectra
    clf, rule = shipped
    X, flags = clf.prepare(read_spectra(shared/folder/name))
    L, F = logits_features(clf.model, X)
    unk, why, ev = rule(X, L, F)
    assert (flags == '').all() and len(X) == 1
    if expected: assert not unk[0] and clf.classes[L[0].argmax()] == expected and ev.hqi_label[0] >= rule.thr['hqi_pred']
    else: assert unk[0] and why[0].startswith('no ') and 'reference closer than r=' in why[0], why[0]
