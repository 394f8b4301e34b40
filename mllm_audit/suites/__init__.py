"""Suites: the item schema, how an item becomes scoring requests (one sign: margin = logp(y_more) -
logp(y_less)), and the dataset builders that write suites.
"""
