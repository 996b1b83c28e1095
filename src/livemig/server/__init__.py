"""The API server (``livemig server``): REST over the store, watch, auth, OpenAPI."""
