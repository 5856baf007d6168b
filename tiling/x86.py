"""x86 tiling policy: tile sizes and the tile-level body of each kernel kind, for tessera-tile-choose-tiles.

The body lists what one worker (a core) keeps in fast memory ("cache": the core's L2; "registers": the
accumulators of the register block) and what it computes per tile; `tessera-tile-compute-footprint`
sums it. The GEMM tile sizes come from the GEMM emitter's own `choose_tiles`, so the choice and the code
that uses it cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tessera.tiling import x86_gemm as gemm
from tessera.tiling.choice import TileChoice


def gemm_spec(dims: Mapping[str, Any], weight_dtype: str) -> gemm.GemmSpec:
    return gemm.GemmSpec(
        n=int(dims["n"]),
        k=int(dims["k"]),
        epilogue=str(dims["epilogue"]),
        bias=bool(dims["bias"]),
        row_scale=bool(dims.get("row_scale", 0)),
        weight_dtype=weight_dtype,
        x_dtype=str(dims.get("x_dtype", "f32")),
        y_dtype=str(dims.get("y_dtype", "f32")),
    )


def gemm_dims(spec: gemm.GemmSpec) -> dict[str, int | str]:
    """A matmul kernel's Tile-IR dims for a GEMM (the inverse of gemm_spec; the weight dtype is a tile)."""
    return {"n": spec.n, "k": spec.k, "epilogue": spec.epilogue, "bias": int(spec.bias),
            "row_scale": int(spec.row_scale), "x_dtype": spec.x_dtype, "y_dtype": spec.y_dtype}  # fmt: skip


def gemm_tile_sizes(spec: gemm.GemmSpec, tiles: gemm.GemmTiles) -> dict[str, int]:
    """kernels/gemm.py's tiles: the blocking, and `weight_bf16`, the element type the packed weight is read in."""
    return {**{name: value for name, value in vars(tiles).items()}, "weight_bf16": int(spec.weight_dtype == "bf16")}


def _matmul(dims: Mapping[str, Any], precision: str) -> TileChoice:
    """kernels/gemm.py's blocking (tiling/x86_gemm.py choose_tiles says why these sizes), a program per
    weight panel; the weight read in bf16 under the bf16 precision."""
    spec = gemm_spec(dims, "bf16" if precision == "bf16" else "f32")
    tiles = gemm.choose_tiles(spec)
    return TileChoice(gemm_tile_sizes(spec, tiles), grid=gemm.panel_count(spec, tiles), parallel="panels")


def _ssd(dims: Mapping[str, Any], precision: str) -> TileChoice:
    """kernels/mamba.py's ssd_scan: a ranged body over heads that the runtime splits only at multiples of
    `align`, a group's heads (they share one C·Bᵀ per chunk); its products in register blocks of 4 rows x 64
    columns (16 accumulators, as the GEMM's; a head of 80 channels as 64 + 16 columns, the 16 in blocks of
    16 rows) where `accumulators` allows (AVX2's variant: 4 x 16), scores `lanes` at a time."""
    align = int(dims["num_heads"]) // int(dims["n_groups"])
    tiles = {"chunk": int(dims["chunk_size"]), "mr": 4, "nr": 64, "lanes": gemm.VECTOR,
             "accumulators": gemm.AVX512_ACCUMULATORS, "align": align}  # fmt: skip
    if precision == "bf16":  # its AMX variant may round the products' operands (matrix_scan_tiles)
        tiles["operand_bf16"] = 1
    return TileChoice(tiles, grid=int(dims["num_heads"]), parallel="heads", ranged=True)


