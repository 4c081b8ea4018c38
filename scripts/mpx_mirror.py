"""A stand-in for the upstream repositories, served on 127.0.0.1: the shared data files at their pinned upstream paths, plus a
MicroplastiX tree (`metadata.xlsx` + `spectra/*.csv`) rebuilt from the shared tables for the spectra whose upstream values they
keep exactly (`A_4dec`, `pctT_2dec`; see microplastix/PROVENANCE.md). Used by tests/test_fetch.py, chapter 0 and, as a script,
to time a rebuild of MicroplastiX from such a mirror:

    MP_CNN_DATA=../shared/data python scripts/mpx_mirror.py --n 2394 --out results/mpx_rebuild.json   # every spectrum that can be reconstructed

It prints the files and bytes served, the time of a cold rebuild and of a second (cached) one, and checks the rebuilt rows
against the shared copy value for value and cell for cell as written.
`--check-rules` instead checks PROVENANCE.md's recovery rule and the writing rules on every VLFR spectrum of the shared copy."""
import csv, gzip, hashlib, http.server, json, math, os, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path

import numpy as np
import pandas as pd

from mp_cnn.download import MPX_REPO, _GH, file_registry, rebuild_microplastix

MPX_PATH = MPX_REPO[len(_GH):]           # robna/MPX_specDB/<commit>/


def upstream_values(written, enc):
    "The upstream float64 absorbance from the values the shared table holds, for the encodings that keep it exactly."
    if enc == 'A_4dec': return written
    if enc == 'pctT_2dec':   # A = 2 - log10(%T), %T to 2 decimals; the C library's log10 is the one upstream used (numpy's differs in the last bit)
        T = np.round(10 ** (2 - written), 2)
        return np.array([2 - math.log10(t) for t in T])
    raise ValueError(f"{enc} spectra were rounded: their upstream values cannot be reconstructed")


