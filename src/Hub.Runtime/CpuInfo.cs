using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime;

/// <summary>Which instruction-set paths the kernels take on this machine (the bench and <c>hub info</c> print it).</summary>
public static class CpuInfo
{
    /// <summary>
    /// The GEMM micro-kernel in use: AVX-512 6×32 (f32 prefill Linears read W in place with 8×32 tiles), AVX2+FMA 6×16,
    /// or the portable Vector128/scalar tile.
    /// </summary>
    public static string GemmPath => Avx512F.IsSupported ? "avx512f 6x32 (f32 W in place 8x32)" : Fma.IsSupported && Avx.IsSupported ? "avx2-fma 6x16" : Vector128.IsHardwareAccelerated ? "vector128 6x16" : "scalar 6x16";

    /// <summary>The widest vector the GEMV and elementwise kernels use.</summary>
    public static string VectorPath => Vector512.IsHardwareAccelerated ? "vector512" :
        Vector256.IsHardwareAccelerated ? (Fma.IsSupported ? "vector256+fma" : "vector256") :
        Vector128.IsHardwareAccelerated ? "vector128" : "scalar";

    /// <summary>A one-line description: cores, architecture, ISA paths.</summary>
    public static string Describe()
    {
        var isa = new List<string>();
        if (Sse42.IsSupported) isa.Add("sse4.2");
        if (Avx.IsSupported) isa.Add("avx");
        if (Avx2.IsSupported) isa.Add("avx2");
        if (Fma.IsSupported) isa.Add("fma");
        if (Avx512F.IsSupported) isa.Add("avx512f");
        if (Avx512BW.IsSupported) isa.Add("avx512bw");
        if (AvxVnni.IsSupported) isa.Add("avx-vnni");
        if (System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported) isa.Add("neon");
        return $"{Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}, " +
               $"isa [{string.Join(' ', isa)}], gemm {GemmPath}, gemv/elementwise {VectorPath}, " +
               $"f16/bf16 decode widened {(Kernels.HalfGemv.Wide && Kernels.HalfGemv.WideSupported ? "in Vector512 registers" : Vector256.IsHardwareAccelerated ? "in Vector256 registers" : "by scalar/TensorPrimitives code")}, " +
               $"int8 prefill {(Kernels.QuantGemmInt8.UseVnni ? "avx-vnni" : Avx2.IsSupported ? "avx2 vpmaddubsw" : "scalar")}, " +
               $"int8 decode {(Kernels.QuantKernels.Int8Vnni ? $"avx-vnni (Q8_0 row pairs up to K = {Kernels.QuantKernels.PairMaxK} where not repacked)" : Avx2.IsSupported ? "avx2 vpmaddubsw" : "scalar")}, " +
               $"Q8_0 weights {(CompiledModel.RepackInt8 && AvxVnni.IsSupported ? "repacked at load into 4-row interleaved blocks (x4 avx-vnni)" : "row-major as stored")}, " +
               $"int4 {(Kernels.QuantGemvInt4.Wide ? "avx512bw" : Avx2.IsSupported ? "avx2" : "scalar")}, " +
               $"Q4_0 weights {(CompiledModel.RepackInt4 && Avx2.IsSupported && Fma.IsSupported ? "repacked at load into 4-row interleaved units where K % 256 = 0 (x4 avx2 vpmaddubsw)" : "row-major as stored")}";
    }
}
