"""Synthlab's library: store, generation, slicing, training backends, evaluation and charts.

Importable and testable without Streamlit; the pages and the CLI call the same functions.
"""
