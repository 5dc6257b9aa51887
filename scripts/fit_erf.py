#!/usr/bin/env python3
"""Derives the coefficients of the JIT's f32 erf (jit/cpu/math.cpp, emit_erf_f32).

Two Chebyshev fits (near-minimax) computed at 40 digits with mpmath, printed rounded to f32:
  |x| < 1:         erf(x) / x - 1 = q(x^2), degree 6 (the kernel evaluates x + x q)
  1 <= |x| < 3.92: log(erfc(|x|)) = p(|x| - 1), degree 8 (the kernel evaluates 1 - exp(p))
Beyond 3.92 erfc(x) < 2^-25, so erf rounds to +-1 in f32.
Usage: python3 scripts/fit_erf.py   (needs mpmath)
"""
import struct

import mpmath as mp

mp.mp.dps = 40


def q(z):
    if z == 0:
        return 2 / mp.sqrt(mp.pi) - 1
    x = mp.sqrt(z)
    return mp.erf(x) / x - 1


def p(t):
    return mp.log(mp.erfc(t + 1))


def f32(v):
    return struct.unpack("f", struct.pack("f", float(v)))[0]


for name, fn, interval, n in (("q", q, [0, 1], 7), ("p", p, [0, mp.mpf("2.92")], 9)):
    coeffs, err = mp.chebyfit(fn, interval, n, error=True)  # highest degree first
    print(f"{name}: max fit error {mp.nstr(err, 3)}")
    print("  {" + ", ".join("%.9e" % f32(c) for c in coeffs) + "}")
