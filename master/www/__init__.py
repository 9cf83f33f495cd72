"""The web face of ci-master: REST and JSON-RPC over the data API (websocket and auth to come)."""
