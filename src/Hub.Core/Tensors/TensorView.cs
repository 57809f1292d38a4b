using System.Runtime.InteropServices;

namespace Hub;

/// <summary>
/// A typed, non-owning view of contiguous row-major tensor bytes (memory-mapped, pinned or native).
/// The owner (a checkpoint, an IR model, a tensor buffer) keeps the memory alive.
/// </summary>
public readonly unsafe struct TensorView
{
    /// <summary>Element type.</summary>
    public DType DType { get; }
    /// <summary>Shape.</summary>
    public Shape Shape { get; }
    /// <summary>Address of the first byte.</summary>
    public nint Pointer { get; }
    /// <summary>Length in bytes (ElementCount × SizeOf(DType)).</summary>
    public long ByteLength { get; }

    /// <summary>Creates a view; <paramref name="byteLength"/> must equal the shape's element count × dtype size.</summary>
    public TensorView(DType dtype, Shape shape, nint pointer, long byteLength)
    {
        if (shape.ElementCount * dtype.SizeOf() != byteLength)
            throw new ArgumentException($"byte length {byteLength} does not match {dtype} {shape}", nameof(byteLength));
        DType = dtype; Shape = shape; Pointer = pointer; ByteLength = byteLength;
    }

    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.ElementCount;

    /// <summary>The raw bytes (throws past 2 GiB).</summary>
    public ReadOnlySpan<byte> Bytes => new((void*)Pointer, checked((int)ByteLength));

    /// <summary>The elements reinterpreted as <typeparamref name="T"/>; its size must match the dtype.</summary>
    public ReadOnlySpan<T> AsSpan<T>() where T : unmanaged
    {
        if (sizeof(T) != DType.SizeOf()) throw new InvalidOperationException($"cannot view {DType} as {typeof(T).Name}");
        return new ReadOnlySpan<T>((void*)Pointer, checked((int)ElementCount));
    }

    /// <summary>Copies the elements into a new float32 array, converting from any numeric dtype.</summary>
    public float[] ToFloat32()
    {
        var dst = new float[checked((int)ElementCount)];
        DTypeConvert.ToFloat32(Bytes, DType, dst);
        return dst;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{DType} {Shape}";
}

/// <summary>Conversions between element types (scalar-exact; bf16 rounding is round-to-nearest-even).</summary>
public static class DTypeConvert
{
    /// <summary>Converts <paramref name="src"/> of <paramref name="dtype"/> into float32.</summary>
    public static void ToFloat32(ReadOnlySpan<byte> src, DType dtype, Span<float> dst)
    {
        int n = dst.Length;
        if (src.Length != n * dtype.SizeOf()) throw new ArgumentException($"source has {src.Length} bytes, expected {n} × {dtype.SizeOf()}");
        switch (dtype)
        {
            case DType.F32: MemoryMarshal.Cast<byte, float>(src).CopyTo(dst); break;
            case DType.F16:
                System.Numerics.Tensors.TensorPrimitivesShim.HalfToSingle(MemoryMarshal.Cast<byte, Half>(src), dst); break;
            case DType.BF16:
                {
                    var s = MemoryMarshal.Cast<byte, ushort>(src);
                    for (int i = 0; i < n; i++) dst[i] = BitConverter.Int32BitsToSingle(s[i] << 16);
                    break;
                }
            case DType.F64: { var s = MemoryMarshal.Cast<byte, double>(src); for (int i = 0; i < n; i++) dst[i] = (float)s[i]; break; }
            case DType.I64: { var s = MemoryMarshal.Cast<byte, long>(src); for (int i = 0; i < n; i++) dst[i] = s[i]; break; }
            case DType.I32: { var s = MemoryMarshal.Cast<byte, int>(src); for (int i = 0; i < n; i++) dst[i] = s[i]; break; }
            case DType.I16: { var s = MemoryMarshal.Cast<byte, short>(src); for (int i = 0; i < n; i++) dst[i] = s[i]; break; }
            case DType.I8: { var s = MemoryMarshal.Cast<byte, sbyte>(src); for (int i = 0; i < n; i++) dst[i] = s[i]; break; }
            case DType.U8: case DType.Bool: for (int i = 0; i < n; i++) dst[i] = src[i]; break;
            default: throw new ArgumentOutOfRangeException(nameof(dtype));
        }
    }

    /// <summary>Converts float32 into <paramref name="dtype"/> (F32, F16 or BF16).</summary>
    public static void FromFloat32(ReadOnlySpan<float> src, DType dtype, Span<byte> dst)
    {
        int n = src.Length;
        if (dst.Length != n * dtype.SizeOf()) throw new ArgumentException($"destination has {dst.Length} bytes, expected {n} × {dtype.SizeOf()}");
        switch (dtype)
        {
            case DType.F32: MemoryMarshal.Cast<float, byte>(src).CopyTo(dst); break;
            case DType.F16: System.Numerics.Tensors.TensorPrimitivesShim.SingleToHalf(src, MemoryMarshal.Cast<byte, Half>(dst)); break;
            case DType.BF16:
                {
                    var d = MemoryMarshal.Cast<byte, ushort>(dst);
                    for (int i = 0; i < n; i++) d[i] = FloatToBFloat16(src[i]);
                    break;
                }
            default: throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "only F32, F16 and BF16 can be produced from float32");
        }
    }

    /// <summary>float32 → bfloat16 bits with round-to-nearest-even (NaN kept quiet).</summary>
    public static ushort FloatToBFloat16(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}
