"""rdpipe TFX components (thin wrappers over `codec`); filled by the pipeline issue."""
