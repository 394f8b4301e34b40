"""Tiny models built from configs (no hub): the stand-ins tests, benchmarks and the toy worlds load
through the real loading path.
"""
