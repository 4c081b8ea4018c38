"The Colab path, offline: MicroplastiX rebuilt from a stand-in for its upstream repository, and chapter 0's loading in a fresh process with no MP_CNN_DATA."
import json, os, shutil, subprocess, sys, textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import mp_cnn.download as mdata
from mp_cnn.download import DataFileError, fetch, git_blob_sha1, mpx_encoding, mpx_written, read_mpx_spectrum, sha256

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'scripts'))
import mpx_mirror   # noqa: E402  (the stand-in for upstream; chapter 0 and the rebuild benchmark use it too)

N = 24   # spectra in the stand-in: both exact encodings, from all four VLFR low ends and campaigns that `pick` spreads over


@pytest.fixture(scope='module')
def mirror(shared, tmp_path_factory):
    "The stand-in: `metadata.xlsx` and N spectrum files written from the shared tables, with every shared file at its upstream path."
    root = tmp_path_factory.mktemp('upstream')
    files = mpx_mirror.pick(pd.read_csv(shared/'microplastix'/'mpx_atr_metadata.csv.gz'), N)
    tree = mpx_mirror.write_mpx_tree(shared, root, files)
    with mpx_mirror.Server(mpx_mirror.routes(shared, root)) as srv:
        yield SimpleNamespace(root=root, tree=tree, files=files, srv=srv, blob=git_blob_sha1(tree/'metadata.xlsx'))


@pytest.fixture
def upstream(mirror, monkeypatch):
    "Point the package at the stand-in, as `MP_CNN_UPSTREAM` does for any mirror, and accept its metadata.xlsx."
    monkeypatch.setenv('MP_CNN_UPSTREAM', mirror.srv.url)
    monkeypatch.setattr(mdata, 'MPX_METADATA_BLOB', mirror.blob)
    return mirror


def _mpx_requests(srv, since=0): return [r for r in srv.requests[since:] if 'MPX_specDB' in r]


def test_stand_in_is_upstream_format(mirror, shared):
    md = pd.read_csv(shared/'microplastix'/'mpx_atr_metadata.csv.gz').set_index('file').loc[mirror.files]
    assert set(md.source_y_encoding) == {'A_4dec', 'pctT_2dec'}
    for f, h, enc in zip(mirror.files, md.spec_hash, md.source_y_encoding):
        p = mirror.tree/'spectra'/f
        assert p.read_text().startswith('cm-1,A\n4000.0,')
        a = read_mpx_spectrum(p, h)                  # the spec_hash recipe: sha256 of the (n, 2) float64 array as pandas reads it
        assert mpx_encoding(a[:, 1]) == enc
    with pytest.raises(DataFileError, match='does not match its spec_hash'): read_mpx_spectrum(p, '0' * 64)


def test_written_values_follow_provenance(shared):
    "On a slice of the shared table: upstream values recovered, then written again, give the shared values back bit for bit."
    md = pd.read_csv(shared/'microplastix'/'mpx_atr_metadata.csv.gz')
    rows = pd.read_csv(shared/'microplastix'/'mpx_atr.csv.gz', nrows=3000).set_index('file')
    rows = rows[rows.index.isin(md.file[md.Region == 'VLFR'])].iloc[::10]
    enc = md.set_index('file').source_y_encoding
    assert len(rows) > 50 and set(enc[rows.index]) == {'A_4dec', 'pctT_2dec'}
    for f, r in rows.iterrows():
        s = r.iloc[10:].to_numpy(np.float64); s = s[~np.isnan(s)]
        y = mpx_mirror.upstream_values(s, enc[f])
        assert mpx_encoding(y) == enc[f]
        np.testing.assert_array_equal(mpx_written(y, enc[f]), s)
    w = mpx_written(np.array([0.123456789]), 'float'); assert w[0] == 0.12346


