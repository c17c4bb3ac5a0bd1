"""dynamr: MapReduce over a Dynamo-style replicated key-value store.

The store's client API is re-exported here: :class:`Client` (blocking) and :class:`AsyncClient`.
"""

from dynamr.client import Client
from dynamr.errors import DynamrError
from dynamr.store.client import AsyncClient, GetResult

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "DynamrError", "GetResult", "__version__"]
