"""Run folders, owned in one place: the typed run record, identity hashes, locks, atomic outputs, signals.

Every command that writes a folder (scan, fix, gen-scan, train-editor) goes through this package.
"""
