"""dynds: the distribution's top level, the `dynds` command (dynds/cli.py) over the library and the service.

The import graph runs one way: ``dynds`` -> ``app``, ``worker`` -> ``dynds_core``. ``dynds_core`` is the
library (``pip install dynds``); ``app`` and ``worker`` are the service (``pip install 'dynds[service]'``);
only this package, the composition root, imports both ``app`` and ``worker``.
"""

from dynds_core import __version__

__all__ = ["__version__"]
