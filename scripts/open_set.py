"""Open-set protocols of issue 11 (chapter 05a_openset): train one lenet_1d per fold, score every open-set rule, write results/open_set.csv.

    MP_CNN_DATA=../shared/data python scripts/open_set.py [--profile cpu] [--epochs N] [--train-only] [--folds lco,group,loso]

Folds: leave-classes-out (LCO: each of LCO_CLASSES held out in turn, group split of the rest), `group` (every class known: scores
the blanks, the foreign instrument files and nothing held out), leave-one-source-out (LOSO: the held-out lab's spectra of classes the
training part lacks are unknowns). In every fold the training part is split by physical sample into `fit` (trains the network and
builds the reference library) and `cal` (calibration: sets the thresholds at the target known acceptance); the unknowns never set
anything. Trained models are cached in .dev/open_set/ (never committed), so that rescoring costs seconds.
"""
import argparse, time, sys
from pathlib import Path
import numpy as np, pandas as pd

from mp_cnn.corpus import load_corpus
from mp_cnn.spectra import DEFAULT_GRID
from mp_cnn.download import data_folder
from mp_cnn.preprocess import DEFAULT_STEPS, Pipeline
from mp_cnn.augment import split_groups, split_by_source
from mp_cnn.evaluate import cnn_classifier, LOSO_SOURCES, hardware
from mp_cnn.checkpoint import save_checkpoint, load_checkpoint, git_commit
from mp_cnn.openset import (SCORES, DEFAULT_RULE, build_library, logits_features, fit_feature_stats, open_set_scores, thresholds,
                            rule_score, open_set_metrics, fit_open_set, class_quantiles)
from mp_cnn.augment import blank_spectra

LCO_CLASSES = ('rubber', 'PU', 'non_plastic', 'other_plastic', 'CA', 'EVA', 'PA')
CACHE = Path('.dev/open_set')

def folds(sp, which=('lco', 'group', 'loso'), seed=0):
    "Yield (protocol, fold name, fit, cal, test_known, unknown) Spectra for every fold of the protocols in `which`."
    lab = sp.labels.astype(str)
    for w in which:
        if w == 'lco':
            for c in LCO_CLASSES:
                known, unknown = sp[(lab != c).to_numpy()], sp[(lab == c).to_numpy()]
                train, test = split_groups(known, 0.2, seed)
                yield 'leave_classes_out', c, *split_groups(train, 0.15, seed), test, unknown
        elif w == 'group':
            train, test = split_groups(sp, 0.2, seed)
            yield 'group', 'all_known', *split_groups(train, 0.15, seed), test, sp[:0]
        elif w == 'loso':
            for s in LOSO_SOURCES:
                train, test = split_by_source(sp, s)
                kn = test.labels.astype(str).isin(set(train.labels.astype(str))).to_numpy()
                yield 'leave_one_source_out', s, *split_groups(train, 0.15, seed), test[kn], test[~kn]

def trained(fold, fit, profile, epochs, seed=0):
    "The lenet_1d of `fold` trained on `fit` (cached in CACHE/profile/fold), and its classes."
    out = CACHE/profile/fold
    if (out/'config.json').exists():
        m, cfg = load_checkpoint(out); return m, cfg['classes'], cfg['train']
    classes = sorted(fit.labels.astype(str).unique())
    t0 = time.time()
    _, _, info = cnn_classifier('lenet_1d', profile, epochs=epochs, seed=seed)(fit, fit[:1], classes)
    tc = dict(profile=profile, epochs=info['epochs'], seed=seed, train_s=round(time.time() - t0, 1), n_fit=len(fit), hardware=hardware())
    save_checkpoint(out, info['model'], classes, DEFAULT_GRID, DEFAULT_STEPS, train_config=tc)
    print(f"trained {fold}: {tc}", flush=True)
    return info['model'].eval(), classes, tc

