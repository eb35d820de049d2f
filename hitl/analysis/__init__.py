"""Override mining and threshold recommendation: the analysts' side of the product."""
