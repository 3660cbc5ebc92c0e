"""Outside I/O with deadlines and size caps: JSON-RPC to nodes and JSON over HTTP to venues."""
