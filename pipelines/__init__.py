"""rdpipe pipelines: the one TFX pipeline for every codec family, its configs and runners."""
