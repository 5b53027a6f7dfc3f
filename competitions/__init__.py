"""kagglekit's built-in competition plug-ins. Importing this package registers them."""

from competitions import paddy  # noqa: F401
