"Metrics against hand computations, and which protocols leak: protocol 1 does, protocols 2 and 3 must not."
import numpy as np, pandas as pd, pytest, torch

from mp_cnn.evaluate import (accuracy, confusion_matrix, per_class, expected_calibration_error, scores, protocol_splits, BASELINES,
                             search_classifier, knn_classifier, logreg_classifier, evaluate, summarise, timed, LOSO_SOURCES)
from mp_cnn.preprocess import DEFAULT_STEPS
from mp_cnn.train import macro_f1
from mp_cnn.models import MODEL_NAMES


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
    assert scores([0, 1, 1], [0, 0, 1], P)['ece'] == pytest.approx(0.4)     # ECE from P's top class, not from y_pred


@pytest.fixture(scope='module')
def corpus(shared):
    from mp_cnn.corpus import load_corpus
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
    for name, clf in [('s', search_classifier(DEFAULT_STEPS)), ('k', knn_classifier()), ('l', logreg_classifier(steps=20))]:
        row, = evaluate(clf, sp, 'group', name)
        assert 0.5 < row['accuracy'] <= 1 and row['n_test'] + row['n_train'] == 400
    df = pd.DataFrame([dict(model='m', protocol='loso', held_out=s, accuracy=a, macro_f1=a, profile='cpu', seed=0, commit='x',
                            hardware='h') for s, a in [('a', 0.5), ('b', 1.0)]])
    s = summarise(df)
    assert s.accuracy.item() == 0.75 and s.n_splits.item() == 2
    assert s[['train_s', 'params', 'epochs']].isna().all(axis=None)      # not measured: empty, never the split count


