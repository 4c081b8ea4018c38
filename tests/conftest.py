import os
from pathlib import Path
import pytest

SHARED = Path(os.environ.get('MP_CNN_DATA', Path(__file__).resolve().parents[2]/'shared'/'data'))

@pytest.fixture(scope='session')
def shared():
    if not SHARED.is_dir(): pytest.fail(f"set MP_CNN_DATA to the shared data folder (looked in {SHARED})")
    return SHARED
