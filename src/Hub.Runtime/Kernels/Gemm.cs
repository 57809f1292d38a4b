// Linear layers, y = x·Wᵀ + b with W [N, K] (nn.Linear layout) stored F32, F16 or BF16 and upcast to float32.
// Decode (few rows): a GEMV that streams each weight row once and dots it with every input row while the row sits in
// L1 (f16 rows are widened by TensorPrimitives, bf16 by a 16-bit shift). Prefill: a GotoBLAS/BLIS-style GEMM: W is
// packed per (64 columns × 256 k) block into 16-wide panels, and a 6×16 register tile (12 AVX2 accumulators, FMA)
// runs over them; edge tiles go through a zero-padded scratch tile, so any m, n, k is handled by one code path.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>GEMV/GEMM kernels for Linear with float32 activations and F32/F16/BF16 weights.</summary>
public static unsafe class Gemm
{
    /// <summary>Register tile rows.</summary>
    public const int MR = 6;
    /// <summary>Register tile columns (two 8-float vectors).</summary>
    public const int NR = 16;
    /// <summary>Deepest K block when k &gt; 384 (k is split into equal blocks up to this): the 16-column W panel
    /// (20 KiB) and one 6-row A micro-panel (7.5 KiB) fit Zen 3's 32 KiB L1d together.</summary>
    public const int KC = 320;
    /// <summary>Most columns per GEMM work unit (the A block is re-read from L2 once per panel of a unit).</summary>
    public const int NC = 256;
    /// <summary>Rows per A block: MC×KC floats (144 KiB) stay in the 512 KiB L2 while the panels stream past.</summary>
    public const int MC = 144;
    /// <summary>Input rows at or below which Linear uses the GEMV path.</summary>
    public const int GemvMaxRows = 4;

    /// <summary>Floats of per-worker scratch the kernels need for reduction depth <paramref name="k"/>.</summary>
    public static int ScratchFloats(int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        return Math.Max(Math.Max(4 * k, KCMax * MaxPanel + MR * MaxPanel + MaxPanel * KCMax + APackFloats(k)), (int)GemmWRows.ScratchFloats(MC, k)) + 64;
    }

    // Depths up to this run in one K block (one pass over C); the panel is then up to 24 KiB.
    private const int KCMax = 384;

    // The packed A block: up to MC rows rounded up to whole register tiles (+4: a 6-row tile over 5 rows, or two
    // 4-row tiles over 7), k deep, plus 8 floats the overlapping 8-wide stores of PackAPanel may write past the end.
    private static int APackFloats(int k) => (MC + 4) * Math.Max(k, KCMax) + 8;

    /// <summary>Whether k ≤ 384 runs as one K block (a switch for A/B runs of the kernel bench).</summary>
    internal static bool SingleBlockK = true;

