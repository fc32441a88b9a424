"""Attacks on a reconstruction: perturbation geometry, PGD in k-space and image space, random
noise of the same size, the papers' protocols and the files attacks are stored in."""
