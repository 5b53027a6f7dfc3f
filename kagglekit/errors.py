"""Every error a kagglekit user can fix, in one place (as scikit-learn keeps its exceptions in one module).

A `KagglekitError` message says what is wrong, where (file, line, id, member) and what to do. The command line
prints it as one line and exits with status 2; any other exception is a bug in kagglekit (a short traceback and
status 1). Library code raises the most specific subclass; callers that only need to know "the user can fix this"
catch `KagglekitError`.
"""

from __future__ import annotations

from pathlib import Path


class KagglekitError(Exception):
    """Base of every error whose message tells the user what to fix."""


class PluginError(KagglekitError):
    """A competition plug-in is invalid (caught when it registers), or a competition name is unknown."""


class RecipeError(KagglekitError):
    """A recipe is invalid; the message names the file, the member and the key."""


class DataError(KagglekitError):
    """The data on disk does not match the competition's layout, or a folder cannot be used."""


class ImageReadError(DataError):
    """An image file (photo or DICOM) that cannot be turned into an image, with a reason a human can act on."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(Path(path), reason)  # both in args, so the error pickles across processes
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class DicomReadError(ImageReadError):
    """A DICOM file that cannot be turned into an image."""


def one_line(exc: BaseException) -> str:
    """A library's (possibly multi-line, plugin-by-plugin) exception message as one short line for a reason."""
    lines = (line.strip() for line in str(exc).splitlines())
    text = "; ".join(line for line in lines if line).replace(":;", ":") or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class SubmissionError(KagglekitError):
    """Predictions cannot be turned into a valid submission, or a submission file cannot be checked."""


class BudgetError(KagglekitError):
    """A prediction cannot finish within its time budget (a code competition's limit); found before the work starts."""


class KaggleError(KagglekitError):
    """Talking to Kaggle failed in a way the user can fix; the message says how."""


class CredentialsError(KaggleError):
    """No usable Kaggle credentials were found."""


__all__ = [
    "BudgetError", "CredentialsError", "DataError", "DicomReadError", "ImageReadError", "KaggleError", "KagglekitError",
    "PluginError", "RecipeError", "SubmissionError",
]  # fmt: skip
