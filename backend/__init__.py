"""taskrpc server: a JSON-RPC job queue that runs one job at a time, in order."""

__version__ = "0.1.0"
