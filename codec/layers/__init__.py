"""Neural-network layers: GDN/IGDN, SignalConv2D, spectral and pixel normalization, small ops."""
