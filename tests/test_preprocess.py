import json
import numpy as np
import pytest
from mp_cnn.spectra import Spectra, DEFAULT_GRID
from mp_cnn.preprocess import Pipeline, DEFAULT_STEPS, OPEN_SPECY_STEPS, library_search, check_spectra


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
