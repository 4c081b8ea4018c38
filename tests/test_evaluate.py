"Metrics against hand computations, and which protocols leak: protocol 1 does, protocols 2 and 3 must not."
import numpy as np, pandas as pd, pytest, torch

from mp_cnn.evaluate import (accuracy, confusion_matrix, per_class, expected_calibration_error, scores, protocol_splits,
                             search_classifier, knn_classifier, logreg_classifier, evaluate, summarise, timed, LOSO_SOURCES)
from mp_cnn.preprocess import DEFAULT
from mp_cnn.train import macro_f1


def test_accuracy_and_confusion_by_hand():
    t, p = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0]
    assert accuracy(t, p) == pytest.approx(4 / 6)
    assert confusion_matrix(t, p).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert confusion_matrix([1], [1], n_classes=4).shape == (4, 4)
    assert np.isnan(accuracy([], []))


def test_macro_f1_and_per_class_by_hand():
    t, p = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0]
    # class 0: tp 1, fp 1, fn 1 -> 0.5; class 1: tp 1, fp 1, fn 0 -> 2/3; class 2: tp 2, fp 0, fn 1 -> 0.8
    assert macro_f1(t, p) == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    tab = per_class(t, p, ['a', 'b', 'c'])
    assert tab.loc['c', 'precision'] == 1.0 and tab.loc['c', 'recall'] == pytest.approx(0.667, abs=1e-3)
    assert tab.loc['b', 'f1'] == pytest.approx(0.667, abs=1e-3) and tab.support.tolist() == [2, 1, 3]


def test_ece_by_hand():
    # bin 0.9: two predictions, one right -> |0.5 - 0.9|; bin 0.6: one right -> |1 - 0.6|; weights 2/3 and 1/3
    P = [[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]]
    assert expected_calibration_error(P, [0, 1, 1]) == pytest.approx(2 / 3 * 0.4 + 1 / 3 * 0.4)
    assert expected_calibration_error(np.eye(3), [0, 1, 2]) == 0.0
    assert scores([0, 1, 1], [0, 0, 1], P)['ece'] >= 0


@pytest.fixture(scope='module')
def corpus(shared):
    from mp_cnn.data import load_corpus
    return load_corpus(data_dir=shared)


def test_group_protocol_has_no_sample_on_both_sides(corpus):
    (_, train, test), = protocol_splits(corpus, 'group', seed=0)
    assert len(train) + len(test) == len(corpus)
    assert not set(train.meta['group'].astype(str)) & set(test.meta['group'].astype(str))


def test_loso_protocol_keeps_held_out_source_out_of_training(corpus):
    splits = list(protocol_splits(corpus, 'loso'))
    assert [s for s, _, _ in splits] == list(LOSO_SOURCES)
    for s, train, test in splits:
        assert (test.meta['source'] == s).all() and not (train.meta['source'] == s).any()
        assert set(test.labels) <= set(train.labels)            # scored on the classes training has
        assert not set(train.meta['group'].astype(str)) & set(test.meta['group'].astype(str))


def test_leaky_protocol_does_leak(corpus):
    (_, train, test), = protocol_splits(corpus, 'leaky', seed=0, n_per_class=100)
    parent = lambda sp: set(sp.meta['parent'].astype(str))
    assert parent(train) & parent(test)                        # augmented copies of one spectrum on both sides
    assert set(train.meta['group'].astype(str)) & set(test.meta['group'].astype(str))


def test_baselines_run_on_a_small_split(corpus):
    sp = corpus[np.sort(np.random.default_rng(0).choice(len(corpus), 400, replace=False))]
    for name, clf in [('s', search_classifier(DEFAULT)), ('k', knn_classifier()), ('l', logreg_classifier(steps=20))]:
        row, = evaluate(clf, sp, 'group', name)
        assert 0.5 < row['accuracy'] <= 1 and row['n_test'] + row['n_train'] == 400
    df = pd.DataFrame([dict(model='m', protocol='loso', held_out=s, accuracy=a, macro_f1=a, profile='cpu', seed=0, commit='x',
                            hardware='h') for s, a in [('a', 0.5), ('b', 1.0)]])
    assert summarise(df).accuracy.item() == 0.75


def test_timed_reports_time_and_memory():
    out, dt, mb = timed(lambda: np.ones((2000, 2000)).sum())
    assert out == 4e6 and dt > 0 and mb >= 0
