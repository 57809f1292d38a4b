using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Hub.Runtime.Execution;

/// <summary>A value at run time: shape (re-inferred every Infer without allocating), dtype and data pointer.</summary>
internal sealed unsafe class TensorRt
{
    public const int MaxRank = 8;
    public readonly int[] Dims = new int[MaxRank];
    public int Rank;
    public long Count;
    public nint Ptr;
    public DType DType = DType.F32;

    public float* F => (float*)Ptr;
    public int* I => (int*)Ptr;
    public byte* B => (byte*)Ptr;

    public int Dim(int i) => Dims[i < 0 ? Rank + i : i];

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SetShape(ReadOnlySpan<int> dims)
    {
        if (dims.Length > MaxRank) throw new ModelInputException($"rank {dims.Length} exceeds the runtime's maximum of {MaxRank}");
        Rank = dims.Length;
        long c = 1;
        for (int i = 0; i < dims.Length; i++) { Dims[i] = dims[i]; c *= dims[i]; }
        Count = c;
    }

    /// <summary>Copies this tensor's shape with the last dim replaced (or appended when <paramref name="append"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ShapeFrom(TensorRt src, int lastDim, bool append = false)
    {
        int r = src.Rank;
        Span<int> d = stackalloc int[MaxRank];
        for (int i = 0; i < r; i++) d[i] = src.Dims[i];
        if (append) { d[r] = lastDim; SetShape(d[..(r + 1)]); }
        else { d[r - 1] = lastDim; SetShape(d[..r]); }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SameShape(TensorRt src) => SetShape(src.Dims.AsSpan(0, src.Rank));

    public Span<float> FSpan => new((void*)Ptr, checked((int)Count));
    public Span<int> ISpan => new((void*)Ptr, checked((int)Count));

    public string ShapeString()
    {
        var sb = new System.Text.StringBuilder("[");
        for (int i = 0; i < Rank; i++) { if (i > 0) sb.Append(", "); sb.Append(Dims[i]); }
        return sb.Append(']').ToString();
    }
}

/// <summary>A 64-byte aligned native buffer that only grows.</summary>
internal sealed unsafe class NativeBuffer : IDisposable
{
    public nint Ptr { get; private set; }
    public long Bytes { get; private set; }

    /// <summary>Ensures at least <paramref name="bytes"/>; the contents are not preserved when it grows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Ensure(long bytes)
    {
        if (bytes <= Bytes) return;
        Free();
        long size = Math.Max(64, (bytes + 63) & ~63L);
        Ptr = (nint)NativeMemory.AlignedAlloc((nuint)size, 64);
        if (Ptr == 0) throw new OutOfMemoryException($"could not allocate {size} bytes of tensor memory");
        Bytes = size;
    }

    private void Free()
    {
        if (Ptr != 0) NativeMemory.AlignedFree((void*)Ptr);
        Ptr = 0; Bytes = 0;
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    ~NativeBuffer() => Free(); // a request that was never disposed still returns its memory
}
