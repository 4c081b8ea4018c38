"""Write the tables of results/README.md (between its `<!-- tables -->` markers) from the CSVs beside it: no figure typed by hand.

    python scripts/results_tables.py
"""
from pathlib import Path
import pandas as pd
from mp_cnn.evaluate import summarise, LOSO_SOURCES

R = Path(__file__).resolve().parents[1]/'results'
PRIOR_LOSO = dict(frond_2021=0.85, kedzierski_2019=0.90, microplastix=0.90, primpke_2018=0.61, villegas_camacho_2024=0.82)

def md(df, floatfmt=3):
    "A markdown table of `df` (index included); whole floats as integers, others to `floatfmt` decimals (round columns first for fewer)."
    df = df.reset_index()
    fmt = lambda v: '' if pd.isna(v) else f'{int(v)}' if isinstance(v, float) and v == int(v) else f'{v:.{floatfmt}f}' if isinstance(v, float) else str(v)
    return '\n'.join(['| ' + ' | '.join(map(str, df.columns)) + ' |', '| ' + ' | '.join('---' for _ in df.columns) + ' |'] +
                     ['| ' + ' | '.join(fmt(v) for v in row) + ' |' for row in df.itertuples(index=False)])

def tables():
    res = pd.concat([pd.read_csv(R/f'{f}.csv') for f in ('cpu', 'gpu') if (R/f'{f}.csv').exists()])
    summ = pd.concat([summarise(r) for _, r in res.groupby('profile')])
    tab = summ.pivot(index=['model', 'profile'], columns='protocol', values=['accuracy', 'macro_f1'])
    tab.columns = [f'{p} {m.replace("accuracy", "acc").replace("macro_f1", "F1")}' for m, p in tab.columns]
    by = summ.groupby(['model', 'profile'])
    tab = tab.assign(n_loso=summ[summ.protocol == 'loso'].set_index(['model', 'profile']).n_splits, params=by.params.first(),
                     epochs=by.epochs.max(), group_train_s=summ[summ.protocol == 'group'].set_index(['model', 'profile']).train_s)
    cols = [c for c in ['group acc', 'group F1', 'loso acc', 'loso F1', 'n_loso', 'leaky acc', 'leaky F1', 'params', 'epochs', 'group_train_s'] if c in tab]
    out = ['## Models x protocols (`summary.csv`, `summary_gpu.csv`)', '',
           'Accuracy and macro-F1; LOSO = mean over `n_loso` held-out labs; sorted by LOSO accuracy. `profile` cpu = this 2-core CPU,',
           'gpu = NVIDIA H200 shared by four jobs; `group_train_s` = seconds for balancing, augmented views and training on the group split.', '',
           md(tab[cols].assign(group_train_s=tab.group_train_s.round(0)).sort_values('loso acc', ascending=False))]
    loso = res[res.protocol == 'loso'].assign(model=lambda d: d.model + ' (' + d.profile + ')').pivot_table(index='model', columns='held_out', values='accuracy')
    loso.loc['prior: Open Specy search (reported)'] = pd.Series(PRIOR_LOSO)
    loso['mean'] = loso[list(LOSO_SOURCES)].mean(axis=1)
    out += ['', '## Leave one source out, accuracy per held-out lab', '', md(loso.sort_values('mean', ascending=False))]
    for f, title in (('speed', "this CPU, `cpu` profile widths"), ('speed_cpu_full_width', 'this CPU, full-width LeNets (`gpu` profile)'),
                     ('speed_gpu', 'NVIDIA H200, `gpu` profile, CNNs on the GPU in batches of 4,096, library search on 4 CPU threads')):
        if not (R/f'{f}.csv').exists(): continue
        s = pd.read_csv(R/f'{f}.csv')
        out += ['', f'## Speed (`{f}.csv`): {title}', '', f"{s.hardware[0]}, commit {s.commit[0][:7]}; 10,000 queries, library = 6,215 training spectra.", '',
                md(s.set_index('method')[['spectra_per_s', 'spectra_per_s_with_prep']].round(0).join(s.set_index('method')[['x_search_default', 'x_search_openspecy']]), 2)]
    return '\n'.join(out)

readme = (R/'README.md').read_text()
head, rest = readme.split('<!-- tables -->')
_, tail = rest.split('<!-- /tables -->')
(R/'README.md').write_text(head + '<!-- tables -->\n' + tables() + '\n<!-- /tables -->' + tail)
print(tables())
