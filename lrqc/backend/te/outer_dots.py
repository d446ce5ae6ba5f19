"""to_te for the thin float32 products of the compensated kernels in outer-product form:
out[i, c] = Σ_k X[i, k] Yt[c, k], with Yt transposed first so that one k's w values lie side
by side. Each step of k multiplies X[i, k], broadcast, by vectors of those values, and a block
of rows keeps its sums in registers (schedule.outer). X is read once, in its
stored order, one scalar per row and step; only the small Yt is read again, from cache.

Two forms, by the schedule rule's registers (ScheduleRule.wide_floats: the VNNI and AMX rules
have AVX-512's; every other CPU rule, AVX2's among them, takes the narrow form):
  wide    (AVX-512's 32 registers of 16 lanes) 8 rows x 16 columns of sums, each run over the
          even k and the odd k apart and added at the end (HALVES);
  narrow  (AVX2's 16 registers of 8 lanes) 4 rows x up to 24 columns (narrow_group), the
          groups of columns one after another, each sum run over
          OUTER_PARTS contiguous parts of k one after the other and the parts added at the
          end (PARTS): a part's running sum is as long as a 16-lane dot product's lane
          (te.sketch.row_dots), so the rounding is comparable (not the same bits), and only
          one part's sums are live.

The randomized SVD's Rᵀ Q, whose sums run down R's rows, has its own narrow form
(outer_columns): 4 columns of R, each value a broadcast, against Q's rows in vectors."""

from __future__ import annotations

from ...plan import names
from ..compat import te

# rows of X a block takes (schedule.outer), by wide_floats: on AVX-512, 8 rows of 16 sums
# each, times the two halves, are 16 of its 32 registers; on AVX2, 4 rows of up to 24 sums
# (three registers each, narrow_group) are 12 of its 16, with 3 vectors of Y and a broadcast
OUTER_ROWS = {True: 8, False: 4}
# the narrow form's contiguous parts of k (a part: kq / 16 values, as each lane of a 16-lane
# dot product sums)
OUTER_PARTS = 16
# columns a vector holds (one step of the narrow form loads each of a block's vectors once)
OUTER_LANES = {True: 16, False: 8}


def narrow_group(w: int) -> int:
    """The columns the narrow form keeps sums of at once (w a multiple of 8): 24, 16 or 8, the
    most that divides w (4 rows x 3 vectors of 8 are 12 of AVX2's 16 registers)."""
    return next(g for g in (24, 16, 8) if w % g == 0)


def outer_form(w: int, rows: int, kq: int, wide: bool) -> bool:
    """Whether outer_dots computes a product of `rows` rows, w columns and kq terms a sum on
    the kind of target `wide` says: rows in whole blocks, w in whole vectors, and kq in
    whole parts of at least 2 values (narrow form; a part of one would leave its schedule
    no loop over k)."""
    if rows % OUTER_ROWS[wide] or w % OUTER_LANES[wide]:
        return False
    return kq % 2 == 0 if wide else (kq % OUTER_PARTS == 0 and kq >= 2 * OUTER_PARTS)


def outer_dots(X: te.Tensor, Yt: te.Tensor, rows: int, w: int, kq: int, name: str,
               wide: bool) -> te.Tensor:
    """out[i, c] = Σ_k X[i, k] Yt[c, k] (float32), k < kq, as outer products: Yt transposed
    (block name + ACROSS, kq x w), then the wide form's sums over the even and the odd k
    (name + HALVES), or the narrow form's over OUTER_PARTS contiguous parts of k (name +
    PARTS), added in order. The caller checks outer_form. On a 2-core Zen 3, 16 ranks at
    N = K = 4096, exact_w's narrow form took 3.3-3.4 ms against 5.6-6.1 for row dot products
    of 2 rows by 2 ranks, in the same process; R Z at 2048 x 2048 with 24 columns 1.2-1.3
    against 1.9-2.0."""
    Y = te.compute((kq, w), lambda k, c: Yt[c, k], name=name + names.ACROSS)
    if wide:
        k = te.reduce_axis((0, kq // 2), "k")
        sums = te.compute((rows, 2, w), lambda i, h, c: te.sum(
            X[i, 2 * k + h] * Y[2 * k + h, c], axis=k), name=name + names.HALVES)
        parts = 2
    else:
        parts, size = OUTER_PARTS, kq // OUTER_PARTS
        k = te.reduce_axis((0, size), "k")
        sums = te.compute((rows, parts, w), lambda i, h, c: te.sum(
            X[i, h * size + k] * Y[h * size + k, c], axis=k), name=name + names.PARTS)
    h = te.reduce_axis((0, parts), "h")
    return te.compute((rows, w), lambda i, c: te.sum(sums[i, h, c], axis=h), name=name)


def columns_form(w: int, kq: int) -> bool:
    """Whether outer_columns computes Rᵀ Q of kq columns of R and w columns of Q: w in whole
    vectors and kq in whole blocks of columns (always, where kq is padded to 16)."""
    return w % OUTER_LANES[False] == 0 and kq % OUTER_ROWS[False] == 0


def outer_columns(Qt: te.Tensor, R: te.Tensor, rows: int, w: int, kq: int, name: str
                  ) -> te.Tensor:
    """out[c, k] = Σ_i Qt[c, i] R[i, k] (float32), the narrow form of a product whose sums
    run down R's rows: Qt transposed (block name + ACROSS, rows x w, so that one row's w
    values lie side by side), the sums as (kq, w) (name + COLUMNS: per column k of R, each
    of R's values a broadcast against vectors of Q's row), then transposed back. Each sum
    runs over the rows in order, as the earlier form's do, so the bits are the same (the
    multiply-add of each term is the same operation). The caller checks columns_form."""
    Q = te.compute((rows, w), lambda i, c: Qt[c, i], name=name + names.ACROSS)
    i = te.reduce_axis((0, rows), "i")
    sums = te.compute((kq, w), lambda k, c: te.sum(Q[i, c] * R[i, k], axis=i),
                      name=name + names.COLUMNS)
    return te.compute((w, kq), lambda c, k: sums[k, c], name=name)
