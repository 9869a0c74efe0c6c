"""The results store: runs and their rows, baselines per device and the tuning cache, in a SQLite file
or a shared PostgreSQL database (docs/store.md).

- `engine.py`: locations (path or URL), engines, one-line errors with masked credentials.
- `schema.py`: the tables and the encoding of non-finite numbers.
- `migrations.py`: schema versions and the steps between them.
- `results.py`: `ResultStore` and `compare` (noise-aware regression flags).
"""

from .engine import StoreError
from .results import KEY, ResultStore, compare

__all__ = ["KEY", "ResultStore", "StoreError", "compare"]
