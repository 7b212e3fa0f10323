"""Training recipes, one module per family of methods; only worker processes import them."""