def test_rebuild_equals_shared_and_is_cached(upstream, shared, tmp_path):
    srv, start = upstream.srv, len(upstream.srv.requests)
    paths = fetch('microplastix', tmp_path)
    got = _mpx_requests(srv, start)
    assert len(got) == 1 + N and not any('_Raman_' in r for r in got)           # metadata.xlsx and each ATR spectrum once
    assert mpx_mirror.same_rows(tmp_path/'microplastix', shared, text=True) == N   # the shared rows, value for value and as written
    import gzip
    heads = [gzip.open(p, 'rt').readline().strip() for p in paths]               # same columns, in the same order, as the shared copy
    assert heads == [gzip.open(shared/'microplastix'/p.name, 'rt').readline().strip() for p in paths]
    rebuilt = json.loads((tmp_path/'microplastix'/'REBUILT.json').read_text())
    assert rebuilt['spectra'] == N and rebuilt['sha256']['mpx_atr.csv.gz'] == sha256(paths[0])
    n = len(srv.requests)
    fetch('microplastix', tmp_path)                                            # present and checked: nothing downloaded
    paths[0].unlink(); fetch('microplastix', tmp_path)                         # rebuilt from the cache: nothing downloaded
    assert len(srv.requests) == n
    assert mpx_mirror.same_rows(tmp_path/'microplastix', shared) == N
    b = paths[0].read_bytes(); paths[0].write_bytes(b[:len(b) // 2])           # a truncated table is caught like any other file
    with pytest.raises(DataFileError, match='mpx_atr.csv.gz is corrupt or truncated'): fetch('microplastix', tmp_path)


def test_corrupt_spectrum_is_named_and_dropped_from_cache(upstream, shared, tmp_path):
    bad = upstream.files[3]
    f = upstream.tree/'spectra'/bad
    good = f.read_bytes()
    lines = good.decode().split('\n'); lines[100] = lines[100][:-1] + ('1' if lines[100][-1] != '1' else '2')
    f.write_bytes('\n'.join(lines).encode())                                    # one digit of one value changed
    try:
        with pytest.raises(DataFileError, match=f'1 of {N} MicroplastiX spectra fail their spec_hash.*{bad}'):
            fetch('microplastix', tmp_path)
        assert not (tmp_path/'microplastix'/'upstream'/'spectra'/bad).exists()  # deleted, so that the next run downloads it again
        assert not (tmp_path/'microplastix'/'mpx_atr.csv.gz').exists()          # and no table was written
    finally: f.write_bytes(good)
    start = len(upstream.srv.requests)
    fetch('microplastix', tmp_path)
    assert _mpx_requests(upstream.srv, start) == [f'/{mpx_mirror.MPX_PATH}spectra/{bad}']   # only the bad one again


def test_failed_download_is_named(upstream, tmp_path, monkeypatch):
    gone = upstream.files[0]
    monkeypatch.setattr(mdata.time, 'sleep', lambda s: None)                  # no back-off pauses in a test
    route = f'{mpx_mirror.MPX_PATH}spectra/{gone}'
    p = upstream.srv.routes.pop(route)
    try:
        with pytest.raises(DataFileError, match=f'1 of {N} downloads failed.*{gone}.*404'): fetch('microplastix', tmp_path)
    finally: upstream.srv.routes[route] = p
    assert len(list((tmp_path/'microplastix'/'upstream'/'spectra').iterdir())) == N - 1   # the others are kept for the next run


def test_metadata_must_be_the_pinned_file(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv('MP_CNN_UPSTREAM', mirror.srv.url)                      # the stand-in's metadata.xlsx is not upstream's blob
    with pytest.raises(DataFileError, match='not the pinned metadata.xlsx.*217ffeb2'): fetch('microplastix', tmp_path)
    assert not (tmp_path/'microplastix'/'upstream'/'metadata.xlsx').exists()   # not kept: the next run downloads it again


def test_chapter0_loading_in_a_clean_process(mirror, tmp_path):
    "What a Colab notebook does: no MP_CNN_DATA, an empty per-user cache; everything comes from the (stand-in) upstream."
    env = {k: v for k, v in os.environ.items() if not k.startswith('MP_CNN')}
    env.update(HOME=str(tmp_path/'home'), XDG_CACHE_HOME=str(tmp_path/'home'/'.cache'), MP_CNN_UPSTREAM=mirror.srv.url,
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    code = textwrap.dedent(f"""
        import json, mp_cnn.download as d
        from mp_cnn.sources import load_source
        from mp_cnn.corpus import load_corpus
        d.MPX_METADATA_BLOB = {mirror.blob!r}     # the stand-in's metadata.xlsx; on Colab the pinned one is checked
        mpx = load_source('microplastix')
        c = load_corpus(['microplastix', 'primpke_2018', 'samoa_reference'])
        print(json.dumps(dict(dir=str(d.data_folder()), mpx=len(mpx), labels=sorted(set(mpx.meta.label)), corpus=len(c),
                              datasets=sorted(set(c.meta.dataset)), dropped=int(c.drops.spectra.sum()))))""")
    r = subprocess.run([sys.executable, '-c', code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out['dir'] == str(tmp_path/'home'/'.cache'/'mp_cnn')
    assert out['mpx'] == N and out['datasets'] == ['microplastix', 'primpke_2018', 'samoa_reference']
    assert out['corpus'] + out['dropped'] == N + 270 + 6
    d = tmp_path/'home'/'.cache'/'mp_cnn'
    for f in ['microplastix/mpx_atr.csv.gz', 'primpke/primpke2018_spectra.csv', 'samoa/Samoa_supplementary_data.csv', 'openspecy/material_hierarchy.csv']:
        assert (d/f).exists(), f


def test_shared_layout_mirror_serves_the_tables(shared, tmp_path):
    "A mirror of the shared folder (`base_url`) serves the MicroplastiX tables themselves: no rebuild, the registered sha256 checked."
    with mpx_mirror.Server({f'microplastix/{f}': shared/'microplastix'/f for f in ['mpx_atr.csv.gz', 'mpx_atr_metadata.csv.gz']}) as srv:
        paths = fetch('microplastix', tmp_path, base_url=srv.url)
        assert sorted(srv.requests) == ['/microplastix/mpx_atr.csv.gz', '/microplastix/mpx_atr_metadata.csv.gz']
    assert [sha256(p) for p in paths] == [sha256(shared/'microplastix'/p.name) for p in paths]
    assert not (tmp_path/'microplastix'/'upstream').exists()


def test_missing_xlsx_reader_says_what_to_install(upstream, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'openpyxl', None)                         # as if openpyxl were not installed
    with pytest.raises(ImportError, match=r'pip install openpyxl \(or mp_cnn\[rebuild\]\)'): fetch('microplastix', tmp_path)


def test_chapter0c_prose_counts(shared):
    "Chapter 0c's (and results/README's) counts of MicroplastiX files: from the metadata and `results/mpx_rebuild.json`, so they cannot drift."
    from test_evaluate import _prose
    md = pd.read_csv(shared/'microplastix'/'mpx_atr_metadata.csv.gz')
    b = json.loads((ROOT/'results'/'mpx_rebuild.json').read_text())
    assert b['spectra'] == md.source_y_encoding.isin(['A_4dec', 'pctT_2dec']).sum()   # the rebuild served every reconstructible spectrum
    n, k = f'{len(md):,}', f"{b['spectra']:,}"
    text = _prose('00c_download')
    claims = [f"assembled from {n} upstream files", f"its {n} `Analysis == ATR` rows are kept", f"downloads `metadata.xlsx` and {n} spectrum files",
              f"the {k} spectra that can be reconstructed"]
    missing = [c for c in claims if c not in text]
    readme = ' '.join((ROOT/'results'/'README.md').read_text().split())
    missing += [c for c in [f"--n {b['spectra']} --out results/mpx_rebuild.json` writes the {k} MicroplastiX"] if c not in readme]
    assert not missing, 'chapter 0c or results/README disagrees with the MicroplastiX metadata (update the text):\n' + '\n'.join(missing)
