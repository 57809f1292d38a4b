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
    /// <summary>K block (packed B panel depth).</summary>
    public const int KC = 256;
    /// <summary>Columns per GEMM work unit (packed together).</summary>
    public const int NC = 64;
    /// <summary>Rows per GEMM work unit.</summary>
    public const int MC = 96;
    /// <summary>Input rows at or below which Linear uses the GEMV path.</summary>
    public const int GemvMaxRows = 4;

    /// <summary>Floats of per-worker scratch the kernels need for reduction depth <paramref name="k"/>.</summary>
    public static int ScratchFloats(int k) => Math.Max(4 * k, NC * KC + KC + MR * KC + MR * NR) + 64;

    /// <summary>Scalar twin: y[m,n] = Σ_k x[m,k]·w[n,k] + b[n], accumulated in float32 in k order.</summary>
    public static void LinearReference(float* x, int m, int k, byte* w, DType wt, int n, float* bias, float* y)
    {
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
                    if (i < count) TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>((Half*)s + i, count - i), new Span<float>(dst + i, count - i));
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
                for (int q = 0; q < nb; q++) ToFloat(w, wt, (long)(j + q) * k, scratch + (long)q * k, k);
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

    /// <summary>Four dot products of x with F16/BF16 rows w0..w3, widened in registers (AVX2+FMA only).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4Half(float* x, ushort* w0, ushort* w1, ushort* w2, ushort* w3, int k, bool bf16, Span<float> r)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        int p = 0;
        if (bf16)
        {
            for (; p <= k - 16; p += 16)
            {
                var x0 = Avx.LoadVector256(x + p); var x1 = Avx.LoadVector256(x + p + 8);
                var (l0, u0) = Vector256.Widen(Vector256.Load(w0 + p));
                a0 = Fma.MultiplyAdd(x0, (l0 << 16).AsSingle(), a0); b0 = Fma.MultiplyAdd(x1, (u0 << 16).AsSingle(), b0);
                var (l1, u1) = Vector256.Widen(Vector256.Load(w1 + p));
                a1 = Fma.MultiplyAdd(x0, (l1 << 16).AsSingle(), a1); b1 = Fma.MultiplyAdd(x1, (u1 << 16).AsSingle(), b1);
                var (l2, u2) = Vector256.Widen(Vector256.Load(w2 + p));
                a2 = Fma.MultiplyAdd(x0, (l2 << 16).AsSingle(), a2); b2 = Fma.MultiplyAdd(x1, (u2 << 16).AsSingle(), b2);
                var (l3, u3) = Vector256.Widen(Vector256.Load(w3 + p));
                a3 = Fma.MultiplyAdd(x0, (l3 << 16).AsSingle(), a3); b3 = Fma.MultiplyAdd(x1, (u3 << 16).AsSingle(), b3);
            }
        }
        else
        {
            for (; p <= k - 16; p += 16)
            {
                var x0 = Avx.LoadVector256(x + p); var x1 = Avx.LoadVector256(x + p + 8);
                // one accumulator per row: the conversion constants need the registers the second set would take
                var (l0, u0) = Vector256.Widen(Vector256.Load(w0 + p));
                a0 = Fma.MultiplyAdd(x1, HalfBitsToSingle(u0), Fma.MultiplyAdd(x0, HalfBitsToSingle(l0), a0));
                var (l1, u1) = Vector256.Widen(Vector256.Load(w1 + p));
                a1 = Fma.MultiplyAdd(x1, HalfBitsToSingle(u1), Fma.MultiplyAdd(x0, HalfBitsToSingle(l1), a1));
                var (l2, u2) = Vector256.Widen(Vector256.Load(w2 + p));
                a2 = Fma.MultiplyAdd(x1, HalfBitsToSingle(u2), Fma.MultiplyAdd(x0, HalfBitsToSingle(l2), a2));
                var (l3, u3) = Vector256.Widen(Vector256.Load(w3 + p));
                a3 = Fma.MultiplyAdd(x1, HalfBitsToSingle(u3), Fma.MultiplyAdd(x0, HalfBitsToSingle(l3), a3));
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

    /// <summary>GEMM over rows [m0, m1) and columns [n0, n1): packs W per block and runs the register tile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void GemmBlock(float* a, int m0, int m1, int k, byte* w, DType wt, int n, float* bias, float* c, int n0, int n1, float* scratch)
    {
        float* packB = scratch;                 // [NC/NR panels][KC][NR]
        float* rowTmp = packB + NC * KC;        // [KC]
        float* apad = rowTmp + KC;              // [MR][KC]
        float* tile = apad + MR * KC;           // [MR][NR]
        for (int nb = n0; nb < n1; nb += NC)
        {
            int ncols = Math.Min(NC, n1 - nb);
            int panels = (ncols + NR - 1) / NR;
            for (int pc = 0; pc < k; pc += KC)
            {
                int kc = Math.Min(KC, k - pc);
                PackB(w, wt, k, nb, ncols, pc, kc, packB, rowTmp);
                bool first = pc == 0;
                for (int ir = m0; ir < m1; ir += MR)
                {
                    int mr = Math.Min(MR, m1 - ir);
                    float* ap; int lda;
                    if (mr == MR) { ap = a + (long)ir * k + pc; lda = k; }
                    else
                    {
                        new Span<float>(apad, MR * kc).Clear();
                        for (int r = 0; r < mr; r++) Buffer.MemoryCopy(a + (long)(ir + r) * k + pc, apad + r * kc, kc * 4L, kc * 4L);
                        ap = apad; lda = kc;
                    }
                    for (int jp = 0; jp < panels; jp++)
                    {
                        int col = nb + jp * NR;
                        int nr = Math.Min(NR, n1 - col);
                        float* cp = c + (long)ir * n + col;
                        float* bp = packB + (long)jp * KC * NR;
                        if (mr == MR && nr == NR) Micro(ap, lda, bp, kc, cp, n, first);
                        else
                        {
                            Micro(ap, lda, bp, kc, tile, NR, true);
                            for (int r = 0; r < mr; r++)
                                for (int q = 0; q < nr; q++)
                                    cp[(long)r * n + q] = first ? tile[r * NR + q] : cp[(long)r * n + q] + tile[r * NR + q];
                        }
                    }
                }
            }
            if (k == 0)
                for (int i = m0; i < m1; i++) new Span<float>(c + (long)i * n + nb, ncols).Clear();
            if (bias != null)
                for (int i = m0; i < m1; i++)
                    VecMath.Add(c + (long)i * n + nb, bias + nb, c + (long)i * n + nb, ncols);
        }
    }

    // packB[panel][p][q] = W[nb + panel·NR + q, pc + p], zero for columns past ncols.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackB(byte* w, DType wt, int k, int nb, int ncols, int pc, int kc, float* packB, float* rowTmp)
    {
        int panels = (ncols + NR - 1) / NR;
        for (int jp = 0; jp < panels; jp++)
        {
            float* dst = packB + (long)jp * KC * NR;
            for (int q = 0; q < NR; q++)
            {
                int col = jp * NR + q;
                if (col >= ncols)
                {
                    for (int p = 0; p < kc; p++) dst[p * NR + q] = 0f;
                    continue;
                }
                float* src;
                if (wt == DType.F32) src = (float*)w + (long)(nb + col) * k + pc;
                else { ToFloat(w, wt, (long)(nb + col) * k + pc, rowTmp, kc); src = rowTmp; }
                for (int p = 0; p < kc; p++) dst[p * NR + q] = src[p];
            }
        }
    }

    // c[6×16] (=|+=) a[6×kc] · bp[kc×16]
    private static void Micro(float* a, int lda, float* bp, int kc, float* c, int ldc, bool assign)
    {
        if (Fma.IsSupported && Avx.IsSupported) MicroAvx2(a, lda, bp, kc, c, ldc, assign);
        else MicroPortable(a, lda, bp, kc, c, ldc, assign);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroAvx2(float* a, int lda, float* bp, int kc, float* c, int ldc, bool assign)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        float* a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            bp += NR;
            var av = Vector256.Create(a0[p]); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Vector256.Create(a1[p]); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Vector256.Create(a2[p]); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Vector256.Create(a3[p]); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Vector256.Create(a4[p]); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Vector256.Create(a5[p]); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
        }
        Store(c, c00, c01, assign); Store(c + ldc, c10, c11, assign); Store(c + 2 * ldc, c20, c21, assign);
        Store(c + 3 * ldc, c30, c31, assign); Store(c + 4 * ldc, c40, c41, assign); Store(c + 5 * ldc, c50, c51, assign);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector256<float> v0, Vector256<float> v1, bool assign)
    {
        if (assign) { v0.Store(c); v1.Store(c + 8); }
        else { (Vector256.Load(c) + v0).Store(c); (Vector256.Load(c + 8) + v1).Store(c + 8); }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroPortable(float* a, int lda, float* bp, int kc, float* c, int ldc, bool assign)
    {
        // 6×16 tile as 6 rows × 4 Vector128 (or scalars where Vector128 is not accelerated).
        Span<float> acc = stackalloc float[MR * NR];
        acc.Clear();
        fixed (float* accp = acc)
        {
            for (int p = 0; p < kc; p++, bp += NR)
                for (int r = 0; r < MR; r++)
                {
                    float av = a[r * lda + p];
                    float* ar = accp + r * NR;
                    if (Vector128.IsHardwareAccelerated)
                    {
                        var s = Vector128.Create(av);
                        (Vector128.Load(ar) + s * Vector128.Load(bp)).Store(ar);
                        (Vector128.Load(ar + 4) + s * Vector128.Load(bp + 4)).Store(ar + 4);
                        (Vector128.Load(ar + 8) + s * Vector128.Load(bp + 8)).Store(ar + 8);
                        (Vector128.Load(ar + 12) + s * Vector128.Load(bp + 12)).Store(ar + 12);
                    }
                    else for (int q = 0; q < NR; q++) ar[q] += av * bp[q];
                }
            for (int r = 0; r < MR; r++)
                for (int q = 0; q < NR; q++)
                    c[r * ldc + q] = assign ? accp[r * NR + q] : c[r * ldc + q] + accp[r * NR + q];
        }
    }
}
