"""Per-backend variants written by `workbench promote`: one module per (op, backend), `<op>_<backend>.py`.

Each module holds a candidate's kernel and wrapper followed by a footer that sets
`OpSpec.variants[backend]` (and its status). Importing this package imports them all, in name order;
`workbench.ops` does that after every op module, so a promoted variant overrides one that an op
module declares for the same backend.
"""

import importlib
import pkgutil

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
