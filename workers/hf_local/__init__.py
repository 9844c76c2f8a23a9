"""Local transformers and diffusers backends: weights on this machine, run in the pool's worker."""
