"Tests that do not belong in a notebook: downloads over HTTP, corruption, and properties of resampling."
import functools, http.server, shutil, threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from mp_cnn.download import DataFileError, fetch, file_registry, make_file_registry, sha256
from mp_cnn.spectra import resample_array
from mp_cnn.sources import load_source


def _serve(root):
    "Serve folder `root` over HTTP on 127.0.0.1 in a background thread; returns (base_url, server)."
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f'http://127.0.0.1:{srv.server_address[1]}', srv


def test_registry_matches_sha256sums(shared):
    reg, want = file_registry().fillna(''), make_file_registry(shared).fillna('')
    assert reg.values.tolist() == want.values.tolist()
    assert set(reg.folder) == {'microplastix', 'openspecy', 'primpke', 'samoa', 'xpectrass'}


def test_fetch_downloads_and_checks(shared, tmp_path):
    url, srv = _serve(shared)
    try:
        paths = fetch('samoa', tmp_path, base_url=url)
        fetch('openspecy', tmp_path, base_url=url)   # the label vocabulary
    finally: srv.shutdown()
    reg = file_registry().query("folder == 'samoa'")
    assert sorted(p.name for p in paths) == sorted(reg.file)
    for p, h in zip(paths, reg.sha256): assert sha256(p) == h
    s = load_source('samoa_reference', tmp_path)
    assert len(s) == 6 and (s.meta.label == 'unresolved').sum() == 1   # PEPP is unresolved


def test_fetch_present_file_not_redownloaded(shared, tmp_path):
    shutil.copytree(shared/'samoa', tmp_path/'samoa')
    before = (tmp_path/'samoa'/'Samoa_Data.csv').stat().st_mtime_ns
    fetch('samoa', tmp_path, base_url='http://127.0.0.1:9')   # nothing listens there: must not be contacted
    assert (tmp_path/'samoa'/'Samoa_Data.csv').stat().st_mtime_ns == before


def test_corrupt_local_file_is_named(shared, tmp_path):
    shutil.copytree(shared/'samoa', tmp_path/'samoa')
    f = tmp_path/'samoa'/'Samoa_Data.csv'
    b = bytearray(f.read_bytes()); b[1000] ^= 0xFF; f.write_bytes(bytes(b))
    with pytest.raises(DataFileError, match='Samoa_Data.csv is corrupt or truncated'):
        fetch('samoa', tmp_path)


def test_corrupt_download_is_named(shared, tmp_path):
    mirror = tmp_path/'mirror'
    shutil.copytree(shared/'samoa', mirror/'samoa')
    f = mirror/'samoa'/'Samoa_supplementary_data.csv'
    b = bytearray(f.read_bytes()); b[500] ^= 0xFF; f.write_bytes(bytes(b))
    url, srv = _serve(mirror)
    try:
        with pytest.raises(DataFileError, match='Samoa_supplementary_data.csv'):
            fetch('samoa', tmp_path/'data', base_url=url)
    finally: srv.shutdown()
    assert not (tmp_path/'data'/'samoa'/'Samoa_supplementary_data.csv').exists()   # a bad download is not kept


def test_missing_data_dir_says_what_to_do(monkeypatch):
    monkeypatch.setenv('MP_CNN_DATA', '/no/such/folder')
    with pytest.raises(FileNotFoundError, match='MP_CNN_DATA'):
        load_source('samoa_2024')


@settings(max_examples=60, deadline=None)
@given(step=st.floats(0.5, 3.0), new_step=st.floats(0.5, 12.0), a=st.floats(-5, 5), b=st.floats(-1e-3, 1e-3))
def test_resample_keeps_straight_lines(step, new_step, a, b):
    "A straight line comes back as itself: exactly when interpolating, and within the bound of interpolating the cumulative integral linearly (|b| step^2 / (4 bin)) when averaging bins."
    wn = np.arange(600, 4000, step)
    grid = np.arange(700, 3900, new_step)
    out = resample_array(wn, (a + b * wn)[None], grid)[0]
    assert not np.isnan(out).any()
    coarsening = new_step > 1.5 * step
    bound = abs(b) * step ** 2 / (4 * new_step) if coarsening else 0.
    np.testing.assert_allclose(out, a + b * grid, atol=1e-5 * (1 + abs(a)) + 1.01 * bound)


@settings(max_examples=40, deadline=None)
@given(lo=st.floats(650, 2000), width=st.floats(100, 1500), new_step=st.floats(1.0, 10.0))
def test_resample_never_extrapolates(lo, width, new_step):
    wn = np.arange(lo, lo + width, 1.0)
    grid = np.arange(600, 4000, new_step)
    out = resample_array(wn, np.ones((1, len(wn))), grid)[0]
    outside = (grid < wn[0] - 1e-9) | (grid > wn[-1] + 1e-9)    # a grid point 1e-13 past the end is the end (floating-point axes)
    assert np.isnan(out[outside]).all()
    assert np.all(np.isnan(out) | np.isclose(out, 1.0, atol=1e-5))


def test_save_load_spectra_round_trip(shared, tmp_path):
    from mp_cnn.corpus import load_corpus
    from mp_cnn.spectra import Spectra
    c = load_corpus(data_dir=shared)
    back = Spectra.load(c.save(tmp_path/'c'))
    np.testing.assert_array_equal(back.X, c.X); np.testing.assert_array_equal(back.wavenumbers, c.wavenumbers)
    pd.testing.assert_frame_equal(back.meta.reset_index(drop=True), c.meta.reset_index(drop=True), check_dtype=False)
    pd.testing.assert_frame_equal(back.drops, c.drops)
    with pytest.raises(FileNotFoundError, match=r'spectra\.save'): Spectra.load(tmp_path/'none')


def test_corpus_units_are_its_own(shared):
    "The corpus stores absorbance, and says so: a classifier reading `units_published` must not convert a source published in %T twice."
    from mp_cnn.corpus import load_corpus
    m = load_corpus(data_dir=shared).meta
    assert (m.units_published == 'A').all()
    assert set(m.loc[m.dataset == 'frond_2021', 'units_source']) == {'%T'}   # what the source published, kept


def test_readme_source_counts():
    "The README's data table quotes each source's size: recomputed from `SOURCES`, whose counts chapter 0d checks against the loaded files."
    from mp_cnn.sources import SOURCES
    n = {k: f'{s.spectra:,}' for k, s in SOURCES.items()}
    text = ' '.join((Path(__file__).resolve().parents[1]/'README.md').read_text().split())
    claims = [f"| FLOPP and FLOPP-e | {n['frond_2021']} |", f"| {n['kedzierski_2019']} + {n['kedzierski_2019_u']} unlabelled |",
              f"| {n['villegas_camacho_2024_c4']} (+{n['villegas_camacho_2024_c8']} twins) |", f"| MicroplastiX MPX_specDB | {n['microplastix']} |",
              f"| {n['primpke_2018']} (+{n['primpke_2018_sup4']} twins) |", f"| {n['openspecy_test_lib']} FTIR |",
              f"| Samoa beaches | {n['samoa_2024']} unlabelled + {n['samoa_reference']} references |", f"derived from {n['microplastix']} upstream files"]
    missing = [c for c in claims if c not in text]
    assert not missing, "the README's data table disagrees with SOURCES (update it):\n" + '\n'.join(missing)
