"""One file per architecture family: how a card's model is loaded, prompted and scored. Checked against
the stock forward in tests/models.
"""
