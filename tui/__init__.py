"""The taskrpc dashboard (`taskrpc-tui`): a Textual app fed live by the server's WebSocket."""
