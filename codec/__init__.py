"""rdpipe codec library: pure TensorFlow models, priors, entropy models and coders (no TFX)."""
