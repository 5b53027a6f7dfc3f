"""From a download folder to an item table: locating the files, reading the tables, splits, image caches."""

from kagglekit._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "Items": ".items", "load_items": ".items", "load_test_items": ".items", "vocabularies": ".items",
    "locate_data": ".locate",
    "load_splits": ".splits", "make_folds": ".splits", "make_splits": ".splits", "save_splits": ".splits",
    "PreparedItems": ".images", "input_channels": ".images", "prepare_images": ".images", "recipe_cover": ".images",
    "CacheReport": ".cache", "CacheSpec": ".cache", "cache_images": ".cache", "load_cached": ".cache",
    "load_image": ".cache",
    "read_dicom": ".dicom", "read_photo": ".photos",
    "apply_corrections": ".corrections", "read_corrections": ".corrections",
})  # fmt: skip
