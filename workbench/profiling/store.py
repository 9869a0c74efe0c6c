"""The results store moved to `workbench.store`; this name stays for the code that imports it from here."""

from workbench.store import KEY, ResultStore, StoreError, compare

__all__ = ["KEY", "ResultStore", "StoreError", "compare"]
