"""The one error of the data package (kept free of torch: decoding worker processes import it)."""


class DataError(ValueError):
    """A data set that is missing or malformed. The message says where we looked and what to provide."""