    /// <summary>Scalar twin: y[m,n] = Σ_k x[m,k]·w[n,k] + b[n], accumulated in float32 in k order.</summary>
    public static void LinearReference(float* x, int m, int k, byte* w, DType wt, int n, float* bias, float* y)
    {
        CheckLinear(x, m, k, w, wt, n, y, 0, n);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float s = 0;
                for (int p = 0; p < k; p++) s += x[(long)i * k + p] * LoadWeight(w, wt, (long)j * k + p);
                y[(long)i * n + j] = s + (bias != null ? bias[j] : 0f);
            }
    }

    /// <summary>Single-threaded entry: runs the GEMV or GEMM path over the whole output.</summary>
    public static void Linear(float* x, int m, int k, byte* w, DType wt, int n, float* bias, float* y, float* scratch)
    {
        // (GemvRows and GemmBlock check the arguments)
        if (m <= GemvMaxRows) GemvRows(x, m, k, w, wt, n, bias, y, 0, n, scratch);
        else GemmBlock(x, 0, m, k, w, wt, n, bias, y, 0, n, scratch);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float LoadWeight(byte* w, DType wt, long i) => wt switch
    {
        DType.F32 => ((float*)w)[i],
        DType.F16 => (float)((Half*)w)[i],
        DType.BF16 => BitConverter.Int32BitsToSingle(((ushort*)w)[i] << 16),
        _ => throw new NotSupportedException($"weight dtype {wt}"),
    };

    /// <summary>Widens <paramref name="count"/> weights starting at element <paramref name="offset"/> to float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ToFloat(byte* w, DType wt, long offset, float* dst, int count)
    {
        KernelArgs.FloatWeight(wt);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        KernelArgs.NotNull(w, count > 0);
        KernelArgs.NotNull(dst, count > 0);
        ToFloatCore(w, wt, offset, dst, count);
    }

    // ToFloat without the checks, for the kernels' own per-row calls.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ToFloatCore(byte* w, DType wt, long offset, float* dst, int count)
    {
        switch (wt)
        {
            case DType.F32: Buffer.MemoryCopy((float*)w + offset, dst, count * 4L, count * 4L); break;
            case DType.F16:
                {
                    ushort* s = (ushort*)w + offset;
                    int i = 0;
                    if (Vector256.IsHardwareAccelerated)
                        for (; i <= count - 16; i += 16)
                        {
                            var (lo, hi) = Vector256.Widen(Vector256.Load(s + i));
                            HalfBitsToSingle(lo).Store(dst + i);
                            HalfBitsToSingle(hi).Store(dst + i + 8);
                        }
                    // (a short tail, as a K block's row may leave, is cheaper converted here than through a library call)
                    if (count - i >= 16) TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>((Half*)s + i, count - i), new Span<float>(dst + i, count - i));
                    else for (; i < count; i++) dst[i] = (float)((Half*)s)[i];
                    break;
                }
            case DType.BF16:
                {
                    ushort* s = (ushort*)w + offset;
                    int i = 0;
                    if (Vector256.IsHardwareAccelerated)
                        for (; i <= count - 16; i += 16)
                        {
                            var (lo, hi) = Vector256.Widen(Vector256.Load(s + i));
                            Vector256.ShiftLeft(lo, 16).AsSingle().Store(dst + i);
                            Vector256.ShiftLeft(hi, 16).AsSingle().Store(dst + i + 8);
                        }
                    for (; i < count; i++) dst[i] = BitConverter.Int32BitsToSingle(s[i] << 16);
                    break;
                }
            default: throw new NotSupportedException($"weight dtype {wt}");
        }
    }

    /// <summary>Sign-extended finite half bits → float: the sign lands in bit 31, exponent and mantissa in place, and
    /// ×2^112 rebiases the exponent (exact for normals and subnormals). Callers must handle exponent 31 (inf/NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> FiniteHalfToSingle(Vector256<int> h) =>
        ((h << 13) & Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle() * Vector256.Create(BitConverter.UInt32BitsToSingle(0x77800000u));

    // IEEE half bits (zero-extended) → float: shift exponent+mantissa into place and rescale by 2^112, which is exact
    // for normals and subnormals alike; inf/NaN get the all-ones exponent; the sign is OR-ed back (ryg's half_to_float).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HalfBitsToSingle(Vector256<uint> h)
    {
        var em = (h & Vector256.Create(0x7FFFu)) << 13;
        var f = em.AsSingle() * Vector256.Create(BitConverter.UInt32BitsToSingle(0x77800000u)); // 2^112
        var infNan = Vector256.Equals(h & Vector256.Create(0x7C00u), Vector256.Create(0x7C00u));
        f = Vector256.ConditionalSelect(infNan.AsSingle(), (em | Vector256.Create(0x7F800000u)).AsSingle(), f);
        return (f.AsUInt32() | ((h & Vector256.Create(0x8000u)) << 16)).AsSingle();
    }

    /// <summary>GEMV over output columns [n0, n1) for every one of the <paramref name="m"/> input rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void GemvRows(float* x, int m, int k, byte* w, DType wt, int n, float* bias, float* y, int n0, int n1, float* scratch)
    {
        CheckLinear(x, m, k, w, wt, n, y, n0, n1);
        KernelArgs.NotNull(scratch, wt != DType.F32 && m > 0 && n1 > n0 && k > 0);
        if (m == 1 && wt == DType.F32 && k >= 16 && GemvF32.Default != GemvF32.Variant.Dot4 && GemvF32.IsSupported)
        {
            GemvF32.Rows(x, k, (float*)w, bias, y, n0, n1, GemvF32.Default);
            return;
        }
        if (m == 1 && wt == DType.BF16 && k >= 16 && HalfGemv.Wide && HalfGemv.WideSupported)
        {
            HalfGemv.Bf16Rows(x, k, (ushort*)w, bias, y, n0, n1);
            return;
        }
        Span<float> r = stackalloc float[4];
        for (int j = n0; j < n1; j += 4)
        {
            int nb = Math.Min(4, n1 - j);
            float* w0, w1, w2, w3;
            if (m == 1 && wt != DType.F32 && Fma.IsSupported && Avx2.IsSupported && k >= 16)
            {
                // One row of x: widen the half rows inside the dot loop instead of through scratch.
                ushort* h = (ushort*)w + (long)j * k;
                ushort* h1 = nb > 1 ? h + k : h, h2 = nb > 2 ? h + 2L * k : h, h3 = nb > 3 ? h + 3L * k : h;
                Dot4Half(x, h, h1, h2, h3, k, wt == DType.BF16, r);
                for (int q = 0; q < nb; q++) y[j + q] = r[q] + (bias != null ? bias[j + q] : 0f);
                continue;
            }
            if (wt == DType.F32)
            {
                float* wf = (float*)w + (long)j * k;
                w0 = wf; w1 = nb > 1 ? wf + k : wf; w2 = nb > 2 ? wf + 2L * k : wf; w3 = nb > 3 ? wf + 3L * k : wf;
            }
            else
            {
                for (int q = 0; q < nb; q++) ToFloatCore(w, wt, (long)(j + q) * k, scratch + (long)q * k, k);
                w0 = scratch; w1 = nb > 1 ? scratch + k : scratch; w2 = nb > 2 ? scratch + 2L * k : scratch; w3 = nb > 3 ? scratch + 3L * k : scratch;
            }
            for (int i = 0; i < m; i++)
            {
                Dot4(x + (long)i * k, w0, w1, w2, w3, k, r);
                float* yi = y + (long)i * n + j;
                for (int q = 0; q < nb; q++) yi[q] = r[q] + (bias != null ? bias[j + q] : 0f);
            }
        }
    }

    /// <summary>Four dot products of x with F16/BF16 rows w0..w3, widened in registers (AVX2+FMA only); returns whether
    /// an F16 inf/NaN was seen among the first k &amp; ~15 values (the exact redo then ran).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static bool Dot4Half(float* x, ushort* w0, ushort* w1, ushort* w2, ushort* w3, int k, bool bf16, Span<float> r)
    {
        bool nonFinite = false;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        int p = 0;
        if (bf16)
        {
            for (; p <= k - 16; p += 16)
            {
                var x0 = Avx.LoadVector256(x + p); var x1 = Avx.LoadVector256(x + p + 8);
                a0 = Fma.MultiplyAdd(x0, (Avx2.ConvertToVector256Int32(w0 + p) << 16).AsSingle(), a0);
                b0 = Fma.MultiplyAdd(x1, (Avx2.ConvertToVector256Int32(w0 + p + 8) << 16).AsSingle(), b0);
                a1 = Fma.MultiplyAdd(x0, (Avx2.ConvertToVector256Int32(w1 + p) << 16).AsSingle(), a1);
                b1 = Fma.MultiplyAdd(x1, (Avx2.ConvertToVector256Int32(w1 + p + 8) << 16).AsSingle(), b1);
                a2 = Fma.MultiplyAdd(x0, (Avx2.ConvertToVector256Int32(w2 + p) << 16).AsSingle(), a2);
                b2 = Fma.MultiplyAdd(x1, (Avx2.ConvertToVector256Int32(w2 + p + 8) << 16).AsSingle(), b2);
                a3 = Fma.MultiplyAdd(x0, (Avx2.ConvertToVector256Int32(w3 + p) << 16).AsSingle(), a3);
                b3 = Fma.MultiplyAdd(x1, (Avx2.ConvertToVector256Int32(w3 + p + 8) << 16).AsSingle(), b3);
            }
        }
        else
        {
            // Finite halves widen in three integer/float ops (sign-extend, shift, mask, ×2^112: exact for normals and
            // subnormals, the sign rides along in bit 31); an inf/NaN exponent would come out finite, so any lane with
            // exponent 31 is flagged (one compare per 16 values) and the four rows are redone exactly below.
            var expMask = Vector256.Create((short)0x7C00);
            Vector256<short> bad = default;
            for (; p <= k - 16; p += 16)
            {
                var x0 = Avx.LoadVector256(x + p); var x1 = Avx.LoadVector256(x + p + 8);
                // vpmovsxwd straight from memory (no 256-bit widen/extract); one accumulator per row keeps x, the constants
                // and the flag in registers.
                var h = Vector256.Load((short*)w0 + p);
                bad |= Vector256.Equals(h & expMask, expMask);
                a0 = Fma.MultiplyAdd(x1, FiniteHalfToSingle(Avx2.ConvertToVector256Int32((short*)w0 + p + 8)),
                     Fma.MultiplyAdd(x0, FiniteHalfToSingle(Avx2.ConvertToVector256Int32((short*)w0 + p)), a0));
                h = Vector256.Load((short*)w1 + p);
                bad |= Vector256.Equals(h & expMask, expMask);
                a1 = Fma.MultiplyAdd(x1, FiniteHalfToSingle(Avx2.ConvertToVector256Int32((short*)w1 + p + 8)),
                     Fma.MultiplyAdd(x0, FiniteHalfToSingle(Avx2.ConvertToVector256Int32((short*)w1 + p)), a1));
                h = Vector256.Load((short*)w2 + p);
                bad |= Vector256.Equals(h & expMask, expMask);
                a2 = Fma.MultiplyAdd(x1, FiniteHalfToSingle(Avx2.ConvertToVector256Int32((short*)w2 + p + 8)),
                     Fma.MultiplyAdd(x0, FiniteHalfToSingle(Avx2.ConvertToVector256Int32((short*)w2 + p)), a2));
                h = Vector256.Load((short*)w3 + p);
                bad |= Vector256.Equals(h & expMask, expMask);
                a3 = Fma.MultiplyAdd(x1, FiniteHalfToSingle(Avx2.ConvertToVector256Int32((short*)w3 + p + 8)),
                     Fma.MultiplyAdd(x0, FiniteHalfToSingle(Avx2.ConvertToVector256Int32((short*)w3 + p)), a3));
            }
            if (bad != Vector256<short>.Zero)
            {
                nonFinite = true;
                // Rare (a checkpoint with inf/NaN weights): exact scalar dot products so they propagate as in PyTorch.
                float e0 = 0, e1 = 0, e2 = 0, e3 = 0;
                for (int q = 0; q < p; q++)
                {
                    float xv = x[q];
                    e0 += xv * (float)((Half*)w0)[q]; e1 += xv * (float)((Half*)w1)[q];
                    e2 += xv * (float)((Half*)w2)[q]; e3 += xv * (float)((Half*)w3)[q];
                }
                a0 = Vector256.CreateScalar(e0); a1 = Vector256.CreateScalar(e1); a2 = Vector256.CreateScalar(e2); a3 = Vector256.CreateScalar(e3);
                b0 = b1 = b2 = b3 = default;
            }
        }
        float s0 = Vector256.Sum(a0 + b0), s1 = Vector256.Sum(a1 + b1), s2 = Vector256.Sum(a2 + b2), s3 = Vector256.Sum(a3 + b3);
        var dt = bf16 ? DType.BF16 : DType.F16;
        for (; p < k; p++)
        {
            float xv = x[p];
            s0 += xv * LoadWeight((byte*)w0, dt, p); s1 += xv * LoadWeight((byte*)w1, dt, p);
            s2 += xv * LoadWeight((byte*)w2, dt, p); s3 += xv * LoadWeight((byte*)w3, dt, p);
        }
        r[0] = s0; r[1] = s1; r[2] = s2; r[3] = s3;
        return nonFinite;
    }

    /// <summary>Four dot products of x with w0..w3 over k values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Dot4(float* x, float* w0, float* w1, float* w2, float* w3, int k, Span<float> r)
    {
        int p = 0;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (Vector512.IsHardwareAccelerated && k >= 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; p <= k - 16; p += 16)
            {
                var xv = Vector512.Load(x + p);
                a0 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w0 + p), a0);
                a1 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w1 + p), a1);
                a2 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w2 + p), a2);
                a3 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w3 + p), a3);
            }
            s0 = Vector512.Sum(a0); s1 = Vector512.Sum(a1); s2 = Vector512.Sum(a2); s3 = Vector512.Sum(a3);
        }
        else if (Fma.IsSupported && Avx.IsSupported && k >= 8)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; p <= k - 8; p += 8)
            {
                var xv = Avx.LoadVector256(x + p);
                a0 = Fma.MultiplyAdd(xv, Avx.LoadVector256(w0 + p), a0);
                a1 = Fma.MultiplyAdd(xv, Avx.LoadVector256(w1 + p), a1);
                a2 = Fma.MultiplyAdd(xv, Avx.LoadVector256(w2 + p), a2);
                a3 = Fma.MultiplyAdd(xv, Avx.LoadVector256(w3 + p), a3);
            }
            s0 = Vector256.Sum(a0); s1 = Vector256.Sum(a1); s2 = Vector256.Sum(a2); s3 = Vector256.Sum(a3);
        }
        else if (Vector128.IsHardwareAccelerated && k >= 4)
        {
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; p <= k - 4; p += 4)
            {
                var xv = Vector128.Load(x + p);
                a0 += xv * Vector128.Load(w0 + p);
                a1 += xv * Vector128.Load(w1 + p);
                a2 += xv * Vector128.Load(w2 + p);
                a3 += xv * Vector128.Load(w3 + p);
            }
            s0 = Vector128.Sum(a0); s1 = Vector128.Sum(a1); s2 = Vector128.Sum(a2); s3 = Vector128.Sum(a3);
        }
        for (; p < k; p++)
        {
            float xv = x[p];
            s0 += xv * w0[p]; s1 += xv * w1[p]; s2 += xv * w2[p]; s3 += xv * w3[p];
        }
        r[0] = s0; r[1] = s1; r[2] = s2; r[3] = s3;
    }

    /// <summary>
    /// GEMM over rows [m0, m1) and columns [n0, n1): for each block of <see cref="MC"/> rows and <see cref="KC"/>
    /// depth (which then stays in L2), every <see cref="PanelWidth"/>-column panel of W is transposed (and widened)
    /// once into a k-major panel that stays in L1 while the register tile walks down the rows.
    /// </summary>
    public static void GemmBlock(float* a, int m0, int m1, int k, byte* w, DType wt, int n, float* bias, float* c, int n0, int n1, float* scratch)
    {
        KernelArgs.Range(m0, m1);
        CheckLinear(a, m1, k, w, wt, n, c, n0, n1, nameof(a), nameof(w), nameof(c));
        KernelArgs.NotNull(scratch, m1 > m0 && n1 > n0 && k > 0);
        // F32 W at prefill sizes: read W in place (GemmWRows) instead of packing it per call, for column ranges wide
        // enough that Gemm would pack A (narrow ones, e.g. QuantLinearExec's 64-row dequantized panels, read A in place).
        if (k > 0 && PackA && n1 - n0 >= PackAMinColumns && GemmWRows.Applies(m1 - m0, wt))
        {
            GemmWRows.Rows(a, m0, m1, k, (float*)w, n, bias, c, n0, n1, scratch);
            return;
        }
        GemmCore(a, m0, m1, k, w, wt, null, n, bias, c, n0, n1, scratch);
    }

    /// <summary>
    /// <see cref="GemmBlock"/> over a weight packed once by <see cref="PackWeights"/>: no per-call transposition or
    /// widening. <paramref name="n0"/> must be a multiple of <see cref="PanelWidth"/> (as <see cref="PlanUnits"/> gives).
    /// </summary>
    public static void GemmBlockPacked(float* a, int m0, int m1, int k, float* packed, int n, float* bias, float* c, int n0, int n1, float* scratch)
    {
        if (n0 % PanelWidth != 0) throw new ArgumentException($"column start {n0} is not a multiple of the panel width {PanelWidth}", nameof(n0));
        KernelArgs.Range(m0, m1);
        CheckLinear(a, m1, k, (byte*)packed, DType.F32, n, c, n0, n1, nameof(a), nameof(packed), nameof(c));
        KernelArgs.NotNull(scratch, m1 > m0 && n1 > n0 && k > 0);
        GemmCore(a, m0, m1, k, null, DType.F32, packed, n, bias, c, n0, n1, scratch);
    }

    /// <summary>Floats of the packed copy of an [n, k] weight (<see cref="PackWeights"/>): n rounded up to whole panels.</summary>
    public static long PackedFloats(int n, int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        return (long)((n + PanelWidth - 1) / PanelWidth) * PanelWidth * k;
    }

    // Checks shared by the Linear entry points: sizes non-negative, columns 0 ≤ n0 ≤ n1 ≤ n, a supported weight type, and
    // x (rows [0, m)), w and y non-null wherever they address data. w may point before its first used row (a caller
    // passing only the columns it owns), so it is not range-checked.
    private static void CheckLinear(float* x, int m, int k, byte* w, DType wt, int n, float* y, int n0, int n1,
        string xName = "x", string wName = "w", string yName = "y")
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        KernelArgs.Range(n0, n1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(n1, n);
        KernelArgs.FloatWeight(wt);
        KernelArgs.NotNull(x, m > 0 && k > 0, xName);
        KernelArgs.NotNull(w, n1 > n0 && k > 0, wName);
        KernelArgs.NotNull(y, m > 0 && n1 > n0, yName);
    }

    // K block for depth k: one block up to KCMax, else KC. Packed weights fix their layout when packed, so they never
    // follow the bench's SingleBlockK switch (flipping it after a model packed would misread the panels).
    internal static int KBlock(int k, bool packed)
    {
        if (k <= KCMax && (packed || SingleBlockK)) return k;
        if (!BalancedKC) return DeepKC;
        // Near-equal blocks of at most DeepKC, so no short last block pays a whole pass over C; a multiple of 16 keeps
        // the F16/BF16 widening of each row segment in whole vectors.
        int blocks = (k + DeepKC - 1) / DeepKC;
        return Math.Min(DeepKC, ((k + blocks - 1) / blocks + 15) & ~15);
    }

    /// <summary>Whether deep k is split into equal blocks of at most <see cref="DeepKC"/> (a switch for A/B runs).</summary>
    internal static bool BalancedKC = true;

    /// <summary>K block for k &gt; 384 (≤ 384; a switch for A/B runs of the kernel bench).</summary>
    internal static int DeepKC = KC;

    /// <summary>
    /// Packs (and widens) all of W [n, k] once into the panel layout the GEMM reads: for the K block starting at pc
    /// (depth kc), the panels in column order at pc·nPad + j·kc·<see cref="PanelWidth"/> (nPad = n rounded up to
    /// panels), zero beyond n. <paramref name="scratch"/> needs <see cref="ScratchFloats"/>(k) floats.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackWeights(byte* w, DType wt, int n, int k, float* dst, float* scratch)
    {
        KernelArgs.FloatWeight(wt);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(k);
        KernelArgs.NotNull(w, true);
        KernelArgs.NotNull(dst, true);
        KernelArgs.NotNull(scratch, wt != DType.F32);
        int nr = PanelWidth, kcb = KBlock(k, packed: true);
        long nPad = (long)((n + nr - 1) / nr) * nr;
        float* tmp = Align64(scratch);
        for (int pc = 0; pc < k; pc += kcb)
        {
            int kc = Math.Min(kcb, k - pc);
            for (int col = 0, j = 0; col < n; col += nr, j++)
                PackPanel(w, wt, k, col, Math.Min(nr, n - col), pc, kc, nr, dst + pc * nPad + (long)j * kc * nr, tmp);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GemmCore(float* a, int m0, int m1, int k, byte* w, DType wt, float* packed, int n, float* bias, float* c, int n0, int n1, float* scratch)
    {
        if (m0 >= m1 || n0 >= n1) return;
        if (k == 0)
        {
            for (int i = m0; i < m1; i++)
                if (bias != null) Buffer.MemoryCopy(bias + n0, c + (long)i * n + n0, (n1 - n0) * 4L, (n1 - n0) * 4L);
                else new Span<float>(c + (long)i * n + n0, n1 - n0).Clear();
            return;
        }
        GemmRange(a, m0, m1, k, w, wt, packed, n, bias, c, n0, n1, scratch);
    }

    /// <summary>Narrowest column range that packs A into micro-panels (a switch for A/B runs of the kernel bench).</summary>
    internal static int PackAMinColumns = 96;

    /// <summary>Work units per worker <see cref="PlanUnits"/> aims for (a switch for A/B runs of the kernel bench).</summary>
    internal static int UnitsPerWorker = 4;

    /// <summary>Split the columns into NC chunks when k has several K blocks (a switch for A/B runs).</summary>
    internal static bool ChunkColumns = true;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GemmRange(float* a, int m0, int m1, int k, byte* w, DType wt, float* packed, int n, float* bias, float* c, int n0, int n1, float* scratch)
    {
        // Packing A costs ≈ 4/cols of the FMA work (≈ 0.25 cycles per float against 2·cols flops at 32 per cycle) and
        // makes the tile ≈ 7-10 % faster, so a narrow column range (the 64-row dequantized panels of QuantLinearExec)
        // reads A in place, as a contiguous copy per K block when k has several. PackA is read once: the bench/tests
        // may flip the switch while other threads run.
        bool packA = PackA && n1 - n0 >= PackAMinColumns;
        for (int mb = m0; mb < m1; mb += MC)
        {
            int mc = Math.Min(MC, m1 - mb);
            if (packA) PackABlock(a, mb, mc, k, KBlock(k, packed != null), scratch);
            GemmColumns(a, mb, mc, k, w, wt, packed, n, bias, c, n0, n1, scratch, packA, false);
        }
    }

    // The whole A block (mc rows × k from row mb) once, K block by K block (at apack + pc·mcPad), each register tile's
    // rows k-major in one micro-panel (h floats per k step): the kernel reads A as one sequential stream instead of h
    // rows k floats apart, and every column range of the block reuses it.
    private static void PackABlock(float* a, int mb, int mc, int k, int kcb, float* scratch)
    {
        float* apack = APack(scratch);
        TilePlan(mc, out int n6, out int tiles);
        int mcPad = n6 * MR + (tiles - n6) * 4;
        for (int pc = 0; pc < k; pc += kcb)
        {
            int kc = Math.Min(kcb, k - pc);
            float* ab = a + (long)mb * k + pc;
            for (int t = 0, r0 = 0; t < tiles; t++)
            {
                int h = t < n6 ? MR : 4;
                PackAPanel(ab + (long)r0 * k, k, Math.Min(h, mc - r0), h, kc, apack + (long)pc * mcPad + (long)r0 * kc);
                r0 += h;
            }
        }
    }

    private static float* APack(float* scratch) => Align64(scratch) + KCMax * MaxPanel + MR * MaxPanel + MaxPanel * KCMax;

    // Rows [mb, mb + mc) (mc ≤ MC) × columns [n0, n1); with packA the block's A is already in the scratch (PackABlock).
    // pastEnd: with one K block, the last panel prefetches the panel after n1 too (a GemmSplit owner's next chunk).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GemmColumns(float* a, int mb, int mc, int k, byte* w, DType wt, float* packed, int n, float* bias, float* c, int n0, int n1, float* scratch, bool packA, bool pastEnd)
    {
        int nr = PanelWidth;
        float* panel = Align64(scratch);          // [kcb][nr]
        float* tile = panel + KCMax * MaxPanel;  // [MR][nr]
        float* tmp = tile + MR * MaxPanel;       // [nr][KCMax] widened F16/BF16 rows
        float* apack = tmp + MaxPanel * KCMax;   // the A block as register-tile micro-panels (APackFloats)
        int kcb = KBlock(k, packed != null);
        long nPad = (long)((n + nr - 1) / nr) * nr;
        // With several K blocks, C is revisited once per block: in column chunks of NC the chunk's C (MC×NC, 144 KiB)
        // stays in L2 across the blocks, and the chunk's W rows are read whole within a short time (TLB, DRAM pages).
        int chunk = ChunkColumns && k > kcb ? NC : n1 - n0;
        int wEnd = pastEnd && k <= kcb ? n : n1;
        // whether the per-call W prefetch runs inside the tiles' k loops (see wRow); read once
        bool kLoopPrefetch = PerCallWPrefetch == 2 && Prefetch && packA && Sse.IsSupported && Fma.IsSupported && Avx.IsSupported && !Avx512F.IsSupported;
        {
            TilePlan(mc, out int n6, out int tiles);
            int mcPad = n6 * MR + (tiles - n6) * 4;
            for (int c0 = n0; c0 < n1; c0 += chunk)
            for (int pc = 0; pc < k; pc += kcb)
            {
                int kc = Math.Min(kcb, k - pc);
                bool first = pc == 0, last = pc + kc == k;
                float* ab = a + (long)mb * k + pc;
                float* apc = apack + (long)pc * mcPad;
                int lda = k;
                if (!packA && k > kcb)
                {
                    // Rows k floats apart (a power-of-two k maps them onto a few L2 sets): copy the block contiguous.
                    for (int r = 0; r < mc; r++) Buffer.MemoryCopy(ab + (long)r * k, apack + (long)r * kc, kc * 4L, kc * 4L);
                    ab = apack; lda = kc;
                }
                int es = wt.SizeOf(), rowBytes = kc * es, c1 = Math.Min(n1, c0 + chunk), pf1 = c1 == n1 ? wEnd : c1;
                for (int col = c0; col < c1; col += nr)
                {
                    int ncols = Math.Min(nr, n1 - col);
                    float* pan;
                    int nextLines = 0, linesPerTile = 0, lineShift = 0;
                    byte* nextW = null;
                    bool toL1 = false;
                    if (packed != null)
                    {
                        // Prepacked: the panel is read in place; each tile prefetches a share of the next panel into L1.
                        pan = packed + pc * nPad + (long)(col / nr) * kc * nr;
                        if (Prefetch && Sse.IsSupported && col + nr < pf1)
                        {
                            nextW = (byte*)(pan + kc * nr);
                            nextLines = kc * nr * 4 / 64;
                            toL1 = true;
                        }
                    }
                    else
                    {
                        PackPanel(w, wt, k, col, ncols, pc, kc, nr, panel, tmp);
                        pan = panel;
                        // Session 6 (PerCallWPrefetch = 1): while this panel's tiles run, they prefetch the next panel's W
                        // rows into L2 in equal shares, as bursts before each tile's k loop; session 7 measured the bursts
                        // 1.5-4 points of the FMA peak slower than no prefetch (prefetcht1 stalls on misses to L3/DRAM).
                        // The default (2) spreads them through the k loops instead (wRow below) where the tiles take a
                        // stream (AVX2 packed-A tiles); the tiles that do not (A read in place, AVX-512) keep the bursts.
                        if (Prefetch && Sse.IsSupported && col + nr < pf1 && (PerCallWPrefetch == 1 || (PerCallWPrefetch == 2 && !kLoopPrefetch)))
                        {
                            nextW = w + ((long)(col + nr) * k + pc) * es;
                            int linesPerRow = (rowBytes + 63) >> 6;
                            lineShift = linesPerRow;
                            nextLines = Math.Min(nr, pf1 - col - nr) * linesPerRow;
                        }
                    }
                    if (nextLines > 0) linesPerTile = (nextLines + tiles - 1) / tiles;
                    float* bb = last && bias != null ? bias + col : null;
                    // Spread prefetch (PerCallWPrefetch = 2, AVX2 6/4-row tiles): tile t streams row t of the panel
                    // packed next into L2 from inside its k loop (one prefetcht1 per 24 FMAs, 4 bytes per k step =
                    // the row's kc floats), so the packing finds the panel in L2 instead of stalling on L3/DRAM. The
                    // next panel: the next column panel of this chunk, else the chunk's first at the next K block,
                    // else the next chunk, else (a GemmSplit owner) the panel after n1. (A stream may run past its row's
                    // segment, e.g. F16/BF16 rows are half as long or a shorter last K block ends W: prefetches never fault.)
                    byte* wRow = null;
                    int wRows = 0;
                    if (packed == null && kLoopPrefetch)
                    {
                        int nCol = -1, nPc = 0;
                        if (col + nr < c1) nCol = col + nr;
                        else if (pc + kc < k) { nCol = c0; nPc = pc + kc; }
                        else if (c1 < n1) nCol = c1;
                        else if (wEnd > n1) nCol = n1;
                        if (nCol >= 0 && nCol < n)
                        {
                            wRow = w + ((long)nCol * k + nPc) * es;
                            wRows = Math.Min(nr, n - nCol);
                        }
                    }
                    for (int t = 0, ir = 0; t < tiles; t++)
                    {
                        int h = packA ? (t < n6 ? MR : 4) : MR;
                        if (linesPerTile > 0)
                        {
                            int l0 = t * linesPerTile, l1 = Math.Min(nextLines, l0 + linesPerTile);
                            if (toL1) for (int l = l0; l < l1; l++) Sse.Prefetch0(nextW + l * 64);
                            else if (l0 < l1)
                            {
                                // (one division per tile, not one per line)
                                int row = l0 / lineShift, off = l0 - row * lineShift;
                                byte* rp = nextW + (long)row * k * es;
                                for (int l = l0; l < l1; l++)
                                {
                                    Sse.Prefetch1(rp + off * 64);
                                    if (++off == lineShift) { off = 0; rp += (long)k * es; }
                                }
                            }
                        }
                        int mr = Math.Min(h, mc - ir);
                        float* cp = c + (long)(mb + ir) * n + col;
                        if (PrefetchC && Sse.IsSupported && ncols == nr)
                            // The tile's C rows (L3 when C outgrows L2) arrive while its k loop runs, not after it.
                            for (int r = 0; r < mr; r++) { Sse.Prefetch0(cp + (long)r * n); if (nr > 16) Sse.Prefetch0(cp + (long)r * n + 16); }
                        if (packA)
                        {
                            float* ap = apc + (long)ir * kc;
                            byte* pf = t < wRows ? wRow + (long)t * k * es : null;
                            if (ncols == nr) MicroPacked(ap, h, mr, pan, kc, cp, n, first, bb, pf);
                            else
                            {
                                MicroPacked(ap, h, mr, pan, kc, tile, nr, true, null);
                                AddTile(tile, nr, mr, ncols, cp, n, first, bb);
                            }
                        }
                        else
                        {
                            float* ap = ab + (long)ir * lda;
                            if (mr == MR && ncols == nr) Micro(ap, lda, MR, pan, kc, cp, n, first, bb);
                            else
                            {
                                Micro(ap, lda, mr, pan, kc, tile, nr, true, null);
                                AddTile(tile, nr, mr, ncols, cp, n, first, bb);
                            }
                        }
                        ir += h;
                        if (ir >= mc) break;
                    }
                }
            }
        }
    }

    // Register tiles over mc rows: n6 tiles of MR = 6 rows, then 4-row tiles. A 4-row tile (8 accumulators, FMA-latency
    // bound) costs 4/6 of a 6-row one, so 128 rows run as 20×6 + 2×4 with no idle rows instead of 22×6 over 132.
    internal static void TilePlan(int mc, out int n6, out int tiles)
    {
        int q = mc / MR, rem = mc % MR;
        switch (rem)
        {
            case 0: n6 = q; tiles = q; break;
            case 5: n6 = q + 1; tiles = q + 1; break;           // one 6-row tile over 5 rows
            case 3 or 4: n6 = q; tiles = q + 1; break;          // one 4-row tile
            default: if (q > 0) { n6 = q - 1; tiles = q + 1; }  // 7 or 8 rows: two 4-row tiles
                     else { n6 = 0; tiles = 1; } break;         // 1 or 2 rows: one 4-row tile
        }
    }

    // c[r, q] (=|+=) tile[r, q] (+ bias[q]) for the first mr rows and ncols columns of an edge tile.
    private static void AddTile(float* tile, int ldt, int mr, int ncols, float* c, int ldc, bool first, float* bias)
    {
        for (int r = 0; r < mr; r++)
        {
            float* cr = c + (long)r * ldc, tr = tile + r * ldt;
            for (int q = 0; q < ncols; q++)
                cr[q] = (first ? 0f : cr[q]) + tr[q] + (bias != null ? bias[q] : 0f);
        }
    }

    /// <summary>
    /// Packs rows [0, <paramref name="rows"/>) of A (row stride lda, kc values each) into one register-tile micro-panel
    /// of height h ∈ {4, 6}: dst[p·h + r] = a[r·lda + p]; rows in [rows, h) repeat row 0 (the kernel's results for them
    /// are discarded). The 8×8 AVX transposes store 8 floats per k step, so up to 8 − h floats past h·kc are written.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackAPanel(float* a, int lda, int rows, int h, int kc, float* dst)
    {
        float* s0 = a, s1 = rows > 1 ? a + lda : a, s2 = rows > 2 ? a + 2L * lda : a, s3 = rows > 3 ? a + 3L * lda : a,
            s4 = rows > 4 ? a + 4L * lda : a, s5 = rows > 5 ? a + 5L * lda : a;
        int p = 0;
        if (Avx.IsSupported)
            for (; p + 8 <= kc; p += 8)
            {
                var r0 = Avx.LoadVector256(s0 + p); var r1 = Avx.LoadVector256(s1 + p);
                var r2 = Avx.LoadVector256(s2 + p); var r3 = Avx.LoadVector256(s3 + p);
                var r4 = Avx.LoadVector256(s4 + p); var r5 = Avx.LoadVector256(s5 + p);
                var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
                var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
                var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
                var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
                var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
                // rows 4, 5 (and two don't-care lanes): u4..u7 = (t4|t5) pairs
                var u4 = Avx.Shuffle(t4, t4, 0x44); var u5 = Avx.Shuffle(t4, t4, 0xEE);
                var u6 = Avx.Shuffle(t5, t5, 0x44); var u7 = Avx.Shuffle(t5, t5, 0xEE);
                float* d = dst + p * h;
                Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20));
                Avx.Store(d + h, Avx.Permute2x128(u1, u5, 0x20));
                Avx.Store(d + 2 * h, Avx.Permute2x128(u2, u6, 0x20));
                Avx.Store(d + 3 * h, Avx.Permute2x128(u3, u7, 0x20));
                Avx.Store(d + 4 * h, Avx.Permute2x128(u0, u4, 0x31));
                Avx.Store(d + 5 * h, Avx.Permute2x128(u1, u5, 0x31));
                Avx.Store(d + 6 * h, Avx.Permute2x128(u2, u6, 0x31));
                Avx.Store(d + 7 * h, Avx.Permute2x128(u3, u7, 0x31));
            }
        for (; p < kc; p++)
        {
            float* d = dst + p * h;
            d[0] = s0[p]; d[1] = s1[p]; d[2] = s2[p]; d[3] = s3[p];
            if (h > 4) { d[4] = s4[p]; d[5] = s5[p]; }
        }
    }

    /// <summary>Columns of one packed W panel: 32 (two zmm) with AVX-512, else 16 (two ymm or four Vector128).</summary>
    public static readonly int PanelWidth = Avx512F.IsSupported ? 32 : 16;

    private const int MaxPanel = 32;

    /// <summary>Copy the A block to contiguous rows when k &gt; KC (a switch for A/B runs of the kernel bench).</summary>
    internal static bool PackA = true;

    /// <summary>Software prefetch of each register tile's C rows before its k loop (a switch for A/B runs).</summary>
    internal static bool PrefetchC = true;

    /// <summary>Software prefetch of the next W panel's rows into L2 when W is packed per call: 0 none, 1 bursts before each
    /// tile's k loop (session 6), 2 one line at a time from inside the tiles' k loops (a switch for A/B runs of the kernel
    /// bench and the prefill A/B).</summary>
    internal static int PerCallWPrefetch = 2;

    /// <summary>Software prefetch of the next W panel (a switch for A/B runs of the kernel bench).</summary>
    internal static bool Prefetch = true;

    private static float* Align64(float* p) => (float*)(((nint)p + 63) & ~(nint)63);

    /// <summary>
    /// Splits an m×n Linear into work units for <paramref name="workers"/> threads: row blocks of at most
    /// <see cref="MC"/> rows, and column blocks (multiples of the panel width, 64..<see cref="NC"/>) small enough that
    /// there are about four units per worker, so a short M (one 128-token prompt) still keeps every core busy.
    /// </summary>
    public static int PlanUnits(int m, int n, int workers, out int unitRows, out int unitCols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (workers <= 1 || m <= 0 || n <= 0) { unitRows = Math.Max(m, 1); unitCols = Math.Max(n, 1); return 1; }
        int mBlocks = (m + MC - 1) / MC;
        unitRows = (m + mBlocks - 1) / mBlocks;
        unitRows = (unitRows + MR - 1) / MR * MR;
        mBlocks = (m + unitRows - 1) / unitRows;
        int want = Math.Max(1, (UnitsPerWorker * workers + mBlocks - 1) / mBlocks);
        int nr = PanelWidth;
        int cols = (n + want - 1) / want;
        cols = Math.Clamp((cols + nr - 1) / nr * nr, 64, NC);
        unitCols = cols;
        return mBlocks * ((n + cols - 1) / cols);
    }

    /// <summary>The output block [m0, m1) × [n0, n1) of work unit <paramref name="index"/> of a <see cref="PlanUnits"/> split
    /// (one mapping for the GEMM and for epilogues applied to the unit's block afterwards).</summary>
    public static void UnitBlock(int index, int m, int n, int unitRows, int unitCols, out int m0, out int m1, out int n0, out int n1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(unitRows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(unitCols);
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        int nBlocks = (n + unitCols - 1) / unitCols;
        m0 = index / nBlocks * unitRows; m1 = Math.Min(m, m0 + unitRows);
        n0 = index % nBlocks * unitCols; n1 = Math.Min(n, n0 + unitCols);
    }

    /// <summary>Runs work unit <paramref name="index"/> of a <see cref="PlanUnits"/> split.</summary>
    public static void RunUnit(int index, float* x, int m, int k, byte* w, DType wt, int n, float* bias, float* y,
        int unitRows, int unitCols, float* scratch)
    {
        UnitBlock(index, m, n, unitRows, unitCols, out int m0, out int m1, out int n0, out int n1);
        if (m0 < m1 && n0 < n1) GemmBlock(x, m0, m1, k, w, wt, n, bias, y, n0, n1, scratch);
    }

    /// <summary>Runs work unit <paramref name="index"/> of a <see cref="PlanUnits"/> split over a <see cref="PackWeights"/> copy.</summary>
    public static void RunUnitPacked(int index, float* x, int m, int k, float* packed, int n, float* bias, float* y,
        int unitRows, int unitCols, float* scratch)
    {
        UnitBlock(index, m, n, unitRows, unitCols, out int m0, out int m1, out int n0, out int n1);
        if (m0 < m1 && n0 < n1) GemmBlockPacked(x, m0, m1, k, packed, n, bias, y, n0, n1, scratch);
    }

    /// <summary>Whether <c>LinearExec</c> splits a multi-threaded GEMM with <see cref="GemmSplit"/> (contiguous
    /// per-worker ranges with stealing at the end) instead of the <see cref="PlanUnits"/> units (a switch for A/B runs;
    /// HUB_GEMM_SPLIT=units in the environment selects the session-5 units for end-to-end comparisons).</summary>
    internal static bool StealSplit = !string.Equals(Environment.GetEnvironmentVariable("HUB_GEMM_SPLIT"), "units", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether a <see cref="RunChunk"/> with one K block prefetches the W panel after its last column (the
    /// owner's next chunk) instead of stopping at the chunk's end (a switch for A/B runs).</summary>
    internal static bool PrefetchPastChunk = true;

    /// <summary>Smallest chunk (columns) a <see cref="GemmSplit"/> hands out when k has several K blocks (a switch for
    /// A/B runs).</summary>
    internal static int DeepKMinChunk = 64;

    /// <summary>
    /// Runs rows [m0, m1) (at most <see cref="MC"/>, one row block of a <see cref="GemmSplit"/>) × columns [n0, n1) of
    /// y = x·Wᵀ + b for a worker that claims several such chunks in a row: with <paramref name="packA"/> the row block's
    /// A is packed into the worker's scratch only when <paramref name="packedRow"/> (the row block packed there last,
    /// −1 at the start of the worker's share) differs from m0, so a worker packs A once per row block, not per chunk.
    /// Exactly one of <paramref name="w"/> (with <paramref name="wt"/>) and <paramref name="packed"/> (a
    /// <see cref="PackWeights"/> copy; n0 then a multiple of <see cref="PanelWidth"/>) is non-null. <paramref name="rows"/>
    /// (the whole GEMM's M; 0: unknown, the chunk's rows decide) picks <see cref="GemmWRows"/> for F32 W at prefill sizes.
    /// </summary>
    internal static void RunChunk(float* x, int m0, int m1, int k, byte* w, DType wt, float* packed, int n, float* bias, float* y,
        int n0, int n1, float* scratch, bool packA, ref int packedRow, int rows = 0)
    {
        KernelArgs.Range(m0, m1);
        if (m1 - m0 > MC) throw new ArgumentOutOfRangeException(nameof(m1), $"rows [{m0}, {m1}) exceed one row block of {MC}");
        if (packed != null && n0 % PanelWidth != 0) throw new ArgumentException($"column start {n0} is not a multiple of the panel width {PanelWidth}", nameof(n0));
        CheckLinear(x, m1, k, packed != null ? (byte*)packed : w, packed != null ? DType.F32 : wt, n, y, n0, n1);
        KernelArgs.NotNull(scratch, m1 > m0 && n1 > n0 && k > 0);
        if (m0 >= m1 || n0 >= n1) return;
        if (k == 0) { GemmCore(x, m0, m1, k, w, wt, packed, n, bias, y, n0, n1, scratch); return; }
        // F32 W packed per call at prefill sizes (rows: the whole GEMM's M, 0 when unknown) where the split's shares are
        // wide enough to pack A: W read in place.
        if (packed == null && packA && PackA && GemmWRows.Applies(rows > 0 ? rows : m1 - m0, wt))
        {
            // (each worker packs x for itself: one xᵀ pack shared by the workers measured level in sessions 8 and 9)
            GemmWRows.Block(x, m0, m1, k, (float*)w, n, bias, y, n0, n1, scratch, ref packedRow, PrefetchPastChunk);
            return;
        }
        packA &= PackA;
        // Without packing, deep k copies A rows into the same scratch: a later packed chunk must pack again.
        if (!packA) packedRow = -1;
        else if (packedRow != m0)
        {
            PackABlock(x, m0, m1 - m0, k, KBlock(k, packed != null), scratch);
            packedRow = m0;
        }
        GemmColumns(x, m0, m1 - m0, k, w, wt, packed, n, bias, y, n0, n1, scratch, packA, PrefetchPastChunk);
    }

    /// <summary>
    /// Splits an m×n GEMM over the workers of a pool as contiguous, equal shares of (row block × W panel) items, one per
    /// worker (pool item i = share i), each claimed from its front by its owner in shrinking chunks; a worker that runs
    /// out steals chunks from the back of the others' shares. So each worker packs A once per row block and streams
    /// its own contiguous W columns, and no worker idles at the end of the op for more than a small last chunk, while
    /// a worker delayed by a neighbour process still has its share taken over.
    /// </summary>
    internal sealed class GemmSplit
    {
        // Per share one claim word, lo (low 32 bits) | hi (high 32 bits) over the item space, on a cache line of its own.
        private const int Stride = 16;
        private long[] _words = [];
        private int _panels, _rowsPerBlock, _m, _n, _maxChunk, _minChunk;

        /// <summary>Number of shares (pool items) of the current split.</summary>
        public int Shares { get; private set; }

        /// <summary>Whether the shares are wide enough that packing A per row block pays (see <see cref="PackAMinColumns"/>).</summary>
        public bool PackA { get; private set; }

        /// <summary>Prepares a split of an m×n GEMM with k-deep rows into <paramref name="shares"/> shares (not thread-safe:
        /// call before the pool runs the shares). <paramref name="wInPlace"/>: W is F32 packed per call, so the chunks run
        /// <see cref="GemmWRows"/> (each worker packs its own xᵀ), whose row blocks are whole xᵀ panels.</summary>
        public void Reset(int m, int n, int k, int shares, bool wInPlace = false)
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(m);
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
            ArgumentOutOfRangeException.ThrowIfNegative(k);
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(shares);
            int nr = PanelWidth;
            // GemmWRows' row blocks are whole xᵀ panels (GemmWRows.RowBlock), Gemm's whole register tiles
            bool wRows = wInPlace && k > 0 && Gemm.PackA && GemmWRows.Applies(m, DType.F32);
            int mc = wRows ? GemmWRows.RowBlock : MC, step = wRows ? GemmWRows.XR : MR;
            int mBlocks = (m + mc - 1) / mc;
            _rowsPerBlock = Math.Min(mc, ((m + mBlocks - 1) / mBlocks + step - 1) / step * step);
            mBlocks = (m + _rowsPerBlock - 1) / _rowsPerBlock;
            _panels = (n + nr - 1) / nr;
            _m = m; _n = n;
            // With several K blocks a chunk's C stays in L2 across the blocks while it is at most NC columns wide.
            _maxChunk = Math.Max(1, NC / nr);
            // With several K blocks every chunk reloads each K block of packed A (MC×KC, 180 KiB) from L3 into L2, about
            // 1/5 of one panel's FMA time: chunks of at least DeepKMinChunk panels keep that small.
            _minChunk = k > KBlock(k, false) ? Math.Max(1, DeepKMinChunk / nr) : 1;
            long items = (long)mBlocks * _panels;
            if (items > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(m), $"{m}×{n} GEMM has too many panels to split");
            shares = (int)Math.Min(shares, items);
            Shares = shares;
            // Columns one A pack serves: a worker's part of the row block when there are fewer blocks than shares, else whole rows.
            PackA = Math.Min(n, (long)n * mBlocks / shares) >= PackAMinColumns;
            if (_words.Length < shares * Stride) _words = new long[shares * Stride];
            for (int s = 0; s < shares; s++)
            {
                long lo = items * s / shares, hi = items * (s + 1) / shares;
                Volatile.Write(ref _words[s * Stride], lo | (hi << 32));
            }
        }

        /// <summary>
        /// Claims the next chunk for the worker running share <paramref name="share"/>: from the front of its own share,
        /// then from the back of the others' (<paramref name="cursor"/>: 0 at the start, advanced as shares run dry).
        /// The chunk is rows [m0, m1) (one row block) × columns [n0, n1); false when every share is done.
        /// </summary>
        public bool Claim(int share, ref int cursor, out int m0, out int m1, out int n0, out int n1)
        {
            while (cursor < Shares)
            {
                int s = (share + cursor) % Shares;
                bool own = cursor == 0;
                ref long word = ref _words[s * Stride];
                while (true)
                {
                    long v = Volatile.Read(ref word);
                    int lo = (int)(v & 0xFFFFFFFF), hi = (int)(v >>> 32);
                    if (lo >= hi) break;
                    // Half of what is left (at most NC columns), within one row block: big chunks while the share is
                    // long, single panels at the end so both workers finish within about one panel of each other.
                    int take = Math.Min(hi - lo, Math.Max(_minChunk, Math.Min(_maxChunk, (hi - lo + 1) / 2)));
                    int a, b;
                    if (own)
                    {
                        a = lo; b = Math.Min(lo + take, (lo / _panels + 1) * _panels);
                        if (Interlocked.CompareExchange(ref word, (uint)b | ((long)hi << 32), v) != v) continue;
                    }
                    else
                    {
                        b = hi; a = Math.Max(hi - take, (hi - 1) / _panels * _panels);
                        if (Interlocked.CompareExchange(ref word, (uint)lo | ((long)a << 32), v) != v) continue;
                    }
                    int rb = a / _panels, nr = PanelWidth;
                    m0 = rb * _rowsPerBlock; m1 = Math.Min(_m, m0 + _rowsPerBlock);
                    n0 = (a - rb * _panels) * nr; n1 = Math.Min(_n, (b - rb * _panels) * nr);
                    return true;
                }
                cursor++;
            }
            m0 = m1 = n0 = n1 = 0;
            return false;
        }
    }

    /// <summary>
    /// Packs <paramref name="ncols"/> ≤ <see cref="PanelWidth"/> float rows (row q at src + q·ld, kc values each) into
    /// one k-major panel, zero-padded to the panel width: the B operand <see cref="MicroTile"/> reads.
    /// </summary>
    internal static void PackRowsPanel(float* src, int ld, int ncols, int kc, float* panel) =>
        PackPanel((byte*)src, DType.F32, ld, 0, ncols, 0, kc, PanelWidth, panel, null);

    /// <summary>
    /// c[mr × ncols] = a[mr × kc] (row stride lda) · panel[kc × <see cref="PanelWidth"/>], for any mr ≤ <see cref="MR"/>
    /// and ncols ≤ <see cref="PanelWidth"/>: the register tile with a scratch <paramref name="tile"/> (MR × PanelWidth
    /// floats) at the edges, so small fixed-stride products (attention's q·kᵀ and p·v) reuse the GEMM's kernels.
    /// </summary>
    internal static void MicroTile(float* a, int lda, int mr, float* panel, int kc, float* c, int ldc, int ncols, float* tile)
    {
        int nr = PanelWidth;
        if (mr == MR && ncols == nr) { Micro(a, lda, MR, panel, kc, c, ldc, true, null); return; }
        Micro(a, lda, mr, panel, kc, tile, nr, true, null);
        for (int r = 0; r < mr; r++) Buffer.MemoryCopy(tile + r * nr, c + (long)r * ldc, ncols * 4L, ncols * 4L);
    }

    // panel[p·nr + q] = W[col + q, pc + p] for p < kc, q < ncols; zero for q ≥ ncols.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackPanel(byte* w, DType wt, int k, int col, int ncols, int pc, int kc, int nr, float* panel, float* tmp)
    {
        float* src; long ld;
        if (wt == DType.F32) { src = (float*)w + (long)col * k + pc; ld = k; }
        else
        {
            for (int q = 0; q < ncols; q++) ToFloatCore(w, wt, (long)(col + q) * k + pc, tmp + (long)q * KCMax, kc);
            src = tmp; ld = KCMax;
        }
        int q0 = 0;
        if (Avx.IsSupported)
            for (; q0 + 8 <= ncols; q0 += 8)
            {
                float* s0 = src + q0 * ld;
                int p = 0;
                for (; p + 8 <= kc; p += 8) Transpose8x8(s0 + p, ld, panel + p * nr + q0, nr);
                for (; p < kc; p++)
                    for (int q = 0; q < 8; q++) panel[p * nr + q0 + q] = s0[q * ld + p];
            }
        for (int q = q0; q < ncols; q++)
        {
            float* s = src + q * ld;
            for (int p = 0; p < kc; p++) panel[p * nr + q] = s[p];
        }
        if (ncols < nr)
            for (int p = 0; p < kc; p++) new Span<float>(panel + p * nr + ncols, nr - ncols).Clear();
    }

    // d[j·nr + q] = s[q·ld + j] for q, j < 8: one 8×8 transpose (unpack, shuffle, 128-bit lane permute).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* s, long ld, float* d, int nr) =>
        Transpose8x8(Avx.LoadVector256(s), Avx.LoadVector256(s + ld), Avx.LoadVector256(s + 2 * ld), Avx.LoadVector256(s + 3 * ld),
            Avx.LoadVector256(s + 4 * ld), Avx.LoadVector256(s + 5 * ld), Avx.LoadVector256(s + 6 * ld), Avx.LoadVector256(s + 7 * ld), d, nr);

    /// <summary>
    /// Stores the 8×8 transpose of the 32-bit lanes of r0..r7: d[j·stride + q] = lane j of r_q. Shared by the f32 W
    /// packing and the int4/int8 prefill repacks (there the lanes are 4-byte weight quads; the shuffles move bits only).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3,
        Vector256<float> r4, Vector256<float> r5, Vector256<float> r6, Vector256<float> r7, float* d, long stride)
    {
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(d + stride, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(d + 2 * stride, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(d + 3 * stride, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(d + 4 * stride, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(d + 5 * stride, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(d + 6 * stride, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(d + 7 * stride, Avx.Permute2x128(u3, u7, 0x31));
    }

    // c[mr×nr] (=|+=) a[mr×kc] (row stride lda) · panel[kc×nr] (+ bias); rows ≥ mr read row 0 and are discarded by the
    // caller (it passes a tile for c).
    private static void Micro(float* a, int lda, int mr, float* bp, int kc, float* c, int ldc, bool assign, float* bias)
    {
        if (Avx512F.IsSupported) MicroAvx512(a, lda, mr, bp, kc, c, ldc, assign, bias);
        else if (Fma.IsSupported && Avx.IsSupported) MicroAvx2(a, lda, mr, bp, kc, c, ldc, assign, bias);
        else MicroPortable(a, lda, 1, mr, bp, kc, c, ldc, assign, bias);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroAvx2(float* a, int lda, int mr, float* bp, int kc, float* c, int ldc, bool assign, float* bias)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        float* a0 = a, a1 = mr > 1 ? a + lda : a, a2 = mr > 2 ? a + 2 * lda : a, a3 = mr > 3 ? a + 3 * lda : a,
            a4 = mr > 4 ? a + 4 * lda : a, a5 = mr > 5 ? a + 5 * lda : a;
        int p = 0;
        for (; p + 2 <= kc; p += 2)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Vector256.Create(a0[p]); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Vector256.Create(a1[p]); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Vector256.Create(a2[p]); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Vector256.Create(a3[p]); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Vector256.Create(a4[p]); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Vector256.Create(a5[p]); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
            b0 = Avx.LoadVector256(bp + 16);
            b1 = Avx.LoadVector256(bp + 24);
            bp += 32;
            av = Vector256.Create(a0[p + 1]); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Vector256.Create(a1[p + 1]); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Vector256.Create(a2[p + 1]); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Vector256.Create(a3[p + 1]); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Vector256.Create(a4[p + 1]); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Vector256.Create(a5[p + 1]); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
        }
        if (p < kc)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Vector256.Create(a0[p]); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Vector256.Create(a1[p]); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Vector256.Create(a2[p]); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Vector256.Create(a3[p]); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Vector256.Create(a4[p]); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Vector256.Create(a5[p]); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
        }
        if (bias != null)
        {
            var v0 = Avx.LoadVector256(bias); var v1 = Avx.LoadVector256(bias + 8);
            c00 += v0; c01 += v1; c10 += v0; c11 += v1; c20 += v0; c21 += v1;
            c30 += v0; c31 += v1; c40 += v0; c41 += v1; c50 += v0; c51 += v1;
        }
        Store(c, c00, c01, assign); Store(c + ldc, c10, c11, assign); Store(c + 2 * ldc, c20, c21, assign);
        Store(c + 3 * ldc, c30, c31, assign); Store(c + 4 * ldc, c40, c41, assign); Store(c + 5 * ldc, c50, c51, assign);
    }

    // c[rows × nr] (=|+=) A micro-panel [kc × h] (k-major, PackAPanel) · panel[kc × nr] (+ bias), h ∈ {4, 6}.
    // pf (AVX2 only; null: none): a byte stream the tile prefetches into L2 while its k loop runs, 8 bytes per two k steps
    // (one prefetcht1 per 24 FMAs), i.e. one W row segment of the panel packed next (kc floats) per tile.
    private static void MicroPacked(float* ap, int h, int rows, float* bp, int kc, float* c, int ldc, bool assign, float* bias, byte* pf = null)
    {
        if (Avx512F.IsSupported)
        {
            if (h == MR) MicroPacked6Avx512(ap, rows, bp, kc, c, ldc, assign, bias);
            else MicroPacked4Avx512(ap, rows, bp, kc, c, ldc, assign, bias);
        }
        else if (Fma.IsSupported && Avx.IsSupported)
        {
            // (no stream: prefetch the panel being read, already in L1)
            if (pf == null) pf = (byte*)bp;
            if (h == MR) MicroPacked6Avx2(ap, rows, bp, kc, c, ldc, assign, bias, pf);
            else MicroPacked4Avx2(ap, rows, bp, kc, c, ldc, assign, bias, pf);
        }
        else MicroPortable(ap, 1, h, rows, bp, kc, c, ldc, assign, bias);
    }

    // The 6×16 register tile over a packed A micro-panel: per k step two panel loads and six broadcasts from one
    // sequential 24-byte stream feed 12 FMAs (12 ymm accumulators); only the first `rows` rows are stored.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroPacked6Avx2(float* ap, int rows, float* bp, int kc, float* c, int ldc, bool assign, float* bias, byte* pf)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        float* end = bp + kc * 16;
        float* end2 = bp + (kc & ~1) * 16;
        while (bp < end2)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Avx.BroadcastScalarToVector256(ap); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(ap + 1); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(ap + 2); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(ap + 3); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Avx.BroadcastScalarToVector256(ap + 4); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Avx.BroadcastScalarToVector256(ap + 5); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
            b0 = Avx.LoadVector256(bp + 16);
            b1 = Avx.LoadVector256(bp + 24);
            av = Avx.BroadcastScalarToVector256(ap + 6); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(ap + 7); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(ap + 8); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(ap + 9); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Avx.BroadcastScalarToVector256(ap + 10); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Avx.BroadcastScalarToVector256(ap + 11); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
            Sse.Prefetch1(pf);
            bp += 32; ap += 12; pf += 8;
        }
        if (bp < end)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Avx.BroadcastScalarToVector256(ap); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(ap + 1); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(ap + 2); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(ap + 3); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Avx.BroadcastScalarToVector256(ap + 4); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Avx.BroadcastScalarToVector256(ap + 5); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
        }
        if (bias != null)
        {
            var v0 = Avx.LoadVector256(bias); var v1 = Avx.LoadVector256(bias + 8);
            c00 += v0; c01 += v1; c10 += v0; c11 += v1; c20 += v0; c21 += v1;
            c30 += v0; c31 += v1; c40 += v0; c41 += v1; c50 += v0; c51 += v1;
        }
        Store(c, c00, c01, assign);
        if (rows > 1) Store(c + ldc, c10, c11, assign);
        if (rows > 2) Store(c + 2 * ldc, c20, c21, assign);
        if (rows > 3) Store(c + 3 * ldc, c30, c31, assign);
        if (rows > 4) Store(c + 4 * ldc, c40, c41, assign);
        if (rows > 5) Store(c + 5 * ldc, c50, c51, assign);
    }

    // The 4×16 tile for the rows a 6-row tiling leaves over: 8 accumulators keep both FMA pipes busy (latency 4).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroPacked4Avx2(float* ap, int rows, float* bp, int kc, float* c, int ldc, bool assign, float* bias, byte* pf)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default;
        float* end = bp + kc * 16;
        float* end2 = bp + (kc & ~1) * 16;
        while (bp < end2)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Avx.BroadcastScalarToVector256(ap); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(ap + 1); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(ap + 2); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(ap + 3); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            b0 = Avx.LoadVector256(bp + 16);
            b1 = Avx.LoadVector256(bp + 24);
            av = Avx.BroadcastScalarToVector256(ap + 4); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(ap + 5); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(ap + 6); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(ap + 7); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            Sse.Prefetch1(pf);
            bp += 32; ap += 8; pf += 8;
        }
        if (bp < end)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Avx.BroadcastScalarToVector256(ap); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(ap + 1); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(ap + 2); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(ap + 3); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
        }
        if (bias != null)
        {
            var v0 = Avx.LoadVector256(bias); var v1 = Avx.LoadVector256(bias + 8);
            c00 += v0; c01 += v1; c10 += v0; c11 += v1; c20 += v0; c21 += v1; c30 += v0; c31 += v1;
        }
        Store(c, c00, c01, assign);
        if (rows > 1) Store(c + ldc, c10, c11, assign);
        if (rows > 2) Store(c + 2 * ldc, c20, c21, assign);
        if (rows > 3) Store(c + 3 * ldc, c30, c31, assign);
    }

    // AVX-512 twins of MicroPacked6Avx2 / MicroPacked4Avx2: the same tiles over 32-column panels (two zmm per row).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroPacked6Avx512(float* ap, int rows, float* bp, int kc, float* c, int ldc, bool assign, float* bias)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++, bp += 32, ap += 6)
        {
            var b0 = Avx512F.LoadVector512(bp);
            var b1 = Avx512F.LoadVector512(bp + 16);
            var av = Vector512.Create(ap[0]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(ap[1]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(ap[2]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(ap[3]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(ap[4]); c40 = Avx512F.FusedMultiplyAdd(av, b0, c40); c41 = Avx512F.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(ap[5]); c50 = Avx512F.FusedMultiplyAdd(av, b0, c50); c51 = Avx512F.FusedMultiplyAdd(av, b1, c51);
        }
        if (bias != null)
        {
            var v0 = Vector512.Load(bias); var v1 = Vector512.Load(bias + 16);
            c00 += v0; c01 += v1; c10 += v0; c11 += v1; c20 += v0; c21 += v1;
            c30 += v0; c31 += v1; c40 += v0; c41 += v1; c50 += v0; c51 += v1;
        }
        Store512(c, c00, c01, assign);
        if (rows > 1) Store512(c + ldc, c10, c11, assign);
        if (rows > 2) Store512(c + 2 * ldc, c20, c21, assign);
        if (rows > 3) Store512(c + 3 * ldc, c30, c31, assign);
        if (rows > 4) Store512(c + 4 * ldc, c40, c41, assign);
        if (rows > 5) Store512(c + 5 * ldc, c50, c51, assign);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroPacked4Avx512(float* ap, int rows, float* bp, int kc, float* c, int ldc, bool assign, float* bias)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default;
        for (int p = 0; p < kc; p++, bp += 32, ap += 4)
        {
            var b0 = Avx512F.LoadVector512(bp);
            var b1 = Avx512F.LoadVector512(bp + 16);
            var av = Vector512.Create(ap[0]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(ap[1]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(ap[2]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(ap[3]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
        }
        if (bias != null)
        {
            var v0 = Vector512.Load(bias); var v1 = Vector512.Load(bias + 16);
            c00 += v0; c01 += v1; c10 += v0; c11 += v1; c20 += v0; c21 += v1; c30 += v0; c31 += v1;
        }
        Store512(c, c00, c01, assign);
        if (rows > 1) Store512(c + ldc, c10, c11, assign);
        if (rows > 2) Store512(c + 2 * ldc, c20, c21, assign);
        if (rows > 3) Store512(c + 3 * ldc, c30, c31, assign);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector256<float> v0, Vector256<float> v1, bool assign)
    {
        if (assign) { v0.Store(c); v1.Store(c + 8); }
        else { (Vector256.Load(c) + v0).Store(c); (Vector256.Load(c + 8) + v1).Store(c + 8); }
    }

    // The AVX-512 twin of MicroAvx2: the same 6-row tile over a 32-column panel (two zmm per row, 12 accumulators).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroAvx512(float* a, int lda, int mr, float* bp, int kc, float* c, int ldc, bool assign, float* bias)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        float* a0 = a, a1 = mr > 1 ? a + lda : a, a2 = mr > 2 ? a + 2 * lda : a, a3 = mr > 3 ? a + 3 * lda : a,
            a4 = mr > 4 ? a + 4 * lda : a, a5 = mr > 5 ? a + 5 * lda : a;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Avx512F.LoadVector512(bp);
            var b1 = Avx512F.LoadVector512(bp + 16);
            bp += 32;
            var av = Vector512.Create(a0[p]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(a1[p]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(a2[p]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(a3[p]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(a4[p]); c40 = Avx512F.FusedMultiplyAdd(av, b0, c40); c41 = Avx512F.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(a5[p]); c50 = Avx512F.FusedMultiplyAdd(av, b0, c50); c51 = Avx512F.FusedMultiplyAdd(av, b1, c51);
        }
        if (bias != null)
        {
            var v0 = Vector512.Load(bias); var v1 = Vector512.Load(bias + 16);
            c00 += v0; c01 += v1; c10 += v0; c11 += v1; c20 += v0; c21 += v1;
            c30 += v0; c31 += v1; c40 += v0; c41 += v1; c50 += v0; c51 += v1;
        }
        Store512(c, c00, c01, assign); Store512(c + ldc, c10, c11, assign); Store512(c + 2 * ldc, c20, c21, assign);
        Store512(c + 3 * ldc, c30, c31, assign); Store512(c + 4 * ldc, c40, c41, assign); Store512(c + 5 * ldc, c50, c51, assign);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512(float* c, Vector512<float> v0, Vector512<float> v1, bool assign)
    {
        if (assign) { v0.Store(c); v1.Store(c + 16); }
        else { (Vector512.Load(c) + v0).Store(c); (Vector512.Load(c + 16) + v1).Store(c + 16); }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroPortable(float* a, int lda, int ks, int mr, float* bp, int kc, float* c, int ldc, bool assign, float* bias)
    {
        // One row of the tile at a time (row r at a + r·lda, k step ks floats): 16 columns as four Vector128
        // accumulators (or scalars without SIMD); only the first mr rows are computed and stored.
        int nr = PanelWidth;
        for (int r = 0; r < mr; r++)
        {
            float* ar = a + (long)r * lda;
            float* cr = c + (long)r * ldc;
            for (int q = 0; q < nr; q += 16)
            {
                if (Vector128.IsHardwareAccelerated)
                {
                    Vector128<float> s0 = default, s1 = default, s2 = default, s3 = default;
                    float* b = bp + q;
                    for (int p = 0; p < kc; p++, b += nr)
                    {
                        var av = Vector128.Create(ar[(long)p * ks]);
                        s0 += av * Vector128.Load(b); s1 += av * Vector128.Load(b + 4);
                        s2 += av * Vector128.Load(b + 8); s3 += av * Vector128.Load(b + 12);
                    }
                    if (bias != null)
                    {
                        s0 += Vector128.Load(bias + q); s1 += Vector128.Load(bias + q + 4);
                        s2 += Vector128.Load(bias + q + 8); s3 += Vector128.Load(bias + q + 12);
                    }
                    if (!assign)
                    {
                        s0 += Vector128.Load(cr + q); s1 += Vector128.Load(cr + q + 4);
                        s2 += Vector128.Load(cr + q + 8); s3 += Vector128.Load(cr + q + 12);
                    }
                    s0.Store(cr + q); s1.Store(cr + q + 4); s2.Store(cr + q + 8); s3.Store(cr + q + 12);
                }
                else
                {
                    for (int j = q; j < q + 16; j++)
                    {
                        float s = 0;
                        for (int p = 0; p < kc; p++) s += ar[(long)p * ks] * bp[p * nr + j];
                        if (bias != null) s += bias[j];
                        cr[j] = assign ? s : cr[j] + s;
                    }
                }
            }
        }
    }
}
