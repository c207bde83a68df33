"""Scaling analysis for hscale results, imported as hscale.analysis.

Pure functions of the run record, apart from the few that read or write files:
record.read_summary, report.write_report and load_run, compare_files, plot.save_figures.
"""
