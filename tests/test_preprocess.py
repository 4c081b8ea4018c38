import json, re
import numpy as np
import pytest
from mp_cnn.spectra import Spectra, DEFAULT_GRID
from mp_cnn.preprocess import Pipeline, DEFAULT_STEPS, OPEN_SPECY_STEPS
from mp_cnn.spectra import check_spectra
from mp_cnn.search import library_search


def _synthetic(n=6, seed=0):
    rng = np.random.default_rng(seed)
    wn = np.arange(600., 4100., 2.)
    centres = rng.uniform(800, 3500, (n, 3))
    X = sum(np.exp(-((wn[None] - centres[:, [k]]) / 20) ** 2) for k in range(3)) + 0.01 * rng.standard_normal((n, len(wn)))
    X[0, wn > 3600] = np.nan   # a spectrum with a missing range
    return Spectra(wn, X)


@pytest.mark.parametrize('cfg', [DEFAULT_STEPS, OPEN_SPECY_STEPS])
def test_pipeline_roundtrip(cfg):
    s = _synthetic()
    p = Pipeline.from_config(json.dumps(Pipeline(cfg).config))
    out = p(s)
    assert np.array_equal(out.wavenumbers, DEFAULT_GRID)
    assert out.X.shape == (len(s), len(DEFAULT_GRID)) and np.isfinite(out.X).all()
    assert np.array_equal(out.X, Pipeline(cfg)(s).X)


def test_old_smooth_abs_key_still_loads():
    "A checkpoint written before `smooth(abs=...)` became `absolute` gives the same pipeline and the same output."
    old = json.loads(json.dumps(OPEN_SPECY_STEPS).replace('"absolute"', '"abs"'))
    assert any('abs' in s for s in old)
    p = Pipeline.from_config(json.dumps(old))
    assert p.config == OPEN_SPECY_STEPS
    s = _synthetic()
    assert np.array_equal(p(s).X, Pipeline(OPEN_SPECY_STEPS)(s).X)


def test_check_spectra_names_bad_rows():
    s = _synthetic()
    s.X[2] = 1.0
    with pytest.raises(ValueError, match='spectrum 2'): check_spectra(s)


def test_library_search_finds_itself():
    p = Pipeline(DEFAULT_STEPS[:-1])(_synthetic(20))
    labels, r = library_search(p.X, p.X, np.arange(20), top_k=2, chunk=7)
    assert (labels[:, 0] == np.arange(20)).all() and np.allclose(r[:, 0], 1, atol=1e-4)


def test_chapter1_prose_matches_its_ablation_output():
    "Chapter 1a quotes its leave-one-source-out pipeline ablation: the figures are recomputed from that cell's stored output, so a rerun that moves them fails here."
    from pathlib import Path
    cells = {c.get('id'): c for c in json.loads((Path(__file__).resolve().parents[1]/'nbs'/'01a_search.ipynb').read_text())['cells']}
    out = lambda cid: ''.join(''.join(o.get('text', '')) for o in cells[cid]['outputs'])
    text = ' '.join(' '.join(''.join(c['source']) for c in cells.values() if c['cell_type'] == 'markdown').split())
    lines = out('9e4e9f2e').splitlines()
    head = lines[1].split()
    tab = {' '.join(l.split()[:-len(head)]): dict(zip(head, map(float, l.split()[-len(head):]))) for l in lines[2:] if l.strip()}
    assert len(tab) == 9 and lines[0].startswith('7777 spectra')          # the saved run is the full corpus, not the test subsample
    m = lambda k, c='mean': f"{tab[k][c]:.3f}"
    best = max(tab, key=lambda k: tab[k]['mean'])
    assert best == 'CO2 + SG 2nd deriv (15,3) + vector'
    assert max(tab, key=lambda k: tab[k]['microplastix']) == best and max(tab, key=lambda k: tab[k]['villegas_camacho_2024']) in ('raw (grid only)', 'SNV')
    assert {max(tab, key=lambda k: tab[k][s]) for s in ('frond_2021', 'kedzierski_2019')} == {'CO2 + SG 1st deriv + vector'}
    primpke = [v['primpke_2018'] for v in tab.values()]
    filled = re.search(r'the same with fillna\(0\): ([\d.]+)', out('6947eda9')).group(1)
    claims = [f"has the best mean, {m(best)}, just ahead of the 1st derivative with CO2 flattening ({m('CO2 + SG 1st deriv + vector')}) "
              f"and Open Specy's default ({m('Open Specy default')}); raw absorbance scores {m('raw (grid only)')}",
              f"baseline helps over raw ({m('CO2 + imodpoly(6) + SNV')})", f"best on MicroplastiX ({m(best, 'microplastix')},",
              f"raw absorbance on Villegas-Camacho ({m('raw (grid only)', 'villegas_camacho_2024')})",
              f"rescues Primpke ({min(primpke):.2f}-{max(primpke):.2f})", f"does not hurt it ({filled})"]
    missing = [c for c in claims if c not in text]
    assert not missing, 'chapter 1 prose disagrees with its ablation output (update the text):\n' + '\n'.join(missing)


def test_chapter1_prose_quotes_import_cost():
    "Chapter 1 says why the Savitzky-Golay weights are computed with numpy: the import time it quotes is `results/import_cost.csv`'s."
    import pandas as pd
    from pathlib import Path
    from test_evaluate import _prose
    r = pd.read_csv(Path(__file__).resolve().parents[1]/'results'/'import_cost.csv').set_index('module').loc['scipy.signal']
    claim = f"importing `scipy.signal` would add {r.wall_s:.2f} s to the command line's start (`results/import_cost.csv`)"
    assert claim in _prose('01_preprocess'), claim
