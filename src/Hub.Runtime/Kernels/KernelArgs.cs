// Argument checks for the public pointer kernels (Gemm, AttentionKernels): a handful of compares once per call, never
// inside a loop, so a wrong size or a null buffer is an ArgumentException naming the argument instead of an access
// violation or silently wrong output. Pointers may be null only where they address nothing (an empty product, no keys),
// which is what `fixed` gives for an empty array.
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Hub.Runtime.Kernels;

internal static unsafe class KernelArgs
{
    /// <summary>Throws <see cref="ArgumentNullException"/> when <paramref name="p"/> is null but addresses data.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void NotNull(void* p, bool addressesData, [CallerArgumentExpression(nameof(p))] string? name = null)
    {
        if (p == null && addressesData) ThrowNull(name);
    }

    /// <summary>Throws unless <paramref name="wt"/> is a float weight type the GEMM/GEMV kernels widen (F32, F16, BF16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void FloatWeight(DType wt, [CallerArgumentExpression(nameof(wt))] string? name = null)
    {
        if (wt is not (DType.F32 or DType.F16 or DType.BF16)) ThrowWeight(wt, name);
    }

    /// <summary>Throws unless 0 ≤ <paramref name="start"/> ≤ <paramref name="end"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Range(int start, int end, [CallerArgumentExpression(nameof(start))] string? startName = null,
        [CallerArgumentExpression(nameof(end))] string? endName = null)
    {
        if (start < 0) ThrowRange(startName, start, "must be non-negative");
        if (end < start) ThrowRange(endName, end, $"must be at least {startName} = {start}");
    }

    /// <summary>Throws unless <paramref name="stride"/> ≥ <paramref name="min"/> (rows of one stride must not overlap).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Stride(long stride, long min, string what, [CallerArgumentExpression(nameof(stride))] string? name = null)
    {
        if (stride < min) ThrowRange(name, stride, $"must be at least {min} ({what})");
    }

    [DoesNotReturn]
    private static void ThrowNull(string? name) => throw new ArgumentNullException(name, $"{name} is null but the call reads or writes through it");

    [DoesNotReturn]
    private static void ThrowWeight(DType wt, string? name) =>
        throw new ArgumentException($"weight type {wt} is not one these kernels widen (F32, F16, BF16); quantized weights go through QuantKernels", name);

    [DoesNotReturn]
    private static void ThrowRange(string? name, long value, string rule) => throw new ArgumentOutOfRangeException(name, value, $"{name} = {value} {rule}");
}
