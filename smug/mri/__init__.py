"""MRI physics over tensors: centred FFTs, the multicoil SENSE operators, data consistency,
sampling masks, wavelets, coil combination and the k-space consistency losses."""
