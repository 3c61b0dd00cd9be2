"""Proposing DeBut chains for an M x D layer, in the two styles of the DeBut paper.

Lin et al. (NeurIPS 2021, section 3) build chains whose sizes either move
monotonically from D to M ("monotonic") or first grow past both and then shrink
("bulging"). Both are built here from one rule that makes the product dense: pick
factorizations D = s_0 * ... * s_{n-1} and M = r_0 * ... * r_{n-1}, and give factor k
the diagonal size t_k = r_0 * ... * r_{k-1}. Factor k then has q_k / (s_k t_k) =
D / (s_0 ... s_k) blocks, the last factor a single block, and every output of the
product depends on every input (tests check this against `chain_density`).
The style is the pairing and order of the (s_k, r_k): monotonic chains keep every
factor shrinking (r_k <= s_k, M <= D) or growing (r_k >= s_k); bulging chains put
the most expanding factors first and move primes of the earliest s to the last
factor's s until the middle of the chain is wider than both ends.
"""
from nomac.model.butterfly_spec import check_chain

STYLES = ("monotonic", "bulging")


def radix_split(n: int, radix: int) -> list[int]:
    """n as a product of factors <= radix, largest first (a prime above radix stays whole)."""
    parts = []
    while n > 1:
        divisor = next((d for d in range(min(radix, n), 1, -1) if n % d == 0), None)
        if divisor is None:
            divisor = next(d for d in range(2, n + 1) if n % d == 0)
        parts.append(divisor)
        n //= divisor
    return sorted(parts, reverse=True)


def chain_from_pairs(in_features: int, pairs) -> list[tuple[int, int, int, int, int]]:
    """Shapes [p, q, r, s, t] for factors with (s_k, r_k) in order, t_k = r_0 ... r_{k-1}."""
    shapes, q, t = [], in_features, 1
    for s, r in pairs:
        p = q // s * r
        shapes.append((p, q, r, s, t))
        q, t = p, t * r
    return shapes


def _padded(a: list[int], b: list[int]) -> tuple[list[int], list[int]]:
    n = max(len(a), len(b), 1)
    return a + [1] * (n - len(a)), b + [1] * (n - len(b))


def _drop_identities(pairs):
    kept = [pair for pair in pairs if pair != (1, 1)]
    return kept or [(1, 1)]


def monotonic_chain(out_features: int, in_features: int, radix: int = 2) -> list[tuple]:
    """A dense chain whose sizes move monotonically from D to M (square: a classic butterfly
    for radix 2 and a power of two, factors (2, 2, 2^k))."""
    _check_sizes(out_features, in_features, radix)
    s_parts, r_parts = radix_split(in_features, radix), radix_split(out_features, radix)
    while True:
        s, r = _padded(sorted(s_parts, reverse=True), sorted(r_parts, reverse=True))
        shrinking = out_features <= in_features
        if all((rk <= sk) if shrinking else (rk >= sk) for sk, rk in zip(s, r)):
            break
        # A part of the larger side is too small for its partner: fold its smallest part
        # into its largest (or, once it is whole, the other side's), down to one dense
        # factor at worst.
        parts = s_parts if shrinking else r_parts
        if len(parts) < 2:
            parts = r_parts if shrinking else s_parts
        parts.sort()
        parts[-1] *= parts.pop(0)
    shapes = chain_from_pairs(in_features, _drop_identities(list(zip(s, r))))
    return list(check_chain("monotonic_chain", shapes, in_features, out_features, density="refuse"))


def bulging_chain(out_features: int, in_features: int, radix: int = 2) -> list[tuple]:
    """A dense chain that first grows past max(M, D) and then shrinks to M."""
    _check_sizes(out_features, in_features, radix)
    s, r = _padded(radix_split(in_features, radix), radix_split(out_features, radix))
    if len(s) < 2:
        s, r = s + [1], r + [1]
    s, r = sorted(s), sorted(r, reverse=True)      # the most expanding factors first
    widest = max(out_features, in_features)

    def sizes(s, r):
        size, out = in_features, []
        for sk, rk in zip(s, r):
            size = size // sk * rk
            out.append(size)
        return out

    while max(sizes(s, r)[:-1]) <= widest:
        # Move the smallest prime of the earliest s > 1 to the last factor's s.
        first = next((k for k in range(len(s) - 1) if s[k] > 1), None)
        if first is None:
            raise ValueError(f"bulging_chain: no bulging chain of radix {radix} found for "
                             f"M = {out_features}, D = {in_features} (no intermediate size can exceed "
                             f"max(M, D) = {widest} with a dense chain)")
        prime = next(d for d in range(2, s[first] + 1) if s[first] % d == 0)
        s[first] //= prime
        s[-1] *= prime
    shapes = chain_from_pairs(in_features, _drop_identities(list(zip(s, r))))
    return list(check_chain("bulging_chain", shapes, in_features, out_features, density="refuse"))


def propose_chain(out_features: int, in_features: int, style: str = "monotonic", radix: int = 2) -> list[tuple]:
    """A dense chain for an M x D weight in the given style (see the module docstring)."""
    if style not in STYLES:
        raise ValueError(f"propose_chain: style = {style!r}: must be one of {', '.join(STYLES)}")
    return (monotonic_chain if style == "monotonic" else bulging_chain)(out_features, in_features, radix)


def _check_sizes(out_features, in_features, radix):
    for name, value in (("out_features", out_features), ("in_features", in_features)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"chain: {name} = {value!r}: must be a positive integer")
    if isinstance(radix, bool) or not isinstance(radix, int) or radix < 2:
        raise ValueError(f"chain: radix = {radix!r}: must be an integer >= 2")
