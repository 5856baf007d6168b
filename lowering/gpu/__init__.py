"""What the GPU targets (NVVM for Hopper, ROCDL for CDNA) share: the architectures and the tiling policies."""
