"""Small kernels that each break one MLU launch rule (and one that breaks none), for the rules tests.

Plain Triton, no workbench imports: the same file is imported by the interpreted test process and by
a subprocess that compiles the kernels for a CUDA target to read their TTIR.
"""

import triton
import triton.language as tl


@triton.jit
def copy_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """One tile per program: grid-sized by the data, the GPU way."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


@triton.jit
def accumulate_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """Sum of x in one program: one loaded tile plus a loop-carried fp32 accumulator of BLOCK."""
    acc = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        acc += tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    tl.store(out_ptr, tl.sum(acc, 0))


@triton.jit
def fp64_math_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """Computes in float64 on float32 data."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n).to(tl.float64)
    tl.store(out_ptr + offs, tl.exp(x).to(tl.float32), mask=offs < n)


@triton.jit
def dot_kernel(a_ptr, b_ptr, c_ptr, N: tl.constexpr, PRECISION: tl.constexpr):
    """c = a @ b for N x N row-major matrices, in one program, dot at the given input precision."""
    r = tl.arange(0, N)
    a = tl.load(a_ptr + r[:, None] * N + r[None, :])
    b = tl.load(b_ptr + r[:, None] * N + r[None, :])
    tl.store(c_ptr + r[:, None] * N + r[None, :], tl.dot(a, b, input_precision=PRECISION))


@triton.jit
def int8_dot_kernel(a_ptr, b_ptr, c_ptr, N: tl.constexpr):
    """int8 @ int8: Triton accumulates in int32, which the MLU has no unit for."""
    r = tl.arange(0, N)
    a = tl.load(a_ptr + r[:, None] * N + r[None, :])
    b = tl.load(b_ptr + r[:, None] * N + r[None, :])
    tl.store(c_ptr + r[:, None] * N + r[None, :], tl.dot(a, b))


@triton.jit
def histogram_kernel(idx_ptr, counts_ptr, n, BLOCK: tl.constexpr):
    """counts[idx[i]] += 1 with atomics on the counts' dtype."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    idx = tl.load(idx_ptr + offs, mask=offs < n, other=0)
    tl.atomic_add(counts_ptr + idx, tl.full([BLOCK], 1, counts_ptr.dtype.element_ty), mask=offs < n)


# Signatures for compiling each kernel ahead of time (the TTIR test): (kernel, signature, constexprs)
COMPILE = {
    "copy": (
        copy_kernel,
        {"x_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"},
        {"BLOCK": 4096},
    ),
    "accumulate": (
        accumulate_kernel,
        {"x_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"},
        {"BLOCK": 1024},
    ),
    "fp64_math": (
        fp64_math_kernel,
        {"x_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"},
        {"BLOCK": 256},
    ),
    "dot_tf32": (
        dot_kernel,
        {"a_ptr": "*fp32", "b_ptr": "*fp32", "c_ptr": "*fp32", "N": "constexpr", "PRECISION": "constexpr"},
        {"N": 32, "PRECISION": "tf32"},
    ),
    "int8_dot": (
        int8_dot_kernel,
        {"a_ptr": "*i8", "b_ptr": "*i8", "c_ptr": "*i32", "N": "constexpr"},
        {"N": 32},
    ),
    "histogram_int64": (
        histogram_kernel,
        {"idx_ptr": "*i32", "counts_ptr": "*i64", "n": "i32", "BLOCK": "constexpr"},
        {"BLOCK": 128},
    ),
}
