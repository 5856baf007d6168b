"""program.json checked before any launch: nothing native runs on a launch list that disagrees with its kernels.

A kernel is compiled for fixed dims: a state of [128, 3], a weight of [200, 64] packed in panels of 64, a
grid of 4 panels. The kernel reads and writes that many elements whatever it is passed, so a program.json
whose state shapes, weight shapes or grids differ from them makes the kernel run past the arrays it is
given. At compile time, lowering/programs.py records each kernel's signature in program.json's `kernels`
table: its kind and Tile-IR dims, what each argument must be (`arg_signature`: a weight's shape and
packing, a state's shape, dtype and kind, a buffer's features and dtype, a scalar), and the launch fields
it was compiled for (grid; threads and shared bytes on a GPU; the thread-split alignment on x86).

`check_program` checks, in one pass and before a session allocates anything:
  schema  every field present and of its type, integers in range, every launch's kernel in `kernels`,
          every weight, state and arena slot it names declared, buffers that fit their slot, the rows a
          weight draw writes inside its weight
  dims    every launch's arguments and fields equal its kernel's signature — so a state, weight or grid
          edited to disagree with the compiled code ends in one line naming the launch and the field.
The first failure is raised as one line naming program.json and where in it.

The table and the launch lists are bound to the machine code: the x86 compiler links the SHA-256 of their
canonical JSON (`program_digest`) into every kernel library and into kernels.ll as the exported constant
`tessera_program_sha256`, and `check_program_digest` compares it with what program.json carries — so a
program.json rewritten consistently (states shrunk, the table regenerated to match, its sha256
re-recorded in tessera.json) is refused in one line instead of running kernels past its arrays.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from tessera.runtime.token_ids import RunError

FORMAT_VERSION = 2
PROGRAMS = ("prefill", "decode")
DTYPE_BYTES = {"f32": 4, "bf16": 2, "i64": 8}
MAX_DIM = 2**31 - 1  # every extent, width and count a kernel takes fits an i32
MAX_ARRAY_BYTES = 2**40  # a state or weight beyond a terabyte is a corrupt shape, not a model
MAX_THREADS = 1024  # per workgroup / block on every GPU Tessera targets
MAX_SHARED_BYTES = 2**20
PACKING_LAYOUTS = ("gemm_panels", "rows")
SWIZZLES = ("none", "32B", "64B", "128B")
# The fields of a launch that describe it rather than its kernel (which launch and its arguments).
_LAUNCH_OWN = ("kernel", "kind", "args")
_SCALARS = ("ids", "position", "tokens")
# The exported constant that holds, as 64 hex digits, the digest of the program a library was compiled for.
PROGRAM_DIGEST_SYMBOL = "tessera_program_sha256"


class ProgramError(RunError):
    """A program.json that is malformed or disagrees with the kernels it launches."""


def arg_signature(arg: Mapping[str, Any], program: Mapping[str, Any]) -> dict[str, Any]:
    """What a kernel's argument must be, as the program describes it: for a weight its shape and packing,
    for a state its shape, dtype and kind (the kind decides the KV capacity a session enforces), for a
    buffer its features, dtype and rank; scalars and zero vectors as they are. The compiler records this of
    each kernel's launches; the session requires every launch to match."""
    if "weight" in arg:
        entry = program["weights"][arg["weight"]]
        signature: dict[str, Any] = {"shape": list(entry["shape"])}
        if "packing" in entry:
            signature["packing"] = dict(entry["packing"])
        return {"weight": signature}
    if "state" in arg:
        entry = program["states"][arg["state"]]
        return {"state": {"shape": list(entry["shape"]), "dtype": entry["dtype"], "kind": entry["kind"]}}
    if "buffer" in arg:
        return {"buffer": {"features": arg["features"], "dtype": arg["dtype"], "rank": arg.get("rank", 2)}}
    if "drawn" in arg:  # rows of a weight a draw writes: [rows, cols] in the weight's element type
        entry = program["weights"][arg["drawn"]["weight"]]
        return {"drawn": {"cols": entry["shape"][-1], "dtype": entry.get("packing", {}).get("dtype", "f32")}}
    if "key" in arg:  # the Philox key and stream: the stream differs per launch, the kernel takes any
        return {"key": True}
    return dict(arg)


