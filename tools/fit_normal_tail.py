"""Fits the polynomials of `src/cpu/vector_math.rs` `normal_tail`: G(a) = e^(a²/2)·Φ(−a),
the standard normal's left tail without its Gaussian factor, for a in [0, 14.5] (past 14.5,
Φ(−a) is below f32's smallest subnormal).

Three pieces, each a degree-9 polynomial so that one Horner loop with its coefficients
selected per piece serves all three:
  a in [0, 1.5):   G(a)      in powers of a − 0.75
  a in [1.5, 4):   G(a)      in powers of a − 2.75
  a in [4, 14.5]:  a·G(a)    in powers of 1/a² − c (c the middle of 1/a² over the piece);
                   a·G(a) tends to 1/√(2π) and is smooth in 1/a².
Least squares in relative error on 3000 Chebyshev points per piece, in float64 against
SciPy's erfcx (G(a) = erfcx(a/√2)/2), coefficients rounded to float32. The script then
evaluates the pieces as the Rust code does, in float32, and prints the largest error in
units in the last place; the Rust tests check the same bound against an independent f64
evaluation.

    python3 tools/fit_normal_tail.py        (needs numpy and scipy from PyPI)
"""

import numpy as np
from scipy.special import erfcx

F32 = np.float32
DEGREE = 9
PIECES = [(0.0, 1.5, False), (1.5, 4.0, False), (4.0, 14.5, True)]


def tail(a):
    return 0.5 * erfcx(a / np.sqrt(2.0))


def fit(lo, hi, inverse):
    n = 3000
    a = (np.cos(np.pi * (np.arange(n) + 0.5) / n) + 1) / 2 * (hi - lo) + lo
    if inverse:
        centre = (1 / lo**2 + 1 / hi**2) / 2
        u, y = 1 / a**2 - centre, a * tail(a)
    else:
        centre = (lo + hi) / 2
        u, y = a - centre, tail(a)
    v = np.vander(u, DEGREE + 1, increasing=True)
    coef, *_ = np.linalg.lstsq(v / y[:, None], np.ones_like(y), rcond=None)
    return F32(centre), coef.astype(F32)


def evaluate(a, centre, coef, inverse):
    u = (F32(1) / (a * a) - centre) if inverse else (a - centre)
    u = u.astype(F32)
    acc = np.full_like(u, coef[-1])
    for c in coef[-2::-1]:
        acc = (acc * u + c).astype(F32)
    return (acc / a).astype(F32) if inverse else acc


worst = 0.0
for lo, hi, inverse in PIECES:
    centre, coef = fit(lo, hi, inverse)
    a = np.linspace(lo, hi, 200001).astype(F32)[:-1]
    got = evaluate(a, centre, coef, inverse).astype(np.float64)
    want = tail(a.astype(np.float64))
    ulps = np.abs(got - want) / np.spacing(want.astype(F32)).astype(np.float64)
    worst = max(worst, ulps.max())
    kind = "a*G(a) in 1/a^2" if inverse else "G(a) in a"
    print(f"// [{lo}, {hi}): {kind} − {centre!r}; largest error {ulps.max():.2f} ulp")
    print(f"centre {np.format_float_positional(centre, unique=True)}")
    print("[" + ", ".join(np.format_float_scientific(c, unique=True) for c in coef) + "]")
print(f"largest error over [0, 14.5]: {worst:.2f} ulp")
