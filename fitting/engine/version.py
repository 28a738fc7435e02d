"""Version of the fitting engine, stored with every fit (importing it does not import torch)."""

ENGINE_VERSION = "1.0"
