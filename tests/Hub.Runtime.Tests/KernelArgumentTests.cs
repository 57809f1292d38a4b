using System.Runtime.InteropServices;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// The public pointer kernels reject bad sizes, ranges, strides and null buffers with an ArgumentException that names
/// the argument, before touching memory (a wrong call used to read out of bounds or write garbage).
/// </summary>
public sealed unsafe class KernelArgumentTests : IDisposable
{
    // A zeroed buffer big enough for every valid argument used below.
    private readonly nint _mem = (nint)NativeMemory.AlignedAlloc(1 << 22, 64);

    public KernelArgumentTests() => NativeMemory.Clear((void*)_mem, 1 << 22);

    public void Dispose() => NativeMemory.AlignedFree((void*)_mem);

    private float* F => (float*)_mem;
    private byte* B => (byte*)_mem;

    private static void Names<T>(string param, Action call) where T : ArgumentException =>
        Assert.Equal(param, Assert.Throws<T>(call).ParamName);

    [Fact]
    public void PackWeights_rejects_null_buffers_non_positive_sizes_and_quantized_types()
    {
        Names<ArgumentNullException>("w", () => Gemm.PackWeights(null, DType.F32, 16, 8, F, F));
        Names<ArgumentNullException>("dst", () => Gemm.PackWeights(B, DType.F32, 16, 8, null, F));
        Names<ArgumentNullException>("scratch", () => Gemm.PackWeights(B, DType.F16, 16, 8, F, null));
        Names<ArgumentOutOfRangeException>("n", () => Gemm.PackWeights(B, DType.F32, 0, 8, F, F));
        Names<ArgumentOutOfRangeException>("k", () => Gemm.PackWeights(B, DType.F32, 16, -3, F, F));
        Names<ArgumentException>("wt", () => Gemm.PackWeights(B, DType.I8, 16, 8, F, F));
        Names<ArgumentOutOfRangeException>("n", () => Gemm.PackedFloats(-1, 8));
    }

    [Fact]
    public void Gemm_and_gemv_reject_column_ranges_outside_the_output_and_null_buffers()
    {
        float* s = F + 100_000;
        Names<ArgumentOutOfRangeException>("n1", () => Gemm.GemmBlock(F, 0, 4, 8, B, DType.F32, 16, null, F, 0, 17, s));
        Names<ArgumentOutOfRangeException>("n1", () => Gemm.GemvRows(F, 1, 8, B, DType.F32, 16, null, F, 8, 4, s));
        Names<ArgumentOutOfRangeException>("m0", () => Gemm.GemmBlock(F, -1, 4, 8, B, DType.F32, 16, null, F, 0, 16, s));
        Names<ArgumentOutOfRangeException>("m1", () => Gemm.GemmBlock(F, 5, 4, 8, B, DType.F32, 16, null, F, 0, 16, s));
        Names<ArgumentOutOfRangeException>("k", () => Gemm.Linear(F, 2, -8, B, DType.F32, 16, null, F, s));
        Names<ArgumentNullException>("c", () => Gemm.GemmBlock(F, 0, 4, 8, B, DType.F32, 16, null, null, 0, 16, s));
        Names<ArgumentNullException>("scratch", () => Gemm.GemmBlock(F, 0, 4, 8, B, DType.F32, 16, null, F, 0, 16, null));
        Names<ArgumentNullException>("x", () => Gemm.GemvRows(null, 1, 8, B, DType.F32, 16, null, F, 0, 16, s));
        Names<ArgumentNullException>("scratch", () => Gemm.GemvRows(F, 2, 8, B, DType.BF16, 16, null, F, 0, 16, null));
        Names<ArgumentException>("wt", () => Gemm.GemvRows(F, 1, 8, B, DType.U8, 16, null, F, 0, 16, s));
        Names<ArgumentNullException>("a", () => Gemm.GemmBlockPacked(null, 0, 4, 8, F, 16, null, F, 0, 16, s));
        Names<ArgumentOutOfRangeException>("count", () => Gemm.ToFloat(B, DType.F16, 0, F, -1));
        Names<ArgumentOutOfRangeException>("unitCols", () => Gemm.UnitBlock(0, 8, 8, 6, 0, out _, out _, out _, out _));
        // An empty product still takes null buffers (what `fixed` gives for an empty array).
        Gemm.GemmBlock(null, 0, 3, 0, null, DType.F32, 4, null, F, 0, 4, null);
        Gemm.GemvRows(F, 1, 8, null, DType.F32, 0, null, null, 0, 0, null);
    }