def matrix_scan_tiles(dims: Mapping[str, Any]) -> dict[str, int] | None:
    """kernels/ssd_matrix.py's tiles (its AMX variant, for a bf16 artifact): the instruction's m, n, k (its
    products in row pairs of 2 m); None where N is not a whole number of row pairs or P of n."""
    from tessera.arch import AMX_BF16
    from tessera.kernels.ssd_matrix import fits

    tiles = {"chunk": int(dims["chunk_size"]), "mt": AMX_BF16.m, "nt": AMX_BF16.n, "kt": AMX_BF16.k,
             "align": int(dims["num_heads"]) // int(dims["n_groups"])}  # fmt: skip
    return tiles if fits(dims, tiles) else None


# The scratch of one attention query block (queries, output rows and scores, f32) fits in half of L2, so that
# the K / V blocks streaming through keep the rest.
ATTENTION_SCRATCH_BYTES = 512 * 1024


def _attention(dims: Mapping[str, Any], precision: str) -> TileChoice:
    """kernels/attention.py's row-blocked form: a kv group's query heads times block_q tokens are the rows
    of one tile (block_q at most 64 and as ATTENTION_SCRATCH_BYTES allows), scores and p · V in the GEMM's
    register blocks (x86_gemm's 6 rows x 64 columns), scores of fewer than 4 rows as dot products (measured
    on the emitter this replaced: transposing a K block pays from about 3 rows)."""
    d, block_k = int(dims["head_dim"]), 64
    group = int(dims["num_heads"]) // int(dims["num_kv_heads"])
    block_q = max(1, min(64, ATTENTION_SCRATCH_BYTES // (group * (2 * d + block_k) * 4)))
    tiles = gemm.GemmTiles(nr=64, mr=6, kc=d, mc=6, ku=4)
    choice = {"block_q": block_q, "block_k": block_k, "mr": tiles.mr, "nr": tiles.nr, "ku": tiles.ku,
              "lanes": tiles.lanes, "min_chains": tiles.min_chains, "accumulators": tiles.accumulators,
              "dot_rows": 4}  # fmt: skip
    return TileChoice(choice, grid=int(dims["num_heads"]), parallel="heads", ranged=True)


def _row_width(dims: Mapping[str, Any], key: str) -> int:
    """The row a row kernel strides over: a dim, or a gated RMSNorm group's I / G columns."""
    if key == "group_width":
        return int(dims["num_heads"]) * int(dims["head_dim"]) // int(dims["n_groups"])
    return int(dims[key])


def _row_block(width_key: str) -> Callable[[Mapping[str, Any], str], TileChoice]:
    """A kernel written in kernels/rows.py: `block` features per step, four AVX-512 vectors (so that a
    reduction keeps four partial sums) or the row rounded up to a power of two when it is shorter."""

    def choose(dims: Mapping[str, Any], precision: str) -> TileChoice:
        width = _row_width(dims, width_key)
        return TileChoice({"block": 64 if width >= 64 else max(8, 1 << (width - 1).bit_length())})

    return choose


# conv_silu's programs per call: enough for the runtime's threads to share, few enough that each streams long
# stretches of every row.
CONV_PROGRAMS = 2


# Bytes of a panel's input rows that one chunk of conv_silu keeps in cache while its blocks pass: an L1d's
# worth. Measured on the 2-core EPYC (BENCH mixer, 4096 channels in panels of 2048: 4 rows a chunk), T=2048
# took 5.1 ms against 6.2 at 8 rows, 11 at 16 and 16 unchunked (the rows' stride defeats the prefetchers).
CONV_CHUNK_BYTES = 32 * 1024


def _conv(dims: Mapping[str, Any], precision: str) -> TileChoice:
    """kernels/mamba.py's conv_silu: `block` channels at a time (two AVX-512 vectors: the taps, the K - 1
    carried inputs, the bias and the sum fit the registers), over panels of whole blocks that split the
    channels into CONV_PROGRAMS programs, in chunks of rows whose panel fits CONV_CHUNK_BYTES (at least one
    row); the grid counts panels."""
    channels = int(dims["channels"])
    block = min(32, max(8, 1 << (channels - 1).bit_length()))
    blocks = -(-channels // block)
    panel = block * -(-blocks // CONV_PROGRAMS)
    chunk = max(1, CONV_CHUNK_BYTES // (4 * panel))
    tiles = {"block": block, "panel": panel, "chunk": chunk}
    return TileChoice(tiles, grid=-(-channels // panel), parallel="channel_panels")


def _experts(dims: Mapping[str, Any], precision: str) -> TileChoice:
    """kernels/moe.py's moe_experts: a program per expert, its GEMMs blocked as the projections' (the up and
    down products' own K blocks), in groups of mc slots; the slot rows gathered and copied `block` features
    at a time (four AVX-512 vectors)."""
    ffn, latent = int(dims["ffn"]), int(dims["latent"])
    weight = "bf16" if precision == "bf16" else "f32"
    up = gemm.choose_tiles(gemm.GemmSpec(n=ffn, k=latent, epilogue="relu2", weight_dtype=weight))
    down = gemm.choose_tiles(gemm.GemmSpec(n=latent, k=ffn, epilogue="store", weight_dtype=weight))
    tiles = {name: value for name, value in vars(up).items() if name != "kc"}
    tiles |= {"up_kc": up.kc, "down_kc": down.kc, "group": up.mc, "block": 64, "weight_bf16": int(weight == "bf16")}
    return TileChoice(tiles, grid=int(dims["num_experts"]), parallel="experts")


POLICIES: dict[str, Callable[[Mapping[str, Any], str], TileChoice]] = {
    "matmul": _matmul,
    "ssd_scan": _ssd,
    "ssd_step": _row_block("state_size"),
    "attention": _attention,
    "kv_append": _row_block("head_dim"),
    "embedding": _row_block("hidden"),
    "rmsnorm": _row_block("hidden"),
    "rms_scale": _row_block("hidden"),
    "gated_rmsnorm": _row_block("group_width"),
    "conv_silu": _conv,
    "moe_router": _row_block("num_experts"),
    "moe_experts": _experts,
    "moe_combine": _row_block("latent"),
}
