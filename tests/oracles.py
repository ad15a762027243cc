"""Independent NumPy oracles shared by the tests: explicit ODE steppers."""

import numpy as np


def euler_states(A, y0, T, K):
    """Explicit Euler for dY/dt = Y A: the K states at T/K, ..., T."""
    tau, y, out = T / K, y0, []
    for _ in range(K):
        y = y + tau * (y @ A)
        out.append(y)
    return np.stack(out)


def rk4_states(A, y0, T, K):
    """Classic RK4 for dY/dt = Y A: the K states at T/K, ..., T."""
    h, y, out = T / K, y0, []
    for _ in range(K):
        k1 = y @ A
        k2 = (y + h / 2 * k1) @ A
        k3 = (y + h / 2 * k2) @ A
        k4 = (y + h * k3) @ A
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(y)
    return np.stack(out)
