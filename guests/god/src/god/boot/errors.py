"""Loader errors: a kernel image god cannot boot, with the reason."""


class LoaderError(ValueError):
    pass
