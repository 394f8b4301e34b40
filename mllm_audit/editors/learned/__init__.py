"""Learned editors (MEND, KE, SERAC): a trained state that maps an edit request to a weight change or a
routed counterfactual model.
"""
