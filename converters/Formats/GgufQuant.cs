// llama.cpp's reference quantizers (ggml-quants.c: quantize_row_q8_0_ref, quantize_row_q4_0_ref) and dequantizers,
// bit for bit: Q8_0 d = amax/127, q = roundf(x · (1/d)); Q4_0 d = (signed value of largest magnitude)/-8,
// q = min(15, (int8)(x · (1/d) + 8.5)), value j in the low nibble of byte j and value j+16 in its high nibble.
using System.Buffers.Binary;

namespace Hub.Converters.Formats;

/// <summary>Q8_0 / Q4_0 block encoding and decoding with llama.cpp's reference rounding.</summary>
public static class GgufQuant
{
    /// <summary>Encodes <paramref name="x"/> (length a multiple of 32) as Q8_0 blocks into <paramref name="dst"/>.</summary>
    public static void QuantizeQ8_0(ReadOnlySpan<float> x, Span<byte> dst)
    {
        CheckLengths(x.Length, dst.Length, 34);
        for (int b = 0; b < x.Length / 32; b++)
        {
            var blk = x.Slice(b * 32, 32);
            var o = dst.Slice(b * 34, 34);
            float amax = 0;
            foreach (var v in blk) amax = MathF.Max(amax, MathF.Abs(v));
            float d = amax / 127f;
            float id = d != 0 ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(o, (Half)d);
            for (int j = 0; j < 32; j++) o[2 + j] = (byte)(sbyte)MathF.Round(blk[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    /// <summary>Encodes <paramref name="x"/> (length a multiple of 32) as Q4_0 blocks into <paramref name="dst"/>.</summary>
    public static void QuantizeQ4_0(ReadOnlySpan<float> x, Span<byte> dst)
    {
        CheckLengths(x.Length, dst.Length, 18);
        for (int b = 0; b < x.Length / 32; b++)
        {
            var blk = x.Slice(b * 32, 32);
            var o = dst.Slice(b * 18, 18);
            float amax = 0, max = 0;
            foreach (var v in blk) if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
            float d = max / -8f;
            float id = d != 0 ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(o, (Half)d);
            for (int j = 0; j < 16; j++)
            {
                int q0 = Math.Min(15, (int)(sbyte)(int)(blk[j] * id + 8.5f));
                int q1 = Math.Min(15, (int)(sbyte)(int)(blk[j + 16] * id + 8.5f));
                o[2 + j] = (byte)(q0 | (q1 << 4));
            }
        }
    }

    /// <summary>Encodes f32 values as <paramref name="type"/> (F32, F16, BF16, Q8_0 or Q4_0) into <paramref name="dst"/>.</summary>
    public static void Encode(GgmlType type, ReadOnlySpan<float> x, Span<byte> dst)
    {
        switch (type)
        {
            case GgmlType.F32: DTypeConvert.FromFloat32(x, DType.F32, dst); break;
            case GgmlType.F16: DTypeConvert.FromFloat32(x, DType.F16, dst); break;
            case GgmlType.BF16: DTypeConvert.FromFloat32(x, DType.BF16, dst); break;
            case GgmlType.Q8_0: QuantizeQ8_0(x, dst); break;
            case GgmlType.Q4_0: QuantizeQ4_0(x, dst); break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "unsupported ggml type");
        }
    }

    /// <summary>Decodes <paramref name="data"/> of <paramref name="type"/> into float32.</summary>
    public static float[] Dequantize(GgmlType type, ReadOnlySpan<byte> data)
    {
        long n = data.Length / type.BlockBytes() * type.BlockSize();
        var y = new float[n];
        switch (type)
        {
            case GgmlType.F32: DTypeConvert.ToFloat32(data[..(int)(n * 4)], DType.F32, y); break;
            case GgmlType.F16: DTypeConvert.ToFloat32(data[..(int)(n * 2)], DType.F16, y); break;
            case GgmlType.BF16: DTypeConvert.ToFloat32(data[..(int)(n * 2)], DType.BF16, y); break;
            case GgmlType.Q8_0:
                for (int b = 0; b < n / 32; b++)
                {
                    float d = (float)BinaryPrimitives.ReadHalfLittleEndian(data.Slice(b * 34));
                    for (int j = 0; j < 32; j++) y[b * 32 + j] = (sbyte)data[b * 34 + 2 + j] * d;
                }
                break;
            case GgmlType.Q4_0:
                for (int b = 0; b < n / 32; b++)
                {
                    float d = (float)BinaryPrimitives.ReadHalfLittleEndian(data.Slice(b * 18));
                    for (int j = 0; j < 16; j++)
                    {
                        byte q = data[b * 18 + 2 + j];
                        y[b * 32 + j] = ((q & 0xF) - 8) * d;
                        y[b * 32 + j + 16] = ((q >> 4) - 8) * d;
                    }
                }
                break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "unsupported ggml type");
        }
        return y;
    }

    private static void CheckLengths(int n, int dstBytes, int blockBytes)
    {
        if (n % 32 != 0) throw new ArgumentException($"quantized rows need a multiple of 32 values, got {n}");
        if (dstBytes != n / 32 * blockBytes) throw new ArgumentException($"destination has {dstBytes} bytes, expected {n / 32 * blockBytes}");
    }
}
