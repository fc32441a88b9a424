import numpy as np
import pytest
import torch

from smug.mri import center_crop, channels_to_complex, clamp_complex, complex_to_channels, fft2c, ifft2c, rss
from smug.mri import sens_combine, sens_expand
from tests.conftest import random_complex, random_sens_maps


def _numpy_fft2c(x):
    """fastMRI's definition written with numpy: ifftshift, orthonormal FFT, fftshift."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


@pytest.mark.parametrize("shape", [(8, 8), (7, 10), (2, 3, 9, 6)])
def test_fft2c_matches_fastmri_definition(shape, gen):
    x = random_complex(shape, gen)
    np.testing.assert_allclose(fft2c(x).numpy(), _numpy_fft2c(x.numpy()), atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 8), (7, 10)])
def test_ifft2c_inverts_and_is_unitary(shape, gen):
    x = random_complex(shape, gen)
    k = fft2c(x)
    torch.testing.assert_close(ifft2c(k), x)
    assert torch.allclose(k.norm(), x.norm())


def test_dc_term_is_centred():
    x = torch.ones(6, 5, dtype=torch.complex64)
    k = fft2c(x)
    assert k.abs().argmax().item() == 3 * 5 + 2
    assert k.abs()[3, 2] == pytest.approx((6 * 5) ** 0.5, rel=1e-6)


def test_fft_rejects_real_input():
    with pytest.raises(TypeError, match="complex"):
        fft2c(torch.zeros(4, 4))


def test_rss_and_sense_combination(gen):
    sens = random_sens_maps(2, 4, 6, 5, gen)
    image = random_complex((2, 6, 5), gen)
    coils = sens_expand(image, sens)
    torch.testing.assert_close(sens_combine(coils, sens), image)
    torch.testing.assert_close(rss(coils), image.abs())


def test_center_crop_offsets_match_fastmri():
    x = torch.arange(7 * 9).reshape(7, 9)
    crop = center_crop(x, (3, 4))
    assert crop[0, 0].item() == x[2, 2].item()
    assert crop.shape == (3, 4)
    with pytest.raises(ValueError, match="cannot centre-crop"):
        center_crop(x, (8, 4))


def test_channels_round_trip_and_clamp(gen):
    x = random_complex((3, 4, 5), gen)
    ch = complex_to_channels(x)
    assert ch.shape == (3, 2, 4, 5)
    torch.testing.assert_close(channels_to_complex(ch), x)
    clamped = clamp_complex(x * 10, -1, 1)
    assert clamped.real.abs().max() <= 1 and clamped.imag.abs().max() <= 1
    with pytest.raises(ValueError, match="2 channels"):
        channels_to_complex(torch.zeros(3, 3, 4, 5))
