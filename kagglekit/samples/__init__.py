"""Synthetic datasets in a competition's real layout, and the painters' kits the plug-ins draw them with."""

from kagglekit.samples.writer import SampleData, empty_submission, ensure_sample, write_sample

__all__ = ["SampleData", "empty_submission", "ensure_sample", "write_sample"]
