"""Synthetic datasets in a competition's real layout, and the painters' kits the plug-ins draw them with.

Names load on first use: plug-ins import the painters' kits when they register, which must not load pandas.
"""

from kagglekit._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "SampleData": ".writer", "empty_submission": ".writer", "ensure_sample": ".writer", "write_sample": ".writer",
})  # fmt: skip
