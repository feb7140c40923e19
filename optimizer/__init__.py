"""What the readings mean: stores, models, recommenders and the HTTP API.

Built in a later step; the package exists so the layout is stable.
"""