METHODS = SCORES + ('mahalanobis+hqi_pred', 'knn+hqi_pred', 'mahalanobis+hqi_best', 'knn+hqi_best', 'energy+hqi_pred', 'softmax+hqi_pred',
                    'openmax+hqi_pred', 'mahalanobis+hqi_class', 'knn+hqi_class', 'softmax+hqi_class', 'hqi_class+hqi_best', 'hqi_pred+hqi_best')
CURVE = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99)
CURVE_METHODS = ('softmax', 'mahalanobis', 'knn', 'hqi_pred', 'hqi_best', 'hqi_pred+hqi_best')
NATURAL = ('animal fur', 'plant fibres', 'chitin', 'coal', 'charcoal', 'sand')

def prep(s): return np.asarray(Pipeline.from_config(DEFAULT_STEPS)(s).X, np.float32)

def codes(s, classes): return pd.Categorical(s.labels.astype(str), categories=classes).codes

def score_fold(model, classes, fit, cal, per=8, max_k=40):
    "(rule ingredients for the fold: stats, library, calibration scores), from `fit` and `cal` only."
    Xf = prep(fit)
    lib = build_library(fit, Xf, per, max_k)
    stats = fit_feature_stats(*logits_features(model, Xf), codes(fit, classes))
    Xc = prep(cal); Lc, Fc = logits_features(model, Xc)
    stats['hqi_q'] = class_quantiles(open_set_scores(stats, lib, Xc, Lc, Fc), len(classes))
    return stats, lib, open_set_scores(stats, lib, Xc, Lc, Fc)

def scores_of(model, stats, lib, X):
    return open_set_scores(stats, lib, X, *logits_features(model, X))

def rows(proto, fold, S_cal, S_known, y_known, S_unk, classes, acceptances=(0.95,), methods=METHODS, **extra):
    "One result row per method (and acceptance target): thresholds from S_cal only, metrics on S_known / S_unk."
    out = []
    cls = np.array(classes, dtype=object)
    for m in methods:
        for acc in acceptances:
            thr = pd.Series(thresholds(S_cal, m, acc))
            rk, ru = (S_known[thr.index] < thr).any(axis=1).to_numpy(), (S_unk[thr.index] < thr).any(axis=1).to_numpy()
            r = open_set_metrics(y_known, S_known.pred.to_numpy(), rk, ru, rule_score(S_cal, S_known, m), rule_score(S_cal, S_unk, m))
            polymer = ~np.isin(cls[S_unk.pred.to_numpy()], ['non_plastic']) if len(S_unk) else np.zeros(0, bool)
            r['no_polymer_label'] = float(np.mean(ru | ~polymer)) if len(S_unk) else np.nan
            out.append(dict(protocol=proto, fold=fold, method=m, acceptance_target=acc, **r, **extra))
    return out

