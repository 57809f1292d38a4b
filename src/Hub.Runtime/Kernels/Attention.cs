// Scaled dot-product attention, flash-style (Dao et al. 2022): keys are visited in blocks of 64 with a running max
// and sum per query (online softmax, Milakov & Gimelshein 2018), so the T×S score matrix is never materialized.
// The G query heads of one GQA group are processed together over each key block, so a block of K/V is read from
// memory once per group and reused from L1 by the other heads.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>Attention kernels over one query row and one GQA group of heads.</summary>
public static unsafe class AttentionKernels
{
    /// <summary>Keys per online-softmax block.</summary>
    public const int BlockKeys = 64;

    /// <summary>Floats of per-worker scratch for a group of <paramref name="groupHeads"/> heads of <paramref name="headDim"/>.</summary>
    public static int ScratchFloats(int groupHeads, int headDim) => groupHeads * (headDim + 2) + BlockKeys + 16;

    /// <summary>
    /// Attends the <paramref name="groupHeads"/> consecutive query heads at <paramref name="q"/> (each head
    /// <paramref name="headDim"/> floats) over keys [0, <paramref name="end"/>) at <paramref name="k"/>/<paramref name="v"/>
    /// (position j at offset j·<paramref name="stride"/>); keys with <paramref name="mask"/>[j] == 0 are dropped.
    /// Writes the heads' outputs to <paramref name="o"/>; a head that sees no key gets zeros.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AttendRow(float* q, int groupHeads, int headDim, float* k, float* v, long stride, int end,
        float* mask, float scale, float* o, float* scratch)
    {
        int hd = headDim, G = groupHeads;
        float* acc = scratch;
        float* mx = acc + G * hd;
        float* l = mx + G;
        float* s = l + G;
        new Span<float>(acc, G * hd).Clear();
        for (int g = 0; g < G; g++) { mx[g] = float.NegativeInfinity; l[g] = 0; }
        for (int j0 = 0; j0 < end; j0 += BlockKeys)
        {
            int jn = Math.Min(BlockKeys, end - j0);
            for (int g = 0; g < G; g++)
            {
                float* qg = q + g * hd;
                float bmax = float.NegativeInfinity;
                for (int jj = 0; jj < jn; jj++)
                {
                    int j = j0 + jj;
                    if (mask != null && mask[j] == 0f) { s[jj] = float.NegativeInfinity; continue; }
                    float sc = Dot(qg, k + j * stride, hd) * scale;
                    s[jj] = sc;
                    if (sc > bmax) bmax = sc;
                }
                if (bmax == float.NegativeInfinity) continue;
                float mnew = Math.Max(mx[g], bmax);
                float* ag = acc + g * hd;
                if (mx[g] != float.NegativeInfinity && mx[g] != mnew)
                {
                    float corr = MathF.Exp(mx[g] - mnew);
                    Scale(ag, corr, hd);
                    l[g] *= corr;
                }
                ExpShifted(s, jn, mnew);
                float sum = l[g];
                for (int jj = 0; jj < jn; jj++)
                {
                    float p = s[jj];
                    if (p == 0f) continue;
                    sum += p;
                    Axpy(p, v + (j0 + jj) * stride, ag, hd);
                }
                l[g] = sum;
                mx[g] = mnew;
            }
        }
        for (int g = 0; g < G; g++)
        {
            float* og = o + g * hd;
            float* ag = acc + g * hd;
            if (l[g] > 0) { float inv = 1f / l[g]; for (int i = 0; i < hd; i++) og[i] = ag[i] * inv; }
            else new Span<float>(og, hd).Clear();
        }
    }

    /// <summary>Scalar twin of <see cref="AttendRow"/>: materialized scores, two-pass softmax in double.</summary>
    public static void AttendRowReference(float* q, int groupHeads, int headDim, float* k, float* v, long stride, int end,
        float* mask, float scale, float* o)
    {
        var sc = new double[Math.Max(end, 0)];
        for (int g = 0; g < groupHeads; g++)
        {
            float* qg = q + g * headDim;
            double mx = double.NegativeInfinity;
            for (int j = 0; j < end; j++)
            {
                if (mask != null && mask[j] == 0f) { sc[j] = double.NegativeInfinity; continue; }
                double d = 0;
                for (int i = 0; i < headDim; i++) d += (double)qg[i] * k[j * stride + i];
                sc[j] = d * scale;
                mx = Math.Max(mx, sc[j]);
            }
            for (int i = 0; i < headDim; i++) o[g * headDim + i] = 0;
            if (double.IsNegativeInfinity(mx)) continue;
            double sum = 0;
            for (int j = 0; j < end; j++) { sc[j] = double.IsNegativeInfinity(sc[j]) ? 0 : Math.Exp(sc[j] - mx); sum += sc[j]; }
            for (int i = 0; i < headDim; i++)
            {
                double a = 0;
                for (int j = 0; j < end; j++) a += sc[j] * v[j * stride + i];
                o[g * headDim + i] = (float)(a / sum);
            }
        }
    }

    // s[j] = exp(s[j] − shift), exactly 0 for masked (−∞) scores.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ExpShifted(float* s, int n, float shift)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var sh = Vector256.Create(shift);
            var ninf = Vector256.Create(float.NegativeInfinity);
            for (; j <= n - 8; j += 8)
            {
                var x = Vector256.Load(s + j);
                var e = VecMath.Exp(x - sh);
                Vector256.ConditionalSelect(Vector256.Equals(x, ninf), Vector256<float>.Zero, e).Store(s + j);
            }
        }
        for (; j < n; j++) s[j] = s[j] == float.NegativeInfinity ? 0f : MathF.Exp(s[j] - shift);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        float s = 0;
        if (Fma.IsSupported && Avx.IsSupported && n >= 8)
        {
            Vector256<float> acc0 = default, acc1 = default;
            for (; i <= n - 16; i += 16)
            {
                acc0 = Fma.MultiplyAdd(Avx.LoadVector256(a + i), Avx.LoadVector256(b + i), acc0);
                acc1 = Fma.MultiplyAdd(Avx.LoadVector256(a + i + 8), Avx.LoadVector256(b + i + 8), acc1);
            }
            for (; i <= n - 8; i += 8) acc0 = Fma.MultiplyAdd(Avx.LoadVector256(a + i), Avx.LoadVector256(b + i), acc0);
            s = Vector256.Sum(acc0 + acc1);
        }
        else if (Vector128.IsHardwareAccelerated && n >= 4)
        {
            Vector128<float> acc = default;
            for (; i <= n - 4; i += 4) acc += Vector128.Load(a + i) * Vector128.Load(b + i);
            s = Vector128.Sum(acc);
        }
        for (; i < n; i++) s += a[i] * b[i];
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy(float alpha, float* x, float* y, int n)
    {
        int i = 0;
        if (Fma.IsSupported && Avx.IsSupported)
        {
            var av = Vector256.Create(alpha);
            for (; i <= n - 8; i += 8) Fma.MultiplyAdd(av, Avx.LoadVector256(x + i), Avx.LoadVector256(y + i)).Store(y + i);
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var av = Vector128.Create(alpha);
            for (; i <= n - 4; i += 4) (Vector128.Load(y + i) + av * Vector128.Load(x + i)).Store(y + i);
        }
        for (; i < n; i++) y[i] += alpha * x[i];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scale(float* y, float alpha, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var av = Vector256.Create(alpha);
            for (; i <= n - 8; i += 8) (Vector256.Load(y + i) * av).Store(y + i);
        }
        for (; i < n; i++) y[i] *= alpha;
    }
}
