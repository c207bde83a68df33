"""Scaling analysis for hscale results, imported as hscale.analysis.

Pure functions of the run record, apart from the few that read or write files:
record.read_summary and read_manifest, report_files, compare_files, plot.save_figures.
"""
