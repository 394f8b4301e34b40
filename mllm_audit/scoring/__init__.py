"""The scoring contract (contract.py: requests in, log-probabilities out) and the differentiable
quantities editors train on.
"""
