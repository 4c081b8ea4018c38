"""Write the tables of results/README.md (between its `<!-- tables -->` markers) from the CSVs beside it: no figure typed by hand.
The tables are chapter 5's `protocol_table` and `loso_table`, so the README and the notebook cannot disagree.

    python scripts/results_tables.py
"""
from pathlib import Path
import pandas as pd
from mp_cnn.evaluate import protocol_table, loso_table

R = Path(__file__).resolve().parents[1]/'results'

def md(df, floatfmt=3):
    "A markdown table of `df` (index included); whole floats as integers, others to `floatfmt` decimals (round columns first for fewer)."
    df = df.reset_index()
    fmt = lambda v: '' if pd.isna(v) else f'{int(v)}' if isinstance(v, float) and v == int(v) else f'{v:.{floatfmt}f}' if isinstance(v, float) else str(v)
    return '\n'.join(['| ' + ' | '.join(map(str, df.columns)) + ' |', '| ' + ' | '.join('---' for _ in df.columns) + ' |'] +
                     ['| ' + ' | '.join(fmt(v) for v in row) + ' |' for row in df.itertuples(index=False)])

def tables():
    res = pd.concat([pd.read_csv(R/f'{f}.csv') for f in ('cpu', 'gpu') if (R/f'{f}.csv').exists()])
    tab = protocol_table(res)
    out = ['## Models x protocols (`summary.csv`, `summary_gpu.csv`)', '',
           'Accuracy and macro-F1; LOSO = mean over `n_loso` held-out labs; sorted by LOSO accuracy. `profile` cpu = this 2-core CPU,',
           'gpu = NVIDIA H200 shared by four jobs; `group_train_s` = seconds for balancing, augmented views and training on the group split.', '',
           md(tab.assign(group_train_s=tab.group_train_s.round(0)))]
    out += ['', '## Leave one source out, accuracy per held-out lab', '',
            'The `prior` row is `mp_cnn.evaluate.PRIOR_LOSO`: issue 5\'s quick measurement of library search with Open Specy\'s default',
            'preprocessing on an earlier version of the corpus (about 7,700 spectra), not rerun; `search_openspecy` is the same method measured here.', '',
            md(loso_table(res))]
    for f, title in (('speed', "this CPU, `cpu` profile widths"), ('speed_cpu_full_width', 'this CPU, full-width LeNets (`gpu` profile)'),
                     ('speed_gpu', 'NVIDIA H200, `gpu` profile, CNNs on the GPU in batches of 4,096, library search on 4 CPU threads')):
        if not (R/f'{f}.csv').exists(): continue
        s = pd.read_csv(R/f'{f}.csv')
        out += ['', f'## Speed (`{f}.csv`): {title}', '', f"{s.hardware[0]}, commit {s.commit[0][:7]}; {int(s.n_queries[0]):,} queries, library = {int(s.library.max()):,} training spectra.", '',
                md(s.set_index('method')[['spectra_per_s', 'spectra_per_s_with_prep']].round(0).join(s.set_index('method')[['x_search_default', 'x_search_openspecy']]), 2)]
    return '\n'.join(out)

def section(readme):
    "The text between `readme`'s `<!-- tables -->` markers."
    return readme.split('<!-- tables -->\n')[1].split('\n<!-- /tables -->')[0]

if __name__ == '__main__':
    readme = (R/'README.md').read_text()
    head, rest = readme.split('<!-- tables -->')
    _, tail = rest.split('<!-- /tables -->')
    (R/'README.md').write_text(head + '<!-- tables -->\n' + tables() + '\n<!-- /tables -->' + tail)
    print(tables())
