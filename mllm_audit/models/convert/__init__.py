"""Converters from original release files to folders the loader reads, kept apart from model code."""
