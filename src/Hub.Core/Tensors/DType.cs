namespace Hub;

/// <summary>Element types of tensors in checkpoints, the IR and the runtime.</summary>
/// <remarks>Names follow safetensors (<c>F32</c>, <c>BF16</c>, ...) so headers map one to one.</remarks>
public enum DType : byte
{
    /// <summary>IEEE 754 binary32.</summary>
    F32,
    /// <summary>IEEE 754 binary16.</summary>
    F16,
    /// <summary>bfloat16: the upper 16 bits of a binary32.</summary>
    BF16,
    /// <summary>IEEE 754 binary64.</summary>
    F64,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Signed 8-bit integer (also the storage of int8-quantized weights).</summary>
    I8,
    /// <summary>Unsigned 8-bit integer (also the packed storage of int4-quantized weights, two per byte).</summary>
    U8,
    /// <summary>Boolean stored as one byte.</summary>
    Bool,
}

/// <summary>Sizes and names of <see cref="DType"/> values.</summary>
public static class DTypeInfo
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this DType t) => t switch
    {
        DType.F32 or DType.I32 => 4,
        DType.F16 or DType.BF16 or DType.I16 => 2,
        DType.F64 or DType.I64 => 8,
        DType.I8 or DType.U8 or DType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown dtype"),
    };

    /// <summary>True for floating-point types.</summary>
    public static bool IsFloat(this DType t) => t is DType.F32 or DType.F16 or DType.BF16 or DType.F64;

    /// <summary>The safetensors spelling (<c>F32</c>, <c>BF16</c>, <c>BOOL</c>, ...).</summary>
    public static string ToSafetensorsName(this DType t) => t == DType.Bool ? "BOOL" : t.ToString();

    /// <summary>Parses a safetensors/IR dtype name; false when unknown.</summary>
    public static bool TryParse(string name, out DType dtype)
    {
        switch (name)
        {
            case "F32": dtype = DType.F32; return true;
            case "F16": dtype = DType.F16; return true;
            case "BF16": dtype = DType.BF16; return true;
            case "F64": dtype = DType.F64; return true;
            case "I64": dtype = DType.I64; return true;
            case "I32": dtype = DType.I32; return true;
            case "I16": dtype = DType.I16; return true;
            case "I8": dtype = DType.I8; return true;
            case "U8": dtype = DType.U8; return true;
            case "BOOL": dtype = DType.Bool; return true;
            default: dtype = default; return false;
        }
    }
}
