"""Attribute classifiers that read a demographic group from a generated image (gen-scan, locate)."""
