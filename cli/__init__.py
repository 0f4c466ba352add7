"""taskrpc client: the `taskrpc` command line and the async client library it uses."""
