"""What importing `scipy.signal` and `torch` would add to `mp-cnn classify`'s start: each module imported in a fresh process that
already holds what the command line imports (`mp_cnn.classify`: numpy, pandas, the folded numpy network), timed (wall clock) and
its resident-memory growth read from /proc/self/status; the median of `--reps` processes, one module at a time. Chapter 1 (why the
Savitzky-Golay weights are computed with numpy) and chapter 3b (why the command line runs the network without torch) quote it.

    python scripts/import_cost.py --reps 5            # -> results/import_cost.csv

The machine is shared: `load` is the 1-minute load average before and after, and the figures are read against it.
"""
import argparse, datetime, os, platform, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd

from mp_cnn.checkpoint import git_commit

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import importlib, sys, time
import mp_cnn.classify                                  # what the command line holds before it reads a file
assert {m!r} not in sys.modules
rss = lambda: int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024
r0, t0 = rss(), time.perf_counter()
importlib.import_module({m!r})
print(time.perf_counter() - t0, rss() - r0)
"""

def cost(module, # a module `mp_cnn.classify` does not import
         reps=5, # fresh processes
        ):
    "Median seconds and MB of resident memory that importing `module` adds, over `reps` fresh processes."
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    runs = [tuple(map(float, subprocess.run([sys.executable, '-c', CHILD.format(m=module)], capture_output=True, text=True, check=True,
                                            env=env).stdout.split())) for _ in range(reps)]
    return tuple(np.median(runs, 0))

def hardware():
    "CPU model, cores, numpy and torch versions (torch's read from its metadata: this process never imports it)."
    from importlib.metadata import version
    cpu = platform.machine()
    try: cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except Exception: pass
    return f"{cpu}, {os.cpu_count()} cores, numpy {np.__version__}, scipy {version('scipy')}, torch {version('torch')}"

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--reps', type=int, default=5)
    p.add_argument('--out', default=str(ROOT/'results'/'import_cost.csv'))
    a = p.parse_args()
    rows = []
    for m in ('scipy.signal', 'torch'):
        l0 = os.getloadavg()[0]
        s, mb = cost(m, a.reps)
        rows.append(dict(module=m, after='mp_cnn.classify', wall_s=round(s, 2), rss_mb=round(mb), reps=a.reps, load=f'{l0:.1f} -> {os.getloadavg()[0]:.1f}',
                         hardware=hardware(), commit=(git_commit() or '')[:7], date=datetime.datetime.now().isoformat(timespec='seconds'),
                         command=f'python scripts/import_cost.py --reps {a.reps}'))
    df = pd.DataFrame(rows)
    df.to_csv(a.out, index=False)
    print(df.to_string(index=False))