    [Fact]
    public void Attention_kernels_reject_bad_group_shapes_query_ranges_strides_and_null_buffers()
    {
        float* s = F + 200_000;
        // AttendDirect(q, qStride, t0, t1, G, hd, k, v, kvStride, keys, mask, scale, o, oStride, scratch)
        Names<ArgumentNullException>("scratch", () => AttentionKernels.AttendDirect(F, 16, 0, 8, 1, 16, F, F, 16, 8, null, 1f, F, 16, null));
        Names<ArgumentOutOfRangeException>("headDim", () => AttentionKernels.AttendDirect(F, 16, 0, 8, 1, 0, F, F, 16, 8, null, 1f, F, 16, s));
        Names<ArgumentOutOfRangeException>("t1", () => AttentionKernels.AttendDirect(F, 16, 5, 4, 1, 16, F, F, 16, 8, null, 1f, F, 16, s));
        Names<ArgumentOutOfRangeException>("kvStride", () => AttentionKernels.AttendDirect(F, 16, 0, 8, 1, 16, F, F, 15, 8, null, 1f, F, 16, s));
        Names<ArgumentOutOfRangeException>("oStride", () => AttentionKernels.AttendDirect(F, 32, 0, 8, 2, 16, F, F, 16, 8, null, 1f, F, 16, s));
        Names<ArgumentNullException>("k", () => AttentionKernels.AttendDirect(F, 16, 0, 8, 1, 16, null, F, 16, 8, null, 1f, F, 16, s));
        // AttendBlock(q, qStride, t0, t1, G, hd, k, v, kvStride, keys, mask, causal, past, prefixLen, scale, o, scratch)
        Names<ArgumentOutOfRangeException>("keys", () => AttentionKernels.AttendBlock(F, 16, 0, 8, 1, 16, F, F, 16, 10, null, true, 4, 0, 1f, F, s));
        Names<ArgumentOutOfRangeException>("past", () => AttentionKernels.AttendBlock(F, 16, 0, 8, 1, 16, F, F, 16, 8, null, false, -1, 0, 1f, F, s));
        Names<ArgumentOutOfRangeException>("qStride", () => AttentionKernels.AttendBlock(F, 31, 0, 8, 2, 16, F, F, 16, 8, null, false, 0, 0, 1f, F, s));
        Names<ArgumentOutOfRangeException>("groupHeads", () => AttentionKernels.AttendBlock(F, 16, 0, 8, 0, 16, F, F, 16, 8, null, false, 0, 0, 1f, F, s));
        // AttendRow(q, G, hd, k, v, stride, end, mask, scale, o, scratch) and its reference twin
        Names<ArgumentNullException>("q", () => AttentionKernels.AttendRow(null, 1, 16, F, F, 16, 8, null, 1f, F, s));
        Names<ArgumentOutOfRangeException>("end", () => AttentionKernels.AttendRow(F, 1, 16, F, F, 16, -1, null, 1f, F, s));
        Names<ArgumentOutOfRangeException>("stride", () => AttentionKernels.AttendRowReference(F, 1, 16, F, F, 8, 4, null, 1f, F));
        Names<ArgumentOutOfRangeException>("groupHeads", () => AttentionKernels.ScratchFloats(0, 16));
        // No keys: k and v may be null; the heads get zeros.
        AttentionKernels.AttendRow(F, 1, 16, null, null, 16, 0, null, 1f, F + 1000, s);
    }
}
