"""kagglekit's built-in competition plug-ins. Importing this package registers them."""

from kagglekit.competitions import (
    dogs,  # noqa: F401
    paddy,  # noqa: F401
    planet,  # noqa: F401
    siim,  # noqa: F401
    xray,  # noqa: F401
)
