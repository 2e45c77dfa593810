"""rdpipe serving: model server and client for the SavedModel contract in `schemas/`."""
