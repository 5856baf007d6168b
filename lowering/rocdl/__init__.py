"""The ROCDL target's kernel emitters (gpu dialect + rocdl MFMA, LDS in address space 3)."""
