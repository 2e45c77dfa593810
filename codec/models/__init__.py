"""The codec models, one file per model (+ its training): the MNIST tutorial codec and Ballé et al. 2017."""