def open_set_headline(df:pd.DataFrame, # results/open_set.csv
                      method='hqi_pred', # the shipped rule's method
                     ):
    "The README's sentence on accuracy with unknowns, from the leave-classes-out rows of `df`."
    r = df[(df.protocol == 'leave_classes_out') & (df.method == method)]
    s = df[(df.protocol == 'leave_classes_out') & (df.method == 'softmax')]
    sh = df[(df.fold == 'shipped') & (df.method == method)].set_index('protocol')
    return (f"Leaving each of {len(r)} classes out in turn, the open-set rule `{method}` scores {r.accuracy_with_unknowns.mean():.3f} "
            f"accuracy with unknowns (an unknown is right only when flagged) beside {r.known_accuracy.mean():.3f} on the known classes "
            f"(it flags {r.unknown_rejection.mean():.0%} of the unseen-class spectra and accepts {r.known_acceptance.mean():.0%} of the known; "
            f"max-softmax: {s.accuracy_with_unknowns.mean():.3f}, {s.unknown_rejection.mean():.0%}); these are means over cpu-profile folds "
            f"(lenet_1d, width 0.25, {int(r.epochs.iloc[0])} epochs, seed {int(r.seed.iloc[0])}, commit {r.commit.iloc[0][:7]}; `results/open_set.csv`), "
            f"not the shipped model, which flags {sh.loc['foreign_files', 'unknown_rejection']:.0%} of the {int(sh.loc['foreign_files', 'n_unknown'])} "
            f"readable foreign files and {sh.loc['blanks', 'unknown_rejection']:.0%} of {int(sh.loc['blanks', 'n_unknown'])} synthetic blanks.")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--profile', default='cpu'); p.add_argument('--epochs', type=int); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--folds', default='lco,group,loso'); p.add_argument('--train-only', action='store_true')
    p.add_argument('--cached-only', action='store_true', help='score only the folds whose model is cached (fewer folds: say so)')
    p.add_argument('--ship', action='store_true', help="refit the shipped model's rule, library and calibration (`fit_answer`, default --per and --max-k) in mp_cnn/pretrained")
    p.add_argument('--per', type=int, default=8); p.add_argument('--max-k', type=int, default=40)
    p.add_argument('--out', default='results/open_set.csv')
    a = p.parse_args()
    sp = load_corpus()
    if a.train_only:
        for proto, fold, fit, cal, test, unk in folds(sp, a.folds.split(','), a.seed):
            print(proto, fold, 'fit', len(fit), 'cal', len(cal), 'test', len(test), 'unknown', len(unk), dict(unk.labels.value_counts()), flush=True)
            trained(fold, fit, a.profile, a.epochs, a.seed)
        sys.exit(0)
    from mp_cnn.classify import Classifier, pretrained_dir
    from mp_cnn.readers import read_many
    ff = sorted(str(f) for f in Path(data_folder()).joinpath('foreign_files').iterdir() if f.suffix.upper() in ('.SPA', '.SPC', '.SPG'))
    foreign, errs = read_many(ff)
    print('foreign files read:', [s.meta['file'].iloc[0] for s in foreign], '| unreadable:', errs['file'].map(lambda f: Path(f).name).tolist(), flush=True)
    blanks = blank_spectra(200, a.seed)
    res, curve, common = [], [], dict(seed=a.seed, commit=git_commit(), hardware=hardware())
    def extra_sets(model, classes, cfg, stats, lib, S_cal, S_test, y_test, fold, tc):
        "Blanks and foreign files through the classifier's own input path (units, input checks)."
        clf = Classifier(model, cfg)
        Xb, _ = clf.prepare(blanks)
        out = rows('blanks', fold, S_cal, S_test, y_test, scores_of(model, stats, lib, Xb), classes, **tc)
        Xs, flags = zip(*[clf.prepare(s) for s in foreign])
        Xf = np.concatenate(Xs); flags = np.concatenate(flags)
        S_f = scores_of(model, stats, lib, Xf)
        for r in rows('foreign_files', fold, S_cal, S_test, y_test, S_f, classes, **tc):
            k = len(S_f); n_in = int((flags != '').sum())     # refused by the input checks: never labelled, counted as flagged
            r['unknown_rejection'] = (r['unknown_rejection'] * k + n_in) / (k + n_in) if k else 1.0
            r['no_polymer_label'] = (r['no_polymer_label'] * k + n_in) / (k + n_in) if k else 1.0
            r['n_unknown'] = k + n_in
            r['accuracy_with_unknowns'] = np.nan
            out.append(r)
        for i, s in enumerate(S_f.itertuples()):
            print(f"  {fold}: foreign {np.concatenate([f.meta['file'].to_numpy() for f in foreign])[flags == ''][i]}: CNN says {classes[s.pred]} p={s.softmax:.2f}, "
                  f"best reference r={s.hqi_best:.2f}, r to its class {s.hqi_pred:.2f}", flush=True)
        return out
    for proto, fold, fit, cal, test, unk in folds(sp, [f for f in a.folds.split(',') if f != 'shipped'], a.seed):
        if a.cached_only and not (CACHE/a.profile/fold/'config.json').exists(): print('not cached, skipped:', fold); continue
        model, classes, tc = trained(fold, fit, a.profile, a.epochs, a.seed)
        tc = dict(profile=tc['profile'], epochs=tc['epochs'], train_s=tc.get('train_s'), **common)
        stats, lib, S_cal = score_fold(model, classes, fit, cal, a.per, a.max_k)
        S_test, y_test = scores_of(model, stats, lib, prep(test)), codes(test, classes)
        S_unk = scores_of(model, stats, lib, prep(unk)) if len(unk) else S_test[:0]
        if proto != 'group':
            res += rows(proto, fold, S_cal, S_test, y_test, S_unk, classes, **tc)
        if proto == 'leave_classes_out':
            curve += rows(proto, fold, S_cal, S_test, y_test, S_unk, classes, CURVE, tuple(dict.fromkeys(CURVE_METHODS + (DEFAULT_RULE,))), **tc)
        if fold == 'non_plastic':
            nat = (unk.meta['dataset'] == 'primpke_2018').to_numpy() & unk.meta['raw_label'].isin(NATURAL).to_numpy()
            res += rows('never_a_plastic', fold, S_cal, S_test, y_test, S_unk[nat], classes, **tc)
        if proto == 'group':
            cfg = dict(classes=classes, grid=dict(lo=650., hi=3998., step=4., n=838), preprocess=DEFAULT_STEPS, model={})
            res += extra_sets(model, classes, cfg, stats, lib, S_cal, S_test, y_test, fold, tc)
        print(f"{proto} {fold}: " + ', '.join(f"{r['method']} {r['accuracy_with_unknowns']:.3f}" for r in res[-len(METHODS):]), flush=True)
        pd.DataFrame(res).to_csv(a.out, index=False)
    if 'group' in a.folds or 'shipped' in a.folds:   # the shipped model, calibrated on fit_default's own calibration split
        net, cfg = load_checkpoint(pretrained_dir())
        fit, cal = split_groups(sp, 0.15, a.seed)
        stats, lib, S_cal = score_fold(net, cfg['classes'], fit, cal, a.per, a.max_k)
        tc = dict(profile='gpu', epochs=cfg['train'].get('epochs'), train_s=cfg['train'].get('wall_s'), **common)
        res += [dict(r, n_known=0, known_acceptance=np.nan, known_accuracy=np.nan, auroc=np.nan, accuracy_with_unknowns=np.nan)
                for r in extra_sets(net, cfg['classes'], cfg, stats, lib, S_cal, S_cal, codes(cal, cfg['classes']), 'shipped', tc)]
        if a.ship:   # the rule refitted with the checkpoint's own answer (stacked with library search where stack.json says so, chapter 5b)
            from mp_cnn.shipped import fit_answer
            print('shipped:', fit_answer(pretrained_dir(), sp, stack=Classifier.load().stack).rule, flush=True)
    pd.DataFrame(res).round(4).to_csv(a.out, index=False)
    if curve:
        c = pd.DataFrame(curve).groupby(['method', 'acceptance_target'])[['known_acceptance', 'unknown_rejection', 'accuracy_with_unknowns']].mean().reset_index()
        c.round(4).to_csv(Path(a.out).with_name('open_set_curve.csv'), index=False)
        import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(4, 3), dpi=72)
        for m, d in c.groupby('method'): ax.plot(d.known_acceptance, d.unknown_rejection, 'o-', ms=3, label=m)
        ax.axvline(0.95, ls=':', c='gray'); ax.axhline(0.90, ls=':', c='gray')
        ax.set_xlabel('known acceptance (test)'); ax.set_ylabel('unseen-class rejection'); ax.legend(fontsize=7); ax.set_title('leave-classes-out, mean of 7 folds', fontsize=8)
        fig.savefig(Path(a.out).with_name('open_set_curve.png'), bbox_inches='tight'); plt.close(fig)
    print('wrote', a.out)
