"""The `rdpipe` command line: the top layer, above pipelines, serving and the codec library."""