def test_timed_reports_time_and_memory():
    "In a fresh process: after other tests, freed memory can stay resident and be reused, so the RSS would not grow at all."
    import subprocess, sys
    code = ("import time, numpy as np\nfrom mp_cnn.evaluate import timed\n"
            "def hold(mb, s):\n    a = np.ones(mb * 2**20 // 8); time.sleep(s); return a.sum()\n"
            "out, dt, mb = timed(hold, 64, 0.1)\n"
            "assert out == 64 * 2**20 // 8\n"
            "assert 0.1 <= dt < 5, dt                 # it slept 0.1 s\n"
            "assert 48 <= mb <= 256, mb               # it wrote 64 MiB and held them while the 2 ms sampler ran\n"
            "_, _, mb0 = timed(hold, 0, 0.05)\n"
            "assert mb0 < 16, mb0\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


# ---- Chapter 5's prose against results/: every figure below is typed in the notebook's text; here it is recomputed
# from the CSVs, so a rerun that moves a number fails this test until the prose is updated.
import json, re
from pathlib import Path
from mp_cnn.evaluate import protocol_table

ROOT = Path(__file__).resolve().parents[1]


def _prose(nb='05_evaluate'):
    cells = json.loads((ROOT/'nbs'/f'{nb}.ipynb').read_text())['cells']
    return ' '.join(' '.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown').split())


def _f(x, d=3): return f'{x:.{d}f}'


def _md_table(path, first_col):
    "Rows of the markdown tables in `path` as dicts, keyed by their first cell's first word."
    rows, head = {}, None
    for line in Path(path).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if not line.startswith('|') or cells[0].startswith('---'): continue
        if cells[0] == first_col: head = cells; continue
        rows[cells[0].split()[0]] = dict(zip(head, cells))
    return rows


@pytest.fixture(scope='module')
def res():
    return pd.concat([pd.read_csv(ROOT/f'results/{f}.csv') for f in ('cpu', 'gpu')])


def _claims(res):
    R = ROOT/'results'
    r = res.assign(held_out=res.held_out.fillna(''))
    def row(m, prof, proto, src=''): return r[(r.model == m) & (r.profile == prof) & (r.protocol == proto) & (r.held_out == src)].iloc[0]
    def loso(m, prof, src=None):
        d = r[(r.model == m) & (r.profile == prof) & (r.protocol == 'loso')]
        return d.accuracy.mean() if src is None else d[d.held_out == src].accuracy.item()
    g = lambda m, prof: row(m, prof, 'group')
    out = []
    # seeds
    sd = pd.read_csv(R/'seeds.csv').assign(held_out=lambda d: d.held_out.fillna('group'))
    ps = sd.pivot_table(index='seed', columns='held_out', values='accuracy')
    ps['mean'] = ps[list(LOSO_SOURCES)].mean(axis=1)
    out.append(f"spread by {_f(ps.group.std())} on the group split and {_f(ps['mean'].std())} on the LOSO mean, "
               f"{_f(ps.primpke_2018.std(), 2)} on the smallest lab (Primpke)")
    # group split
    for m in ('vgg16_1d', 'lenet_1d', 'alexnet_1d', 'resnet34_1d'):
        out.append(f"{m} {_f(g(m, 'gpu').accuracy)} / {_f(g(m, 'gpu').macro_f1)}")
    for m in ('search_default', 'search_openspecy', 'logreg'):
        out.append(f"{_f(g(m, 'cpu').accuracy)} / {_f(g(m, 'cpu').macro_f1)} (")
    best = max(('vgg16_1d', 'lenet_1d', 'alexnet_1d', 'resnet34_1d'), key=lambda m: g(m, 'gpu').accuracy)
    out.append(f"accuracy >= 0.97 missed by {_f(0.97 - g(best, 'gpu').accuracy)} (best, {best})")
    met = [m for m in MODEL_NAMES if (r[(r.model == m) & (r.protocol == 'group')].macro_f1 >= 0.93).any()]
    out.append(f"macro-F1 >= 0.93 met by {met[0]} alone" if len(met) == 1 else f"macro-F1 >= 0.93 met by {met}")
    # LOSO
    l1 = loso('lenet_1d', 'gpu')
    out += [f"lenet_1d (`gpu` profile) has the best mean of every method: {_f(l1)} on the H200 "
            f"({_f(ps['mean'].mean())} +- {_f(ps['mean'].std())} over seeds 0-2",
            f"against {_f(loso('search_default', 'cpu'))} for search with the DEFAULT pipeline and {_f(loso('search_openspecy', 'cpu'))} for Open Specy's"]
    trio = lambda s: (_f(loso('lenet_1d', 'gpu', s)), _f(loso('search_default', 'cpu', s)), _f(loso('search_openspecy', 'cpu', s)))
    out += ["Kedzierski ({} vs {} / {})".format(*trio('kedzierski_2019')), "Primpke ({} vs {} / {})".format(*trio('primpke_2018')),
            "MicroplastiX ({} vs {} / ".format(*trio('microplastix')), "{})".format(trio('microplastix')[2]),
            "Villegas-Camacho ({} vs {} / {})".format(*trio('villegas_camacho_2024')),
            f"FLOPP ({trio('frond_2021')[0]} on the H200, {_f(ps.frond_2021.mean())} +- {_f(ps.frond_2021.std())} over the seeds, vs {trio('frond_2021')[1]} / {trio('frond_2021')[2]})",
            f"missed by {_f(0.92 - l1)}"]
    tab = protocol_table(res).round(3)
    big1 = tab.loc[[(m, 'gpu') for m in ('alexnet_1d', 'vgg16_1d', 'resnet34_1d')], 'loso acc']
    two = tab.loc[[(m, 'gpu') for m in ('lenet_2d', 'alexnet_2d', 'vgg16_2d', 'resnet34_2d')], 'loso acc']
    out += [f"({_f(big1.min())}-{_f(big1.max())})", f"worse ({_f(two.min())}-{_f(two.max())})"]
    cost = [loso(m + '_1d', 'gpu') - loso(m + '_2d', 'gpu') for m in ('lenet', 'alexnet', 'vgg16', 'resnet34')]
    flopp2 = [loso(m + '_2d', 'gpu', 'frond_2021') for m in ('lenet', 'alexnet', 'vgg16', 'resnet34')]
    out += [f"cost {_f(min(cost), 2)}-{_f(max(cost), 2)} against each one's 1-D twin, most on FLOPP ({_f(min(flopp2), 2)}-{_f(max(flopp2), 2)})"]
    # what moved it
    before = pd.read_csv(R/'cpu_before_views.csv'); before = before[(before.model == 'lenet_1d') & (before.protocol == 'loso')].accuracy.mean()
    lc = loso('lenet_1d', 'cpu')
    out += [f"from {_f(before)} to {_f(lc)}", f"added {_f(l1 - lc)} more ({_f(l1)}) and {_f(g('lenet_1d', 'gpu').accuracy - g('lenet_1d', 'cpu').accuracy)} on the group split "
            f"({_f(g('lenet_1d', 'cpu').accuracy)} -> {_f(g('lenet_1d', 'gpu').accuracy)})"]
    # leaky
    lk = lambda m, prof: row(m, prof, 'leaky')
    out += [f"search {_f(g('search_default', 'cpu').accuracy)} -> {_f(lk('search_default', 'cpu').accuracy)}, "
            f"lenet_1d (`gpu`) {_f(g('lenet_1d', 'gpu').accuracy)} -> {_f(lk('lenet_1d', 'gpu').accuracy)}"]
    cnns = [m for m in r[(r.protocol == 'leaky') & (r.profile == 'cpu')].model.unique() if m not in BASELINES]
    rise = [lk(m, 'cpu').macro_f1 - g(m, 'cpu').macro_f1 for m in cnns]
    out += [f"rises by {_f(min(rise), 2)}-{_f(max(rise), 2)}",
            f"resnet34_1d {_f(g('resnet34_1d', 'cpu').macro_f1)} -> {_f(lk('resnet34_1d', 'cpu').macro_f1)}, "
            f"resnet34_2d {_f(g('resnet34_2d', 'cpu').macro_f1)} -> {_f(lk('resnet34_2d', 'cpu').macro_f1)}"]
    # speed
    fw = pd.read_csv(R/'speed_cpu_full_width.csv').set_index('method')
    search_prep = fw.loc['library search (DEFAULT)', 'spectra_per_s_with_prep'], fw.loc['library search (OPEN_SPECY)', 'spectra_per_s_with_prep']
    out += [f"classifies {fw.loc['lenet_1d', 'spectra_per_s'] / 1000:.1f}k spectra/s, {fw.loc['lenet_1d', 'x_search_default']:.1f}x DEFAULT search "
            f"and {fw.loc['lenet_1d', 'x_search_openspecy']:.1f}x Open Specy",
            f"({fw.loc['lenet_1d', 'spectra_per_s_with_prep'] / search_prep[0]:.1f}x / {fw.loc['lenet_1d', 'spectra_per_s_with_prep'] / search_prep[1]:.1f}x with preprocessing"]
    sp = pd.read_csv(R/'speed.csv').set_index('method')
    big = sp.loc[[m for m in sp.index if m in MODEL_NAMES and not m.startswith('lenet')], 'x_search_default']
    out += [f"({_f(big.min(), 2)}x-{_f(big.max(), 2)}x)"]
    gs = pd.read_csv(R/'speed_gpu.csv').set_index('method')
    cn = gs.loc[[m for m in gs.index if m in MODEL_NAMES]]
    wp = cn.spectra_per_s_with_prep / gs.loc['library search (DEFAULT)', 'spectra_per_s_with_prep']
    out += [f"{cn.x_search_default.min():.1f}x-{cn.x_search_default.max():.1f}x faster than search", f"{wp.min():.1f}x-{wp.max():.1f}x with the CPU preprocessing"]
    # augmentation ablation (results/augment_ablation.md)
    ab = _md_table(R/'augment_ablation.md', '')
    out += [f"lifts the cpu-profile lenet_1d from {ab['C']['SNR 10']} to {ab['D']['SNR 10']}",
            f"costs {float(ab['C']['nothing < 1250']) - float(ab['D']['nothing < 1250']):.2f} on spectra cut below 1250"]
    # LOSO errors: how many of each held-out lab's spectra lenet_1d (gpu) got wrong
    for s in ('villegas_camacho_2024', 'microplastix'):
        x = row('lenet_1d', 'gpu', 'loso', s)
        out.append(f"{round((1 - x.accuracy) * x.n_test)} of {x.n_test:,} wrong")
    # hybrid
    hy = pd.read_csv(R/'hybrid.csv').assign(held_out=lambda d: d.held_out.fillna(''))
    t = hy[hy.shipped_threshold].threshold.iloc[0]
    h = lambda thr, s=None: (hy[(hy.protocol == 'loso') & (hy.threshold == thr)].accuracy.mean() if s is None
                             else hy[(hy.threshold == thr) & (hy.held_out == s)].accuracy.item())
    out += [f"lifts the LOSO mean by only {_f(h(t) - h(0.0))} ({_f(h(0.0))} -> {_f(h(t))};"]
    for name, s in (('Villegas-Camacho', 'villegas_camacho_2024'), ('MicroplastiX', 'microplastix'), ('Kedzierski', 'kedzierski_2019'), ('Primpke', 'primpke_2018')):
        out.append(f"{name} ({_f(h(0.0, s))} -> {_f(h(t, s))})")
    out.append(f"(measured above: +{_f(h(t) - h(0.0))})")
    return out


def test_chapter5_prose_figures_match_results(res):
    text = _prose()
    missing = [c for c in _claims(res) if c not in text]
    assert not missing, 'chapter 5 prose disagrees with results/ (update the text):\n' + '\n'.join(missing)


def test_chapter5_prose_corpus_counts(corpus):
    text, m = _prose(), corpus.meta
    pvc, ps = m[m.label == 'PVC'], m[m.label == 'PS']
    assert f"{(pvc.source == 'villegas_camacho_2024').sum()} of the corpus's {len(pvc)} PVC spectra are Villegas-Camacho's" in text
    assert f"{len(pvc) - (pvc.source == 'villegas_camacho_2024').sum()} to learn PVC from" in text
    assert f"{ps.source.isin(['microplastix', 'villegas_camacho_2024']).sum()} of {len(ps)} PS come from MicroplastiX and Villegas-Camacho" in text


def _outputs(cid, nb='05_evaluate'):
    "The text outputs (stdout and text/plain) of notebook cell `cid`."
    c = next(c for c in json.loads((ROOT/'nbs'/f'{nb}.ipynb').read_text())['cells'] if c.get('id') == cid)
    out = []
    for o in c.get('outputs', []):
        if o.get('name') == 'stdout': out.append(''.join(o['text']))
        elif 'text/plain' in o.get('data', {}): out.append(''.join(o['data']['text/plain']))
    return '\n'.join(out)


def _rows(text):
    "Lines of a printed DataFrame as (label words, numbers)."
    out = []
    for line in text.splitlines():
        nums = re.findall(r'(?<![\w.])-?\d+\.?\d*(?![\w.])', line)
        words = [w for w in line.split() if not re.fullmatch(r'-?\d+\.?\d*', w)]
        if nums: out.append((words, [float(n) for n in nums]))
    return out


def test_chapter5_analysis_prose_matches_its_outputs():
    "The figures of 'Where it breaks' and 'Bands' come from cells of the notebook (the inline run), not from results/: checked against those cells' stored outputs."
    text = _prose()
    acc, f1 = map(float, re.search(r'accuracy ([\d.]+), macro-F1 ([\d.]+)', _outputs('41faa559')).groups())
    claims = [f"trained here: {_f(acc)} / {_f(f1)}"]
    pc = {w[0]: n for w, n in _rows(_outputs('41faa559').split('class', 1)[1]) if w}
    small = [pc[c][0] for c in ('CA', 'PA', 'PU', 'rubber', 'other_plastic')]
    claims += [f"(precision {_f(min(small), 2)}-{_f(max(small), 2)} for CA, PA, PU, rubber and other_plastic against "
               f"{_f(min(pc[c][4] for c in ('CA', 'PA', 'PU', 'rubber', 'other_plastic')), 2)} for search; PS {_f(pc['PS'][0], 2)} against {_f(pc['PS'][4], 2)})"]
    st = _rows(_outputs('4224ba59'))          # none, SNR 100/30/10/3, low end 750/1250: [level?, lenet, openspecy, default]
    none, snr30, snr10, low1250 = st[0][1], st[2][1][1:], st[3][1][1:], st[6][1][1:]
    ab = _md_table(ROOT/'results'/'augment_ablation.md', '')
    claims += [f"Noise at SNR 30 costs it {_f(none[0] - snr30[0])} ({_f(snr30[0])}; the first recipe fell to {float(ab['A']['SNR 30']):.2f})",
               f"at SNR 10 it drops to {_f(snr10[0])} while search holds {_f(min(snr10[1:]))}-{_f(max(snr10[1:]))}",
               f"below 1250 cm-1 it keeps {_f(low1250[0])}, above both searches ({_f(low1250[1])}, {_f(low1250[2])})"]
    env = {tuple(w): n for w, n in _rows(_outputs('2666ae0c'))}
    claims += [f"Environmental particles {_f(env[('True',)][0])} against virgin {_f(env[('False',)][0])}"]
    mx, state = {True: [], False: []}, None
    for w, n in _rows(_outputs('3ba0eceb')):
        if w and w[0] in ('True', 'False'): state = w[0] == 'True'
        mx[state].append(n[-4])               # lenet_1d accuracy (columns: days, acc, n, acc, n)
    claims += [f"biofilm {_f(min(mx[True]), 2)}-{_f(max(mx[True]), 2)} against {_f(min(mx[False]), 2)}-{_f(max(mx[False]), 2)} clean"]
    bands = {}
    for w, n in _rows(_outputs('cdbf0611')): bands.setdefault(w[0], []).append(n[1:])      # [top_cm1, nearest, distance]
    pe = sorted((b for b in bands['PE'] if b[2] <= 10), key=lambda b: b[0])
    claims += [f"C-H stretches ({int(pe[0][0])} and {int(pe[1][0])} cm-1, {int(pe[0][2])} and {int(pe[1][2])} cm-1 from {int(pe[0][1])}/{int(pe[1][1])})",
               f"between them ({int(next(b[0] for b in bands['PE'] if b[2] > 10))}:",
               "C=O ({}) and C-O ({})".format(*[int(b[0]) for b in bands['PET'] if b[2] <= 10]),
               "CH3 bend ({}, for {}) and C-H stretch ({})".format(int(bands['PP'][2][0]), int(bands['PP'][2][1]), int(bands['PP'][1][0])),
               "ring mode ({}, for {}) and at the low end of the grid ({}, {})".format(int(bands['PS'][2][0]), int(bands['PS'][2][1]), int(bands['PS'][0][0]), int(bands['PS'][1][0]))]
    missing = [c for c in claims if c not in text]
    assert not missing, "chapter 5 prose disagrees with the notebook's own analysis outputs (update the text):\n" + '\n'.join(missing)


def test_ablation_named_accuracy_leaves_out_unnamed_classes():
    import importlib.util, pathlib
    spec = importlib.util.spec_from_file_location('ablate_loso', pathlib.Path(__file__).parents[1]/'scripts'/'ablate_loso.py')
    ab = importlib.util.module_from_spec(spec); spec.loader.exec_module(ab)
    classes = ['PE', 'PP', 'non_plastic', 'other_plastic']
    y, pred = np.array([0, 1, 2, 3, 0]), np.array([0, 0, 2, 0, 0])
    test_close = lambda a, b: abs(a - b) < 1e-12
    acc, n = ab.named_accuracy(y, pred, classes)
    assert n == 3 and test_close(acc, 2 / 3)


def _readme_claims(res):
    "The README's results table and the paragraph under it, recomputed from results/ as chapter 5's prose is."
    R = ROOT/'results'
    r = res.assign(held_out=res.held_out.fillna(''))
    g = lambda m, prof: r[(r.model == m) & (r.profile == prof) & (r.protocol == 'group')].iloc[0]
    lk = lambda m, prof: r[(r.model == m) & (r.profile == prof) & (r.protocol == 'leaky')].iloc[0]
    def loso(m, prof, src=None):
        d = r[(r.model == m) & (r.profile == prof) & (r.protocol == 'loso')]
        return d.accuracy.mean() if src is None else d[d.held_out == src].accuracy.item()
    fw, sp = (pd.read_csv(R/f).set_index('method') for f in ('speed_cpu_full_width.csv', 'speed.csv'))
    k = lambda v: f"{v / 1000:.1f}k"
    tab = protocol_table(res)      # the table chapter 5 shows: accuracies as `summarise` rounds them
    def row(label, m, prof, speed, bold_group=False, bold_loso=False):
        t = tab.loc[(m, prof)]
        acc, lo = f"{_f(t['group acc'])} / {_f(t['group F1'])}", _f(t['loso acc'])
        return (f"| {label} | {f'**{acc}**' if bold_group else acc} | {f'**{lo}**' if bold_loso else lo} | {speed} |")
    width = lambda m: f"{k(sp.loc[m, 'spectra_per_s'])} at width 0.25 ({sp.loc[m, 'x_search_default']:.2f}x)"
    two = [m for m in MODEL_NAMES if m.endswith('_2d')]
    best2 = max(two, key=lambda m: loso(m, 'gpu'))
    ds, os_ = fw.loc['library search (DEFAULT)'], fw.loc['library search (OPEN_SPECY)']
    out = [row('**lenet_1d (the shipped network)**', 'lenet_1d', 'gpu', f"{k(fw.loc['lenet_1d', 'spectra_per_s'])} ({fw.loc['lenet_1d', 'x_search_default']:.1f}x / "
               f"{fw.loc['lenet_1d', 'x_search_openspecy']:.1f}x)", bold_loso=True),
           row('vgg16_1d', 'vgg16_1d', 'gpu', width('vgg16_1d'), bold_group=True),
           row('resnet34_1d', 'resnet34_1d', 'gpu', width('resnet34_1d')), row('alexnet_1d', 'alexnet_1d', 'gpu', width('alexnet_1d')),
           row(f'best 2-D CNN ({best2})', best2, 'gpu', width(best2)),
           row('library search, DEFAULT pipeline', 'search_default', 'cpu', k(ds.spectra_per_s)),
           row('library search, Open Specy pipeline', 'search_openspecy', 'cpu', k(os_.spectra_per_s)),
           row('logistic regression (torch)', 'logreg', 'cpu', '')]
    sd = pd.read_csv(R/'seeds.csv').assign(held_out=lambda d: d.held_out.fillna('group'))
    grp = sd[sd.held_out == 'group']
    lm = sd[sd.held_out != 'group'].groupby('seed').accuracy.mean()
    out.append(f"group {_f(grp.accuracy.mean())} +- {_f(grp.accuracy.std())} / {_f(grp.macro_f1.mean())} +- {_f(grp.macro_f1.std())}, "
               f"LOSO mean {_f(lm.mean())} +- {_f(lm.std())}")
    l1 = loso('lenet_1d', 'gpu')
    out.append(f"LOSO mean >= 0.92 missed by {_f(0.92 - l1)} (lenet_1d {_f(l1)};")
    for name, s in (('MicroplastiX', 'microplastix'), ('Villegas-Camacho', 'villegas_camacho_2024')):
        out.append(f"{name} ({_f(loso('lenet_1d', 'gpu', s))} vs {_f(loso('search_default', 'cpu', s))})")
    best = max(('vgg16_1d', 'lenet_1d', 'alexnet_1d', 'resnet34_1d'), key=lambda m: g(m, 'gpu').accuracy)
    out.append(f"accuracy >= 0.97 missed by {_f(0.97 - g(best, 'gpu').accuracy)} (best {best} {_f(g(best, 'gpu').accuracy)}), "
               f"macro-F1 >= 0.93 met by vgg16_1d ({_f(g('vgg16_1d', 'gpu').macro_f1)}), missed by lenet_1d ({_f(g('lenet_1d', 'gpu').macro_f1)})")
    lp = fw.loc['lenet_1d', 'spectra_per_s_with_prep']
    out.append(f"met by lenet_1d ({fw.loc['lenet_1d', 'x_search_default']:.1f}x / {fw.loc['lenet_1d', 'x_search_openspecy']:.1f}x; "
               f"{lp / ds.spectra_per_s_with_prep:.1f}x / {lp / os_.spectra_per_s_with_prep:.1f}x with preprocessing counted")
    gs = pd.read_csv(R/'speed_gpu.csv').set_index('method')
    cn = gs.loc[[m for m in gs.index if m in MODEL_NAMES]]
    out.append(f"all eight classify {cn.x_search_default.min():.0f}-{cn.x_search_default.max():.0f}x faster than search")
    cost = [loso(m + '_1d', 'gpu') - loso(m + '_2d', 'gpu') for m in ('lenet', 'alexnet', 'vgg16', 'resnet34')]
    out.append(f"by {_f(min(cost), 2)}-{_f(max(cost), 2)} LOSO")
    out.append(f"(library search {_f(g('search_openspecy', 'cpu').accuracy)} -> {_f(lk('search_openspecy', 'cpu').accuracy)}, "
               f"lenet_1d {_f(g('lenet_1d', 'gpu').accuracy)} -> {_f(lk('lenet_1d', 'gpu').accuracy)})")
    return out


def test_readme_results_match_results(res):
    "The README's results table and the paragraph under it quote results/: recomputed here so that a rerun cannot leave them stale."
    text = ' '.join((ROOT/'README.md').read_text().split())
    missing = [c for c in _readme_claims(res) if ' '.join(c.split()) not in text]
    assert not missing, 'the README disagrees with results/ (update its Results section):\n' + '\n'.join(missing)


def test_chapter5_inline_training_time_quotes_seeds():
    "Chapter 5 trains the shipped recipe inline on the group split: the time it quotes is seed 0's group row of `results/seeds.csv` (the same run on this CPU)."
    s = pd.read_csv(ROOT/'results'/'seeds.csv')
    t = s[(s.protocol == 'group') & (s.seed == 0) & (s.model == 'lenet_1d') & (s.profile == 'gpu')].train_s.item()
    claim = f"trained here on the group split's training part: {t:.0f} s on two CPU cores for seed 0 (`train_s` in `results/seeds.csv`)"
    assert claim in _prose(), claim


def _script(name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, ROOT/'scripts'/f'{name}.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    return m


def test_results_readme_matches_results(res, corpus):
    "results/README.md: its generated sections are what the scripts write now, and every figure typed around them is recomputed from the CSVs."
    R = ROOT/'results'
    raw = (R/'README.md').read_text()
    text = ' '.join(raw.split())
    assert _script('results_tables').tables() == _script('results_tables').section(raw), 'run python scripts/results_tables.py'
    al = _script('ablate_loso')
    ran = pd.read_csv(R/'loso_ablation.csv'); df = al.with_seed_file(ran); t = al.table(df)
    parts = [al.header(ran, df), al.md(t), al.prose(df, t), al.spread(ran), al.quality_line(pd.read_csv(R/'corpus_quality.csv'))]
    assert all(p in raw for p in parts), 'run python scripts/ablate_loso.py --readme (its recall tables need runs/loso_ablation)'
    claims = [f"({len(corpus):,} labelled spectra, {corpus.labels.nunique()} classes)"]
    r = res.assign(c=res.commit.str[:7])
    cpu, gpu = r[r.profile == 'cpu'], r[r.profile == 'gpu']
    at = lambda ms: cpu[cpu.model.isin(ms)].c.unique().tolist()
    big = ['alexnet_2d', 'resnet34_2d', 'alexnet_1d', 'vgg16_2d', 'resnet34_1d', 'vgg16_1d']
    assert len(at(BASELINES)) == len(at(['lenet_1d', 'lenet_2d'])) == len(at(big)) == 1
    claims += [f"The baselines ran at commit {at(BASELINES)[0]}", f"the LeNets at {at(['lenet_1d', 'lenet_2d'])[0]}",
               f"at {at(big)[0]} ({cpu[cpu.model.isin(big)].date.min()[:10]})"]
    order = gpu.c.drop_duplicates().tolist()
    claims += [f"Commits {order[0]} (first {(gpu.c == order[0]).sum()} rows) and {order[1]}"]
    e = pd.read_csv(R/'speed_end_to_end.csv', dtype={'commit': str})   # a hash like 20e9161 would read as a float
    loads = [float(x.split('/')[0]) for l in e.load for x in l.split(' -> ')]
    claims += [f"Current rows: code {e.commit.iloc[0]}, `--n {e[e.part == 'grid'].n.iloc[0]} --reps 3`, nothing else running "
               f"(1-minute load {min(loads):.1f}-{max(loads):.1f} over the run"]
    b = pd.read_csv(R/'cpu_before_views.csv'); b1 = b[b.model == 'lenet_1d']; bg = b1[b1.protocol == 'group'].iloc[0]
    claims += [f"commits {', '.join(b.commit.str[:7].unique())}), superseded", f"lenet_1d then scored {_f(bg.accuracy)} / {_f(bg.macro_f1)} on the group split "
               f"and {_f(b1[b1.protocol == 'loso'].accuracy.mean())} leaving one source out"]
    sd = pd.read_csv(R/'seeds.csv').assign(held_out=lambda d: d.held_out.fillna('group'))
    grp, lm = sd[sd.held_out == 'group'], sd[sd.held_out != 'group'].groupby('seed').accuracy.mean()
    h200 = lambda proto: gpu[(gpu.model == 'lenet_1d') & (gpu.protocol == proto)].accuracy.mean()
    claims += [f"group accuracy {_f(grp.accuracy.mean())} +- {_f(grp.accuracy.std())}, LOSO mean {_f(lm.mean())} +- {_f(lm.std())} "
               f"(seed 0: {_f(grp[grp.seed == 0].accuracy.item())} and {_f(lm[0])}, against {_f(h200('group'))} and {_f(h200('loso'))} on the H200)"]
    hy = pd.read_csv(R/'hybrid.csv'); th = hy[hy.shipped_threshold].threshold.iloc[0]
    hl = hy[hy.protocol == 'loso'].groupby('threshold').accuracy.mean()
    claims += [f"at the shipped threshold ({th:.3f}) the LOSO mean moves from {_f(hl[0.0])} to {_f(hl[th])} only"]
    o = pd.read_csv(R/'open_set.csv'); oc = pd.read_csv(R/'open_set_curve.csv')
    folds = lambda p: o[o.protocol == p].fold.nunique()
    n_unknown = lambda p: int(o[(o.protocol == p) & (o.fold != 'shipped')].n_unknown.iloc[0])
    claims += [f"Made by `scripts/open_set.py` (chapter 5a, `nbs/05a_openset.ipynb`, issue 11) at commit {o.commit.iloc[0][:7]}, seed {o.seed.iloc[0]}",
               f"leave-classes-out ({folds('leave_classes_out')} folds), leave-one-source-out ({folds('leave_one_source_out')} folds",
               f"Primpke's {n_unknown('never_a_plastic')} natural materials", f"blanks ({n_unknown('blanks')} `blank_spectra`) and the {n_unknown('foreign_files')} readable foreign files",
               f"at calibration acceptances {oc.acceptance_target.min():g}-{oc.acceptance_target.max():g}"]
    k = corpus.labels.nunique()
    n = [m for m in (test.labels.nunique() for _, _, test in protocol_splits(corpus, 'loso')) if m < k]
    words = {2: 'two', 3: 'three', 4: 'four', 5: 'five'}
    claims += [f"where {words[len(n)]} of the {words[len(LOSO_SOURCES)]} labs have only {min(n)}-{max(n)} of the {k} classes"]
    sp = pd.read_csv(R/'speed.csv')
    claims += [f"{int(sp.n_queries[0]):,} query spectra drawn from the corpus, the group split's {int(sp.library.max()):,} training spectra"]
    missing = [c for c in claims if c not in text]
    assert not missing, 'results/README.md disagrees with the CSVs (update the text):\n' + '\n'.join(missing)
    # the LOSO section's per-class tables come from git-ignored fold predictions; their counts can still be checked against the corpus
    from mp_cnn.augment import split_by_source
    from mp_cnn.recipe import signal_score
    thr = pd.read_csv(R/'corpus_quality.csv').threshold.iloc[0]
    for held in ('villegas_camacho_2024', 'microplastix'):
        _, test = split_by_source(corpus, held)
        rec = _table_after(raw, f"Recall per class, {held} held out")
        assert {c: int(r['n']) for c, r in rec.items()} == test.labels.value_counts().to_dict(), held
        low = signal_score(test) < thr
        lt = _table_after(raw, f"{held}'s own spectra scoring below {thr:g} ({low.sum()})")
        assert {c: int(r['true']) for c, r in lt.items() if int(r['true'])} == test.labels[low].value_counts().to_dict(), held


def _table_after(text, heading):
    "The first markdown table after the line that starts with `heading`, as {first cell: row dict}."
    lines = text.split(heading, 1)[1].splitlines()[1:]
    lines = lines[next(i for i, l in enumerate(lines) if l.startswith('|')):]
    rows = [[c.strip() for c in l.strip().strip('|').split('|')] for l in lines[:next((i for i, l in enumerate(lines) if not l.startswith('|')), len(lines))]]
    return {r[0]: dict(zip(rows[0], r)) for r in rows[2:]}


def test_speed_query_counts_quoted():
    "Chapters 3 and 5 and the README say how many queries the speed tables timed: the `n_queries` of every speed CSV."
    n = {int(pd.read_csv(ROOT/'results'/f'{f}.csv').n_queries.iloc[0]) for f in ('speed', 'speed_cpu_full_width', 'speed_gpu')}
    assert len(n) == 1
    n = f'{n.pop():,}'
    claims = [(_prose('05_evaluate'), f"### Speed {n} query spectra drawn from the corpus"), (_prose('05_evaluate'), f"Open Specy search on the same {n} queries"),
              (_prose('03_models'), f"(`results/speed.csv`, {n} queries against the training library"),
              (' '.join((ROOT/'README.md').read_text().split()), f"the networks alone on {n} queries")]
    missing = [c for t, c in claims if c not in t]
    assert not missing, 'the prose disagrees with the speed CSVs (update the text):\n' + '\n'.join(missing)


def _ablate_loso():
    import importlib.util, pathlib
    spec = importlib.util.spec_from_file_location('ablate_loso', pathlib.Path(__file__).parents[1]/'scripts'/'ablate_loso.py')
    ab = importlib.util.module_from_spec(spec); spec.loader.exec_module(ab)
    return ab


def test_stack_class_top_r_agrees_with_library_search():
    from mp_cnn.search import library_search
    ab, rng = _ablate_loso(), np.random.default_rng(0)
    L, Q, codes = rng.normal(size=(60, 40)), rng.normal(size=(25, 40)), rng.integers(0, 4, 60)
    R = ab.class_top_r(Q, L, codes, 5, chunk=7)
    lab, r = library_search(Q, L, codes)
    assert (R.argmax(1) == lab[:, 0]).all() and np.allclose(R.max(1), r[:, 0], atol=1e-5)
    assert (R[:, 4] == -1).all()                                     # a class with no reference scores -1
    c = 2; assert np.allclose(R[:, c], library_search(Q, L[codes == c], np.zeros((codes == c).sum()))[1][:, 0], atol=1e-5)


def test_stack_stackers_follow_the_informative_feature():
    # two feature blocks: a noisy one (CNN stand-in) and one that carries the class (search stand-in); both stackers must lean on the second
    ab, rng, k, n = _ablate_loso(), np.random.default_rng(1), 4, 800
    y = rng.integers(0, k, n)
    good = np.eye(k)[y] * 2 + rng.normal(0, .5, (n, k))
    P = np.exp(rng.normal(size=(n, k))); P /= P.sum(1, keepdims=True)
    R = np.tanh(good / 2)
    logp, z = ab.stack_features(P, R)
    for tied in (False, True):
        f = ab.fit_stacker(logp, z, y, k, tied=tied)
        assert (f(logp, z).argmax(1) == y).mean() > 0.9 > (P.argmax(1) == y).mean()
    w = ab.fit_stacker(logp, z, y, k, tied=True).weights
    assert abs(w[0]) < w[1]
    r = ab.fit_ratio(logp, z, y)                                     # the accuracy-fitted weight leans on it too
    assert r.weights[1] > 1 and (r(logp, z).argmax(1) == y).mean() > 0.9 and np.allclose(r(logp, z).sum(1), 1)
    assert ab.fit_ratio(z, logp, y).weights[1] < 1                   # and away from it when the blocks swap places
