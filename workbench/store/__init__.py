"""The results store: runs and their rows, baselines per device and the tuning cache, in a SQLite file
or a shared PostgreSQL database (docs/store.md).

- `engine.py`: locations (path or URL; `default_store_path`), engines, one-line errors with masked
  credentials.
- `schema.py`: the tables and the encoding of non-finite numbers.
- `migrations.py`: schema versions and the steps between them.
- `results.py`: `ResultStore` and `compare` (noise-aware regression flags).
- `meta.py`: `run_metadata()`, what every run is tagged with (device, versions, commit, host, time), and
  `results_dir()`, where a benchmark writes (`benchmarks/results/<device_folder()>/<topic>`).
"""

from .engine import STORE_ENV, StoreError, default_store_path
from .results import KEY, ResultStore, compare

__all__ = ["KEY", "ResultStore", "StoreError", "compare", "default_store_path", "STORE_ENV"]