def pick(md, n):
    "`n` reconstructible spectra, alternating between the two exact encodings (so both rounding rules are exercised)."
    ok = md[md.source_y_encoding.isin(['A_4dec', 'pctT_2dec'])]
    parts = [g.iloc[np.linspace(0, len(g) - 1, min(len(g), (n + 1) // 2)).astype(int)] for _, g in ok.groupby('source_y_encoding')]
    return pd.concat(parts).sort_values('file').head(n).file.tolist() if n < len(ok) else ok.file.tolist()


def write_mpx_tree(shared, out, files, raman=True):
    "Write `metadata.xlsx` and `spectra/<file>` for `files` under `out` (laid out as upstream), from the shared tables; returns the tree's root."
    d = Path(shared)/'microplastix'
    md = pd.read_csv(d/'mpx_atr_metadata.csv.gz')
    md = md[md.file.isin(files)].reset_index(drop=True)
    want = set(md.file)
    rows = pd.concat(c[c.file.isin(want)] for c in pd.read_csv(d/'mpx_atr.csv.gz', chunksize=500)).set_index('file')
    root = Path(out)/MPX_PATH
    (root/'spectra').mkdir(parents=True, exist_ok=True)
    wn = np.array([float(c) for c in rows.columns[10:]])
    for f, enc in zip(md.file, md.source_y_encoding):
        y = rows.loc[f].iloc[10:].to_numpy(np.float64)
        ok = ~np.isnan(y)
        pd.DataFrame({'cm-1': wn[ok], 'A': upstream_values(y[ok], enc)}).to_csv(root/'spectra'/f, index=False)
    up = md.drop(columns='source_y_encoding').set_index('source_row')
    up.index.name = None                                        # upstream's index column has no header: pandas reads it as 'Unnamed: 0'
    if raman:                                                   # a Raman row, which a rebuild must leave out (no file is served for it)
        r = up.iloc[[0]].copy(); r.index = [up.index.max() + 1]
        r['Analysis'], r['file'] = 'Raman', r['file'].str.replace('_ATR_', '_Raman_')
        up = pd.concat([up, r])
    up.to_excel(root/'metadata.xlsx', sheet_name='Sheet1')
    return root


def routes(shared, tree=None):
    "URL path -> local file: every registered shared file at its pinned upstream path, and the files under `tree` (a mirror root)."
    r = {u[len(_GH):]: Path(shared)/f/n for f, n, u in file_registry()[['folder', 'file', 'url']].itertuples(index=False)
         if u and u.startswith(_GH) and f != 'microplastix'}
    if tree is not None: r.update({p.relative_to(tree).as_posix(): p for p in Path(tree).rglob('*') if p.is_file()})
    return r


class Server:
    "An HTTP server on 127.0.0.1 in a background thread serving `routes` (URL path -> file); counts requests and bytes. A context manager."
    def __init__(self, routes):
        self.routes, self.requests, self.bytes = dict(routes), [], 0
        srv = self
        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_GET(self):
                p = srv.routes.get(self.path.lstrip('/').split('?')[0])
                srv.requests.append(self.path)
                if p is None or not p.exists(): return self.send_error(404)
                b = p.read_bytes(); srv.bytes += len(b)
                self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/'
    def __enter__(self): threading.Thread(target=self.httpd.serve_forever, daemon=True).start(); return self
    def __exit__(self, *a): self.httpd.shutdown(); self.httpd.server_close()


def git_blob(path):
    b = Path(path).read_bytes(); return hashlib.sha1(b'blob %d\0' % len(b) + b).hexdigest()


def _cells(path, files=None):
    "Header and {file: row} of a gzipped CSV table, every cell as the text written (for rows in `files`, default all)."
    with gzip.open(path, 'rt', newline='') as fh:
        r = csv.reader(fh); head = next(r); i = head.index('file')
        return head, {row[i]: row for row in r if files is None or row[i] in files}


def same_rows(rebuilt_dir, shared, text=False):
    "Assert that the rebuilt tables equal the shared tables' rows for the same files, value for value (and with `text`, cell for cell as written); returns the number of rows."
    got = {k: pd.read_csv(Path(rebuilt_dir)/f) for k, f in [('X', 'mpx_atr.csv.gz'), ('m', 'mpx_atr_metadata.csv.gz')]}
    files = set(got['X'].file)
    for k, f in [('X', 'mpx_atr.csv.gz'), ('m', 'mpx_atr_metadata.csv.gz')]:
        ref = pd.concat(c[c.file.isin(files)] for c in pd.read_csv(Path(shared)/'microplastix'/f, chunksize=500)).reset_index(drop=True)
        pd.testing.assert_frame_equal(got[k], ref, check_dtype=False)
        if text:
            (h1, a), (h2, b) = _cells(Path(rebuilt_dir)/f), _cells(Path(shared)/'microplastix'/f, files)
            assert h1 == h2 and list(a) == sorted(a) and a == b, f"{f}: rebuilt rows are not written as the shared copy writes them"
    return len(files)


def check_rules(shared):
    "Over every VLFR spectrum of the shared copy: recovered upstream values match `spec_hash`, `mpx_encoding` and `mpx_written` give back the shared encoding and values."
    from mp_cnn.download import mpx_encoding, mpx_written
    md = pd.read_csv(Path(shared)/'microplastix'/'mpx_atr_metadata.csv.gz').set_index('file')
    X = pd.concat(c[c.file.isin(md.index[md.Region == 'VLFR'])] for c in pd.read_csv(Path(shared)/'microplastix'/'mpx_atr.csv.gz', chunksize=500)).set_index('file')
    wn = np.array([float(c) for c in X.columns[10:]])
    n = dict(spectra=0, hash=0, encoding=0, written=0, pctT_values=0, numpy_log10_differs=0)
    for f, row in X.iterrows():
        s = row.iloc[10:].to_numpy(np.float64); ok = ~np.isnan(s); s = s[ok]; enc = md.loc[f, 'source_y_encoding']
        y = upstream_values(s, enc)
        if enc == 'pctT_2dec':
            n['pctT_values'] += len(y); n['numpy_log10_differs'] += int(((2 - np.log10(np.round(10 ** (2 - s), 2))) != y).sum())
        n['spectra'] += 1
        n['hash'] += hashlib.sha256(np.column_stack([wn[ok], y]).tobytes()).hexdigest() == md.loc[f, 'spec_hash']
        n['encoding'] += mpx_encoding(y) == enc
        n['written'] += np.array_equal(mpx_written(y, enc), s)
    return n


if __name__ == '__main__':
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n', type=int, default=2394, help='spectra in the mirror (at most 2394: those whose upstream values can be reconstructed)')
    ap.add_argument('--workers', type=int, default=8)
    ap.add_argument('--out', help='write the figures to this JSON file (results/mpx_rebuild.json)')
    ap.add_argument('--check-rules', action='store_true', help='only check the recovery and writing rules on every VLFR spectrum of the shared copy')
    a = ap.parse_args()
    if a.check_rules:
        n = check_rules(os.environ['MP_CNN_DATA'])
        print(f"{n['spectra']} VLFR spectra: {n['hash']} match their spec_hash once recovered, {n['encoding']} get their source_y_encoding back, "
              f"{n['written']} their shared values; numpy's log10 differs from the C library's on {n['numpy_log10_differs']} of {n['pctT_values']} %T values "
              f"({100 * n['numpy_log10_differs'] / n['pctT_values']:.1f}%)")
        sys.exit(0 if n['spectra'] == n['hash'] == n['encoding'] == n['written'] else 1)
    import mp_cnn.download as mdata
    shared = Path(os.environ['MP_CNN_DATA'])
    tmp = Path(tempfile.mkdtemp())
    try:
        md = pd.read_csv(shared/'microplastix'/'mpx_atr_metadata.csv.gz')
        t0 = time.perf_counter(); tree = write_mpx_tree(shared, tmp/'mirror', pick(md, a.n)); t_write = time.perf_counter() - t0
        mdata.MPX_METADATA_BLOB = git_blob(tree/'metadata.xlsx')   # the stand-in's metadata is not the pinned blob
        with Server(routes(shared, tmp/'mirror')) as s:
            load = os.getloadavg()[0]   # this machine is shared: how busy it was when the timing started
            t0 = time.perf_counter(); rebuild_microplastix(tmp/'data', s.url + MPX_PATH, a.workers, progress=False); cold = time.perf_counter() - t0
            n_req, n_bytes = len(s.requests), s.bytes
            for f in ['mpx_atr.csv.gz', 'mpx_atr_metadata.csv.gz', 'REBUILT.json']: (tmp/'data'/'microplastix'/f).unlink()
            t0 = time.perf_counter(); rebuild_microplastix(tmp/'data', s.url + MPX_PATH, a.workers, progress=False); warm = time.perf_counter() - t0
            n_req2 = len(s.requests) - n_req
        n = same_rows(tmp/'data'/'microplastix', shared, text=True)
        sizes = [f.stat().st_size for f in (tree/'spectra').iterdir()]
        commit = subprocess.run(['git', 'describe', '--always', '--dirty'], capture_output=True, text=True).stdout.strip()
        res = dict(spectra=n, mb_served=n_bytes / 1e6, kb_per_spectrum_file=np.mean(sizes) / 1e3, xlsx_kb=(tree/'metadata.xlsx').stat().st_size / 1e3,
                   cold_s=round(cold, 1), warm_s=round(warm, 1), requests=n_req, requests_warm=n_req2, workers=a.workers, cores=os.cpu_count(), load_avg_1min=round(load, 1),
                   commit=commit, command='MP_CNN_DATA=../shared/data python ' + ' '.join(sys.argv))
        if a.out: Path(a.out).write_text(json.dumps(res, indent=1) + '\n')
        print(f"mirror of {n} spectra written in {t_write:.1f} s; cold rebuild {cold:.1f} s ({n_req} requests, {n_bytes/1e6:.1f} MB served, "
              f"{a.workers} threads); from the cache {warm:.1f} s ({n_req2} requests); rebuilt rows equal the shared copy, cell for cell: yes "
              f"({os.cpu_count()} cores, load average {load:.1f})")
    finally: shutil.rmtree(tmp, ignore_errors=True)
