"""hamgan: class-conditional GANs whose global context comes from matrix decomposition."""
__version__ = "0.1.0"
