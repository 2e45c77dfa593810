"""rdpipe pipelines: pipeline assembly, runners and the `rdpipe` CLI."""