def kernel_signatures(program: Mapping[str, Any], kernel_fields: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The `kernels` table of a program.json: per kernel launched, the signature of its first launch
    (`dims` and `kind` are added by the compiler); `kernel_fields` the launch fields that are the kernel's.
    A kernel launched two ways is refused — that would be a compiler error, not a program."""
    fields = tuple(kernel_fields)
    table: dict[str, dict[str, Any]] = {}
    launches = [launch for name in PROGRAMS for launch in program["programs"].get(name, {}).get("launches", ())]
    for launch in [*launches, *program.get("weight_draws", ())]:
        record = {
            "args": [arg_signature(arg, program) for arg in launch["args"]],
            **{field: launch[field] for field in fields if field in launch},
        }
        previous = table.setdefault(launch["kernel"], record)
        if previous != record:
            raise ProgramError(f"kernel '{launch['kernel']}' is launched with two signatures: {previous} and {record}")
    return table


def program_digest(program: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of what x86 code is compiled for — a program's `kernels` table and its launch lists
    (the native programs bake each launch's grid and cost in) — as canonical JSON: keys sorted, no spaces.
    The compiler computes it from the program it writes and the runtime from the one it read; JSON's round
    trip keeps this text (lists stay lists, floats print as they parsed), so the two agree exactly when the
    programs do."""
    bound = {"kernels": program["kernels"], "programs": program["programs"]}
    canonical = json.dumps(bound, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_program_digest(program: Mapping[str, Any], compiled_with: Mapping[str, str | None], source: str) -> None:
    """Refuse, in one line, a program whose kernel table or launch lists are not the ones each loaded file
    of code was compiled with. compiled_with: the digest read from each file (by name), None where it has none."""
    expected = program_digest(program)
    for name, digest in compiled_with.items():
        if digest is None:
            raise ProgramError(
                f"{name}: no program digest ({PROGRAM_DIGEST_SYMBOL}): built before its code was bound to "
                "program.json (rebuild with tessera-compile)"
            )
        if digest != expected:
            raise ProgramError(
                f"{source}: its kernels or launches are not the ones {name} was compiled for (rebuild with tessera-compile)"
            )


def check_program(program: object, source: str, target: str) -> None:
    """Refuse, in one line naming `source` (program.json), a program that is malformed or whose launches
    disagree with their kernels' compiled signatures. target: x86, rocdl or nvvm."""
    _Checker(source, target).program(program)


# The variants (tessera.json field, kernel kind) of kernels that are not GEMMs: for AVX2, the kinds of
# lowering/convert_tile_to_x86.py's AVX2_KINDS (not imported: the runtime needs no MLIR stack; a test compares).
VARIANT_KINDS = (
    ("amx_kernels", "ssd_scan"),
    *(("avx2_kernels", kind) for kind in ("ssd_scan", "moe_experts", "attention")),
)


def check_matrix_kernels(program: Mapping[str, Any], field: str, names: object, source: str) -> None:
    """The GEMM variants tessera.json lists (`field`: amx_kernels, avx512bf16_kernels, avx2_kernels) must be
    GEMMs of this program (their weights are packed for the variant) or its SSD scans (AMX, AVX2), for AVX2
    also its MoE experts and attention (the same buffers as their vector kernels)."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ProgramError(f"{source}: field '{field}' is not a list of kernel names")
    for name in names:
        record = program["kernels"].get(name, {})
        args = record.get("args", [])
        if (field, record.get("kind")) in VARIANT_KINDS:
            continue
        # The session packs the weight a GEMM takes second for the variant.
        if record.get("kind") != "matmul" or len(args) < 2 or "weight" not in args[1]:
            raise ProgramError(
                f"{source}: {field} names '{name}', which is not a kernel of the program that has such a variant"
            )


class _Checker:
    def __init__(self, source: str, target: str) -> None:
        self.source = source
        self.gpu = target != "x86"

    def fail(self, where: str, message: str) -> ProgramError:
        return ProgramError(f"{self.source}: {where}: {message}")

    # --- typed fields ----------------------------------------------------------------------------------

    def mapping(self, value: object, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {type(value).__name__}")
        return value

    def sequence(self, value: object, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {type(value).__name__}")
        return value

    def integer(self, value: object, where: str, low: int = 0, high: int = MAX_DIM) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.fail(where, f"expected an integer in [{low}, {high}], got {value!r}")
        return value

    def string(self, value: object, where: str, choices: Iterable[str] | None = None) -> str:
        allowed = None if choices is None else tuple(choices)
        if not isinstance(value, str) or (allowed is not None and value not in allowed):
            expected = "a string" if allowed is None else f"one of {', '.join(allowed)}"
            raise self.fail(where, f"expected {expected}, got {value!r}")
        return value

    def shape(self, value: object, where: str, itemsize: int) -> list[int]:
        dims = [self.integer(dim, f"{where}[{i}]", 1) for i, dim in enumerate(self.sequence(value, where))]
        if not dims or math.prod(dims) * itemsize > MAX_ARRAY_BYTES:
            raise self.fail(where, f"shape {dims} is empty or larger than {MAX_ARRAY_BYTES} bytes")
        return dims

    # --- the file --------------------------------------------------------------------------------------

    def program(self, program: object) -> None:
        top = self.mapping(program, "program")
        for key in ("programs", "weights", "states", "kernels"):
            self.mapping(top.get(key), key)
        for name, entry in top["states"].items():
            self.state(name, self.mapping(entry, f"states.{name}"))
        for name, entry in top["weights"].items():
            self.weight(name, self.mapping(entry, f"weights.{name}"))
        if "embedding.weight" not in top["weights"]:
            raise self.fail("weights", "no 'embedding.weight' (the vocabulary size is read from it)")
        for name, record in top["kernels"].items():
            record = self.mapping(record, f"kernels.{name}")
            self.string(record.get("kind"), f"kernels.{name}.kind")
            self.mapping(record.get("dims"), f"kernels.{name}.dims")
            self.sequence(record.get("args"), f"kernels.{name}.args")
        for name in PROGRAMS:
            self.one_program(name, self.mapping(top["programs"].get(name), f"programs.{name}"), top)
        for index, draw in enumerate(self.sequence(top.get("weight_draws", []), "weight_draws")):
            where = f"weight_draws[{index}]"
            draw = self.mapping(draw, where)
            self.string(draw.get("tensor"), f"{where}.tensor")
            self.launch(draw, where, top, [])

    def state(self, name: str, entry: dict[str, Any]) -> None:
        where = f"states.{name}"
        dtype = self.string(entry.get("dtype"), f"{where}.dtype", DTYPE_BYTES)
        self.shape(entry.get("shape"), f"{where}.shape", DTYPE_BYTES[dtype])
        self.string(entry.get("kind"), f"{where}.kind")

    def weight(self, name: str, entry: dict[str, Any]) -> None:
        where = f"weights.{name}"
        self.shape(entry.get("shape"), f"{where}.shape", 4)
        if "parts" in entry:
            parts = self.sequence(entry["parts"], f"{where}.parts")
            if not parts:
                raise self.fail(f"{where}.parts", "empty")
            for i, part in enumerate(parts):
                self.string(part, f"{where}.parts[{i}]")
        if "column_scale" in entry:
            self.string(entry["column_scale"], f"{where}.column_scale")
        if "packing" in entry:
            packing = self.mapping(entry["packing"], f"{where}.packing")
            layout = self.string(packing.get("layout"), f"{where}.packing.layout", PACKING_LAYOUTS)
            self.string(packing.get("dtype"), f"{where}.packing.dtype", ("f32", "bf16"))
            if layout == "gemm_panels":  # panels of nr output columns of a [N, K] matrix, or of each of a stack
                self.integer(packing.get("nr"), f"{where}.packing.nr", 1, 4096)
                if len(entry["shape"]) < 2:
                    raise self.fail(
                        f"{where}.shape",
                        f"a weight packed in panels is a matrix or a stack of them, got {entry['shape']}",
                    )

    def one_program(self, name: str, body: dict[str, Any], top: dict[str, Any]) -> None:
        slots = [
            self.integer(width, f"programs.{name}.slots[{i}]", 1)
            for i, width in enumerate(self.sequence(body.get("slots"), f"programs.{name}.slots"))
        ]
        result = self.mapping(body.get("result"), f"programs.{name}.result")
        if "buffer" not in result:
            raise self.fail(f"programs.{name}.result", "the logits must be an arena buffer")
        self.arg(result, f"programs.{name}.result", top, slots)
        launches = self.sequence(body.get("launches"), f"programs.{name}.launches")
        for index, launch in enumerate(launches):
            where = f"programs.{name}.launches[{index}]"
            self.launch(self.mapping(launch, where), where, top, slots)
        # The logits are the last launch's output (lm_head): a program that never writes them would return
        # whatever the arena held.
        if not launches or not any(arg.get("buffer") == result["buffer"] for arg in launches[-1]["args"]):
            raise self.fail(f"programs.{name}.launches", "the last launch does not write the result (the logits)")

    def launch(self, launch: dict[str, Any], where: str, top: dict[str, Any], slots: list[int]) -> None:
        kernel = self.string(launch.get("kernel"), f"{where}.kernel")
        if kernel not in top["kernels"]:
            raise self.fail(f"{where}.kernel", f"'{kernel}' is not in the kernel list")
        where = f"{where} (kernel '{kernel}')"
        record = top["kernels"][kernel]
        if launch.get("kind") != record["kind"]:
            raise self.fail(where, f"kind {launch.get('kind')!r}, the kernel is a {record['kind']!r} kernel")
        args = self.sequence(launch.get("args"), f"{where}.args")
        for i, arg in enumerate(args):
            self.arg(self.mapping(arg, f"{where}.args[{i}]"), f"{where}.args[{i}]", top, slots)
        if self.gpu:
            self.gpu_fields(launch, where, args)
        else:
            self.x86_fields(launch, where)
        self.against_kernel(launch, where, kernel, record, top)

    def arg(self, arg: dict[str, Any], where: str, top: dict[str, Any], slots: list[int]) -> None:
        kinds = [key for key in ("weight", "state", "buffer", "drawn", "key", *_SCALARS) if key in arg]
        if len(kinds) != 1:
            raise self.fail(where, f"unknown launch argument {arg}")
        kind = kinds[0]
        if kind in _SCALARS:
            if arg[kind] is not True or len(arg) != 1:
                raise self.fail(where, f"unknown launch argument {arg}")
        elif kind == "drawn":
            self.drawn(self.mapping(arg["drawn"], f"{where}.drawn"), f"{where}.drawn", top)
        elif kind == "key":
            self.integer(arg["key"], f"{where}.key", 0, 2**32 - 1)
        elif kind in ("weight", "state"):
            table = top[f"{kind}s"]
            if self.string(arg[kind], f"{where}.{kind}") not in table:
                raise self.fail(where, f"{kind} '{arg[kind]}' is not declared in {kind}s")
        else:
            slot = self.integer(arg["buffer"], f"{where}.buffer", 0, len(slots) - 1)
            features = self.integer(arg.get("features"), f"{where}.features", 1)
            dtype = self.string(arg.get("dtype"), f"{where}.dtype", DTYPE_BYTES)
            if "rank" in arg and arg["rank"] != 1:
                raise self.fail(f"{where}.rank", f"expected 1 (or no rank), got {arg['rank']!r}")
            if features * DTYPE_BYTES[dtype] > slots[slot]:
                raise self.fail(
                    where, f"{features} x {dtype} per token does not fit slot {slot} of {slots[slot]} bytes per token"
                )

    def drawn(self, target: dict[str, Any], where: str, top: dict[str, Any]) -> None:
        """The rows of a weight a draw writes: declared, in its own row-major layout, inside its rows."""
        name = self.string(target.get("weight"), f"{where}.weight")
        if name not in top["weights"]:
            raise self.fail(where, f"weight '{name}' is not declared in weights")
        entry = top["weights"][name]
        if entry.get("packing", {}).get("layout", "rows") != "rows":
            raise self.fail(where, f"weight '{name}' is packed in panels: a draw writes rows")
        total = math.prod(entry["shape"][:-1])
        first = self.integer(target.get("first_row"), f"{where}.first_row", 0, total - 1)
        self.integer(target.get("rows"), f"{where}.rows", 1, total - first)

    def x86_fields(self, launch: dict[str, Any], where: str) -> None:
        self.integer(launch.get("grid"), f"{where}.grid")
        self.string(launch.get("parallel"), f"{where}.parallel")
        if "align" in launch:
            self.integer(launch["align"], f"{where}.align", 1)

    def gpu_fields(self, launch: dict[str, Any], where: str, args: list[Any]) -> None:
        grid = self.mapping(launch.get("grid"), f"{where}.grid")
        if set(grid) != {"x", "y"}:
            raise self.fail(f"{where}.grid", f"expected axes x and y, got {sorted(grid)}")
        for axis in ("x", "y"):
            pair = self.sequence(grid[axis], f"{where}.grid.{axis}")
            if len(pair) != 2:
                raise self.fail(f"{where}.grid.{axis}", f"expected [extent, per], got {pair}")
            if pair[0] != "tokens":
                self.integer(pair[0], f"{where}.grid.{axis}[0]", 1)
            self.integer(pair[1], f"{where}.grid.{axis}[1]", 1)
        self.integer(launch.get("threads"), f"{where}.threads", 1, MAX_THREADS)
        for key in ("lds_bytes", "shared_bytes"):
            if key in launch:
                self.integer(launch[key], f"{where}.{key}", 0, MAX_SHARED_BYTES)
        for i, entry in enumerate(self.sequence(launch.get("tensor_maps", []), f"{where}.tensor_maps")):
            at = f"{where}.tensor_maps[{i}]"
            entry = self.mapping(entry, at)
            index = self.integer(entry.get("arg"), f"{at}.arg", 0, len(args) - 1)
            if not any(key in args[index] for key in ("weight", "buffer", "state")):
                raise self.fail(f"{at}.arg", f"argument {index} is not a tensor")
            if entry.get("rows") != "tokens":
                self.integer(entry.get("rows"), f"{at}.rows", 1)
            for key in ("cols", "box_rows", "box_cols"):
                self.integer(entry.get(key), f"{at}.{key}", 1)
            self.string(entry.get("dtype"), f"{at}.dtype", ("bf16", "f16", "f32"))
            self.string(entry.get("swizzle"), f"{at}.swizzle", SWIZZLES)

    # --- the dims check --------------------------------------------------------------------------------

    def against_kernel(
        self, launch: dict[str, Any], where: str, kernel: str, record: dict[str, Any], top: dict[str, Any]
    ) -> None:
        for field, expected in record.items():
            if field in ("dims", *_LAUNCH_OWN):
                continue
            if launch.get(field) != expected:
                raise self.fail(where, f"{field} {launch.get(field)!r}, the kernel was compiled for {expected!r}")
        args, expected_args = launch["args"], record["args"]
        if len(args) != len(expected_args):
            raise self.fail(where, f"{len(args)} arguments, the kernel was compiled for {len(expected_args)}")
        for i, (arg, expected) in enumerate(zip(args, expected_args, strict=True)):
            found = arg_signature(arg, top)
            if found != expected:
                raise self.fail(f"{where}.args[{i}]", _difference(arg, found, expected))


def _difference(arg: Mapping[str, Any], found: dict[str, Any], expected: object) -> str:
    """One phrase naming what differs: 'state 'x': shape [128, 4], the kernel was compiled for [128, 3]'."""
    (kind, value), *_ = found.items()
    if isinstance(expected, dict) and kind in expected and isinstance(value, dict):
        wanted = expected[kind]
        if isinstance(wanted, dict):
            name = f"{kind} '{arg[kind]}'" if kind in ("weight", "state") else kind
            for key in sorted(set(value) | set(wanted)):
                if value.get(key) != wanted.get(key):
                    return f"{name}: {key} {value.get(key)!r}, the kernel was compiled for {wanted.get(key)!r}"
    return f"argument {found}, the kernel was compiled for {expected}"
