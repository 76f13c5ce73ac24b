"""Reporting: the demo report and plots."""
