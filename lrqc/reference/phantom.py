"""MATLAB's modified Shepp–Logan head phantom: the test image of the LPLR facts (note, sec. 4)."""

from __future__ import annotations

import numpy as np

# Toft's modified Shepp–Logan table, as in MATLAB's phantom.m: (A, a, b, x0, y0, phi in degrees).
MODIFIED_SHEPP_LOGAN: tuple[tuple[float, float, float, float, float, float], ...] = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.8740, 0.0, -0.0184, 0.0),
    (-0.2, 0.1100, 0.3100, 0.22, 0.0, -18.0),
    (-0.2, 0.1600, 0.4100, -0.22, 0.0, 18.0),
    (0.1, 0.2100, 0.2500, 0.0, 0.35, 0.0),
    (0.1, 0.0460, 0.0460, 0.0, 0.1, 0.0),
    (0.1, 0.0460, 0.0460, 0.0, -0.1, 0.0),
    (0.1, 0.0460, 0.0230, -0.08, -0.605, 0.0),
    (0.1, 0.0230, 0.0230, 0.0, -0.606, 0.0),
    (0.1, 0.0230, 0.0460, 0.06, -0.605, 0.0),
)


def shepp_logan(n: int = 1000) -> np.ndarray:
    """`phantom('Modified Shepp-Logan', n)` of MATLAB: an n × n float64 image.

    As phantom.m: xax = ((0:n-1) - (n-1)/2) / ((n-1)/2), x varies along columns, y = rot90 of the
    x grid (y = +1 on the first row, -1 on the last), each ellipse's intensity A is added where
    ((x' cos φ + y' sin φ)² / a² + (y' cos φ - x' sin φ)² / b²) <= 1, x' = x - x0, y' = y - y0,
    in table order.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"phantom size n must be an integer >= 2, got {n!r}")
    n = int(n)
    xax = (np.arange(n) - (n - 1) / 2) / ((n - 1) / 2)
    xg = np.broadcast_to(xax, (n, n))
    yg = np.rot90(xg)
    p = np.zeros((n, n))
    for amp, a, b, x0, y0, phi_deg in MODIFIED_SHEPP_LOGAN:
        phi = phi_deg * np.pi / 180
        cosp, sinp = np.cos(phi), np.sin(phi)
        x = xg - x0
        y = yg - y0
        inside = ((x * cosp + y * sinp) ** 2) / a**2 + ((y * cosp - x * sinp) ** 2) / b**2 <= 1
        p[inside] += amp
    return p
