"""Linear algebra: batched (randomized) SVD, low-rank approximation and the SVD codec."""
