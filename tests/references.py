"""Independent host-side references for the solver tests (float64 NumPy, no ca_plast solver code)."""

import numpy as np


def drive_pieces(rule, protocol):
    """Host-side float64 walk through a protocol: (length ms, H_p, H_d) of each stretch of
    constant threshold drive, from the exact calcium (linear GB2012 model)."""
    cal = rule.calcium
    tau_ca, D, theta_p, theta_d = (float(x) for x in (cal.tau_ca, cal.D, rule.theta_p, rule.theta_d))
    events = sorted([(t + D, 0) for t in protocol.pre if t + D <= protocol.duration] + [(t, 1) for t in protocol.post])
    c, t0 = 0.0, 0.0
    for t1, kind in events + [(protocol.duration, 2)]:
        s = t1 - t0
        crossings = [min(tau_ca * np.log(c / th), s) if c > th else 0.0 for th in (theta_p, theta_d)]
        bounds = sorted({0.0, s, *crossings})
        for u0, u1 in zip(bounds[:-1], bounds[1:]):
            mid = c * np.exp(-(u0 + u1) / 2 / tau_ca)
            yield u1 - u0, float(mid >= theta_p), float(mid >= theta_d)
        c, t0 = c * np.exp(-s / tau_ca) + (float(cal.C_pre) if kind == 0 else float(cal.C_post) if kind == 1 else 0.0), t1


def gaussian_law(rule, protocol):
    """Final rho = gain rho0 + shift + N(0, variance) when the cubic is negligible: the exact
    Ornstein-Uhlenbeck map of each piece of constant drive, composed over the protocol."""
    gamma_p, gamma_d, tau, sigma = (float(x) for x in (rule.gamma_p, rule.gamma_d, rule.tau, rule.sigma))
    gain, shift, variance = 1.0, 0.0, 0.0
    for length, h_p, h_d in drive_pieces(rule, protocol):
        rate = (gamma_p * h_p + gamma_d * h_d) / tau
        if rate > 0:
            decay = np.exp(-rate * length)
            gain, shift = decay * gain, decay * shift + gamma_p * h_p / tau / rate * (1 - decay)
            variance = decay**2 * variance + sigma**2 * (h_p + h_d) / tau * (1 - decay**2) / (2 * rate)
    return gain, shift, variance
