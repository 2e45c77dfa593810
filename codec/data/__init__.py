"""Data: MNIST through TFDS (offline IDX builder), training crops from image folders, reading photos."""
