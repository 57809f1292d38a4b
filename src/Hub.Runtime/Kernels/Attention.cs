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
    public static int ScratchFloats(int groupHeads, int headDim)
    {
        CheckHeads(groupHeads, headDim);
        // the row kernels' accumulators, running max and sum, and one block's scores; AttendRowHalf's heads-in-lanes
        // kernel's 64-byte aligned key tile, transposed queries, scores of 8 heads, and accumulators
        int gp = (groupHeads + 7) & ~7;
        return Math.Max(groupHeads * (headDim + 2) + BlockKeys + 16, gp * (2 * headDim + 2) + BlockKeys * (headDim + 8) + 16);
    }

    // Heads of a group and their width must be positive (every entry point and scratch size).
    private static void CheckHeads(int groupHeads, int headDim)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(groupHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
    }

    /// <summary>
    /// Attends the <paramref name="groupHeads"/> consecutive query heads at <paramref name="q"/> (each head
    /// <paramref name="headDim"/> floats) over keys [0, <paramref name="end"/>) at <paramref name="k"/>/<paramref name="v"/>
    /// (position j at offset j·<paramref name="stride"/>); keys with <paramref name="mask"/>[j] == 0 are dropped.
    /// Writes the heads' outputs to <paramref name="o"/>; a head that sees no key gets zeros.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AttendRow(float* q, int groupHeads, int headDim, float* k, float* v, long stride, int end,
        float* mask, float scale, float* o, float* scratch) =>
        AttendRowWith(q, groupHeads, headDim, k, v, stride, end, mask, scale, o, scratch, RowKernel.Default);

    /// <summary>
    /// Decode attention kernel variants (in-process A/B of the decode profile): the last three are bit-identical;
    /// <see cref="RowKernel.Default"/>'s 16-key kernel is within the reference tolerance of them.
    /// </summary>
    internal enum RowKernel
    {
        /// <summary>
        /// The 16-key kernel where AVX-512F is present and head_dim is a multiple of 16 (and <see cref="UseRowKeys16"/>),
        /// else <see cref="RowKernel.InterleavedPrefetch"/> where it applies (AVX2+FMA, head_dim a multiple of 8), else
        /// <see cref="RowKernel.PerKey"/>.
        /// </summary>
        Default,
        /// <summary>The session-7 loop: one dot product at a time, the output accumulated in memory key by key.</summary>
        PerKey,
        /// <summary>Four keys' dot products interleaved, the output accumulated in registers over a key block.</summary>
        Interleaved,
        /// <summary><see cref="RowKernel.Interleaved"/> with software prefetch of the K and V rows a few keys ahead.</summary>
        InterleavedPrefetch,
    }

    /// <summary><see cref="AttendRow"/> with an explicit kernel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void AttendRowWith(float* q, int groupHeads, int headDim, float* k, float* v, long stride, int end,
        float* mask, float scale, float* o, float* scratch, RowKernel kernel)
    {
        CheckRow(q, groupHeads, headDim, k, v, stride, end, o);
        KernelArgs.NotNull(scratch, true);
        if (kernel == RowKernel.Default && UseRowKeys16 && Avx512F.IsSupported && headDim % 16 == 0)
            AttendRow16(q, groupHeads, headDim, k, v, stride, end, mask, scale, o, scratch, 16);   // one 16-key group ahead
        else if (kernel != RowKernel.PerKey && Fma.IsSupported && Avx.IsSupported && headDim % 8 == 0)
            AttendRowInterleaved(q, groupHeads, headDim, k, v, stride, end, mask, scale, o, scratch, kernel == RowKernel.Interleaved ? 0 : PrefetchKeys);
        else AttendRowPerKey(q, groupHeads, headDim, k, v, stride, end, mask, scale, o, scratch);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendRowPerKey(float* q, int groupHeads, int headDim, float* k, float* v, long stride, int end,
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
        Normalize(o, acc, l, G, hd);
    }

    // AttendRowPerKey with the same arithmetic per key and per output element, so the result is bit-identical: a key's
    // dot product still runs two accumulators (16-float steps, an 8-float step when head_dim is an odd multiple of 8)
    // summed by Vector256.Sum, but four keys run at once, which hides the FMA latency chain that bound the per-key loop
    // (the dot product was ~30 cycles a key for 64 floats); P·V keeps 64 output floats in registers over a key block
    // instead of loading and storing them for every key. Needs AVX2+FMA and head_dim a multiple of 8.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendRowInterleaved(float* q, int groupHeads, int headDim, float* k, float* v, long stride, int end,
        float* mask, float scale, float* o, float* scratch, int prefetch)
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
            float* kb = k + j0 * stride, vb = v + j0 * stride;
            for (int g = 0; g < G; g++)
            {
                float* qg = q + g * hd;
                int jj = 0;
                for (; jj <= jn - 4; jj += 4)
                {
                    if (prefetch > 0 && g == 0)
                    {
                        PrefetchRows(kb + (jj + prefetch) * stride, stride, 4, hd, k + end * stride);
                        if (PrefetchVWithK) PrefetchRows(vb + jj * stride, stride, 4, hd, v + end * stride);
                    }
                    Dot4(qg, kb + jj * stride, stride, hd, scale, s + jj);
                }
                for (; jj < jn; jj++) s[jj] = Dot(qg, kb + jj * stride, hd) * scale;
                float* ag = acc + g * hd;
                if (!SoftmaxBlock(s, jn, mask == null ? null : mask + j0, mx + g, l + g, ag, hd)) continue;
                int c = 0;
                for (; c <= hd - 64; c += 64) AccumulatePV64(s, jn, vb + c, stride, ag + c, g == 0 && !PrefetchVWithK ? prefetch : 0, v + end * stride);
                for (; c < hd; c += 8)
                {
                    var a = Avx.LoadVector256(ag + c);
                    for (jj = 0; jj < jn; jj++)
                    {
                        float p = s[jj];
                        if (p == 0f) continue;
                        a = Fma.MultiplyAdd(Vector256.Create(p), Avx.LoadVector256(vb + jj * stride + c), a);
                    }
                    a.Store(ag + c);
                }
            }
        }
        Normalize(o, acc, l, G, hd);
    }

    // One key block's online-softmax step for one head, shared by the decode kernels that compute the block's scores
    // first: masked keys get -inf, the head's accumulator and running sum are rescaled to the new running max, and s
    // becomes the block's weights (0 for masked keys). False when every key of the block is masked (nothing to add).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool SoftmaxBlock(float* s, int jn, float* mask, float* mx, float* l, float* ag, int hd)
    {
        float bmax = float.NegativeInfinity;
        for (int jj = 0; jj < jn; jj++)
        {
            if (mask != null && mask[jj] == 0f) { s[jj] = float.NegativeInfinity; continue; }
            if (s[jj] > bmax) bmax = s[jj];
        }
        if (bmax == float.NegativeInfinity) return false;
        float mnew = Math.Max(*mx, bmax);
        if (*mx != float.NegativeInfinity && *mx != mnew)
        {
            float corr = MathF.Exp(*mx - mnew);
            Scale(ag, corr, hd);
            *l *= corr;
        }
        ExpShifted(s, jn, mnew);
        float sum = *l;
        for (int jj = 0; jj < jn; jj++) if (s[jj] != 0f) sum += s[jj];
        *l = sum;
        *mx = mnew;
        return true;
    }

    // o = acc / l per head (zeros for a head whose keys were all masked).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Normalize(float* o, float* acc, float* l, int G, int hd)
    {
        for (int g = 0; g < G; g++)
        {
            float* og = o + g * hd;
            float* ag = acc + g * hd;
            if (l[g] > 0)
            {
                float inv = 1f / l[g];
                int i = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    var iv = Vector256.Create(inv);
                    for (; i <= hd - 8; i += 8) (Vector256.Load(ag + i) * iv).Store(og + i);
                }
                for (; i < hd; i++) og[i] = ag[i] * inv;
            }
            else new Span<float>(og, hd).Clear();
        }
    }

    // s[0..4) = scale · (q · k_j) for the four keys at k, k + stride, ...: Dot's operation order for each key.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4(float* q, float* k, long stride, int n, float scale, float* s)
    {
        float* k0 = k, k1 = k + stride, k2 = k1 + stride, k3 = k2 + stride;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        int i = 0;
        for (; i <= n - 16; i += 16)
        {
            var qa = Avx.LoadVector256(q + i);
            var qb = Avx.LoadVector256(q + i + 8);
            a0 = Fma.MultiplyAdd(qa, Avx.LoadVector256(k0 + i), a0);
            b0 = Fma.MultiplyAdd(qb, Avx.LoadVector256(k0 + i + 8), b0);
            a1 = Fma.MultiplyAdd(qa, Avx.LoadVector256(k1 + i), a1);
            b1 = Fma.MultiplyAdd(qb, Avx.LoadVector256(k1 + i + 8), b1);
            a2 = Fma.MultiplyAdd(qa, Avx.LoadVector256(k2 + i), a2);
            b2 = Fma.MultiplyAdd(qb, Avx.LoadVector256(k2 + i + 8), b2);
            a3 = Fma.MultiplyAdd(qa, Avx.LoadVector256(k3 + i), a3);
            b3 = Fma.MultiplyAdd(qb, Avx.LoadVector256(k3 + i + 8), b3);
        }
        if (i <= n - 8)
        {
            var qa = Avx.LoadVector256(q + i);
            a0 = Fma.MultiplyAdd(qa, Avx.LoadVector256(k0 + i), a0);
            a1 = Fma.MultiplyAdd(qa, Avx.LoadVector256(k1 + i), a1);
            a2 = Fma.MultiplyAdd(qa, Avx.LoadVector256(k2 + i), a2);
            a3 = Fma.MultiplyAdd(qa, Avx.LoadVector256(k3 + i), a3);
        }
        s[0] = Vector256.Sum(a0 + b0) * scale;
        s[1] = Vector256.Sum(a1 + b1) * scale;
        s[2] = Vector256.Sum(a2 + b2) * scale;
        s[3] = Vector256.Sum(a3 + b3) * scale;
    }

    /// <summary>
    /// Rounds <paramref name="n"/> floats to IEEE half bits, to nearest even (as the <see cref="Half"/> cast: overflow
    /// to ±infinity, subnormals kept, NaN stays NaN): the f16 KV cache's append. 32 values a step on 512-bit vectors
    /// where available, then 16 on 256-bit ones, then a scalar tail; TensorPrimitives.ConvertToHalf runs about 3 ns a
    /// value here, too slow for a prefill's keys.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void NarrowToHalf(float* src, ushort* dst, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        KernelArgs.NotNull(src, n > 0);
        KernelArgs.NotNull(dst, n > 0);
        long i = 0;
        if (Avx512F.IsSupported && Conversions512)
            for (; i + 32 <= n; i += 32)
                Vector512.Narrow(NarrowStep(Vector512.Load((uint*)src + i)), NarrowStep(Vector512.Load((uint*)src + i + 16))).Store(dst + i);
        if (Vector256.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16)
                Vector256.Narrow(NarrowStep(Vector256.Load((uint*)src + i)), NarrowStep(Vector256.Load((uint*)src + i + 8))).Store(dst + i);
        for (; i < n; i++) dst[i] = BitConverter.HalfToUInt16Bits((Half)src[i]);
    }

    /// <summary>Whether <see cref="NarrowToHalf"/> and <see cref="WidenHalf"/> take 32 values a step where Vector512 is accelerated (A/B switch of the conversion bench).</summary>
    internal static bool Conversions512 = true;

    // NarrowStep on 16 lanes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> NarrowStep(Vector512<uint> f)
    {
        var sign = f & Vector512.Create(0x80000000u);
        f ^= sign;
        var big = Vector512.ConditionalSelect(Vector512.GreaterThan(f, Vector512.Create(255u << 23)), Vector512.Create(0x7e00u), Vector512.Create(0x7c00u));
        var magic = Vector512.Create(((127u - 15) + (23 - 10) + 1) << 23);
        var sub = (f.AsSingle() + magic.AsSingle()).AsUInt32() - magic;
        var odd = (f >> 13) & Vector512.Create(1u);
        var norm = (f + Vector512.Create(unchecked((uint)((15 - 127) << 23) + 0xfffu)) + odd) >> 13;
        var o = Vector512.ConditionalSelect(Vector512.LessThan(f, Vector512.Create(113u << 23)), sub, norm);
        o = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(f, Vector512.Create((127u + 16) << 23)), big, o);
        return o | (sign >> 16);
    }

    // F. Giesen's branch-free float → half with round to nearest even, on 8 lanes; the half in the low 16 bits.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> NarrowStep(Vector256<uint> f)
    {
        var sign = f & Vector256.Create(0x80000000u);
        f ^= sign;
        // |x| ≥ 65520 (after rounding, beyond the largest half): infinity, or a quiet NaN for NaN inputs
        var big = Vector256.ConditionalSelect(Vector256.GreaterThan(f, Vector256.Create(255u << 23)), Vector256.Create(0x7e00u), Vector256.Create(0x7c00u));
        // below 2^-14: subnormal halves, rounded by the FPU adding 0.5 (the magic float's unit is the half's last bit)
        var magic = Vector256.Create(((127u - 15) + (23 - 10) + 1) << 23);
        var sub = (f.AsSingle() + magic.AsSingle()).AsUInt32() - magic;
        // normal halves: rebias the exponent, add 0xfff plus the mantissa's odd bit (ties to even), drop 13 bits
        var odd = (f >> 13) & Vector256.Create(1u);
        var norm = (f + Vector256.Create(unchecked((uint)((15 - 127) << 23) + 0xfffu)) + odd) >> 13;
        var o = Vector256.ConditionalSelect(Vector256.LessThan(f, Vector256.Create(113u << 23)), sub, norm);
        o = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(f, Vector256.Create((127u + 16) << 23)), big, o);
        return o | (sign >> 16);
    }

    /// <summary>
    /// Widens <paramref name="n"/> IEEE half bits to floats, exactly for finite halves (infinities and NaNs, which an
    /// f16 cache holds only for keys/values beyond ±65504, come out as large finite values, as in
    /// <see cref="AttendRowHalf"/>): the f16 KV cache's keys/values for the f32 prefill kernel. Vector512 (32 values a
    /// step) where accelerated, then Vector256 (16: the magnitude bits shifted into a float's and scaled by 2^112, the
    /// sign or-ed back), with a scalar tail.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void WidenHalf(ushort* src, float* dst, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        KernelArgs.NotNull(src, n > 0);
        KernelArgs.NotNull(dst, n > 0);
        WidenCore(src, dst, n);
    }

    // WidenHalf without the argument checks (the group decode kernel widens each key block with it).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WidenCore(ushort* src, float* dst, long n)
    {
        long i = 0;
        if (Avx512F.IsSupported && Conversions512)
        {
            var scale = Vector512.Create(0x77800000u).AsSingle();   // 2^112
            for (; i + 32 <= n; i += 32)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(src + i));
                WidenStep(lo, scale).Store(dst + i);
                WidenStep(hi, scale).Store(dst + i + 16);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var scale = Vector256.Create(0x77800000u).AsSingle();
            for (; i + 16 <= n; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(src + i));
                WidenStep(lo, scale).Store(dst + i);
                WidenStep(hi, scale).Store(dst + i + 8);
            }
        }
        for (; i < n; i++) dst[i] = WidenScalar(src[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> WidenStep(Vector512<uint> h, Vector512<float> scale) =>
        ((((h & Vector512.Create(0x7fffu)) << 13).AsSingle() * scale).AsUInt32() | ((h & Vector512.Create(0x8000u)) << 16)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> WidenStep(Vector256<uint> h, Vector256<float> scale) =>
        ((((h & Vector256.Create(0x7fffu)) << 13).AsSingle() * scale).AsUInt32() | ((h & Vector256.Create(0x8000u)) << 16)).AsSingle();

    private static readonly float Pow112 = MathF.ScaleB(1f, 112);

    // The scalar twin of WidenStep (the same values for every half, infinities and NaNs included).
    private static float WidenScalar(ushort h) =>
        BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(BitConverter.UInt32BitsToSingle((uint)(h & 0x7fff) << 13) * Pow112) | (uint)(h & 0x8000) << 16);

    /// <summary>
    /// <see cref="AttendRow"/> over keys and values stored as IEEE half bits (the f16 KV cache, half the bytes a
    /// memory-bound decode step streams), the softmax and sums in f32 as in AttendRow. Each half is read from memory
    /// once per call whatever the group size: one or two heads widen the rows in registers (a second head rereads the
    /// block from L1); a larger group widens each block of 64 keys once into an f32 tile in <paramref name="scratch"/>
    /// scored for 8 heads at a time in vector lanes, and each value row once per 4 or 8 heads in registers. Infinite
    /// halves (values beyond ±65504 at the append) are read as ±65536, as <see cref="WidenHalf"/> reads them.
    /// <paramref name="scratch"/> holds
    /// <see cref="ScratchFloats"/>(groupHeads, headDim) floats.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AttendRowHalf(float* q, int groupHeads, int headDim, ushort* k, ushort* v, long stride, int end,
        float* mask, float scale, float* o, float* scratch)
    {
        CheckHeads(groupHeads, headDim);
        ArgumentOutOfRangeException.ThrowIfNegative(end);
        KernelArgs.Stride(stride, headDim, "one key row holds headDim halves");
        KernelArgs.NotNull(q, true);
        KernelArgs.NotNull(o, true);
        KernelArgs.NotNull(k, end > 0);
        KernelArgs.NotNull(v, end > 0);
        KernelArgs.NotNull(scratch, true);
        bool simd = Avx2.IsSupported && Fma.IsSupported && headDim % 8 == 0;
        if (simd && groupHeads >= HalfGroupMinGroup) AttendRowHalfGroup(q, groupHeads, headDim, k, v, stride, end, mask, scale, o, scratch);
        else if (simd && Avx512F.IsSupported && UseHalfRow512 && UseHalfRowKeys16 && headDim % 16 == 0 && groupHeads * headDim <= 4096)
            AttendRowHalf16(q, groupHeads, headDim, k, v, stride, end, mask, scale, o, scratch);
        else AttendRowHalfInRegisters(q, groupHeads, headDim, k, v, stride, end, mask, scale, o, scratch, simd && groupHeads * headDim <= 4096);
    }

    /// <summary>
    /// Group size from which <see cref="AttendRowHalf"/> puts heads in vector lanes (A/B switch of the kernel bench):
    /// at 2 heads, 6 of 8 lanes would idle and the per-head kernel is faster (DecodeAttentionBench, 1024 positions:
    /// 7.0 against 8.6 ms); at 3 the lanes win (5.8 against 6.1), at 4 and more by 1.4–2.7×.
    /// </summary>
    internal static int HalfGroupMinGroup = 3;

    /// <summary>Whether the heads-in-lanes kernel uses its 512-bit micro-kernels where AVX-512F is present (A/B switch).</summary>
    internal static bool UseHalfGroup512 = true;

    // A group over the f16 cache, heads in vector lanes (8 a chunk): per block of 64 keys, the keys are widened once
    // into an f32 tile (16 KiB at head_dim 64) and scored for the chunk's heads at once, s[key][head] = Σᵢ k[key][i] ·
    // qᵀ[i][head] with k[key][i] broadcast, so there is no horizontal sum and the online softmax (max, exp, sum) runs
    // on the 8 heads' lanes; then P·V widens each value row in registers once per 4 heads and accumulates them with
    // broadcast weights. Every half is read from memory once per call, and nothing proportional to the context is
    // written. q is pre-scaled and transposed once per call.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendRowHalfGroup(float* q, int groupHeads, int headDim, ushort* k, ushort* v, long stride, int end,
        float* mask, float scale, float* o, float* scratch)
    {
        int hd = headDim, G = groupHeads, chunks = (G + 7) >> 3, gp = chunks * 8;
        float* tile = (float*)(((nint)scratch + 63) & ~(nint)63);   // [BlockKeys][hd] widened keys
        float* qT = tile + BlockKeys * hd;   // [chunk][hd][8]: q·scale transposed, zeros past the group
        float* sT = qT + gp * hd;            // [BlockKeys][8]: the chunk's scores, then its weights × 2¹¹²
        float* mx = sT + BlockKeys * 8;      // [gp] running max
        float* l = mx + gp;                  // [gp] running sum
        float* acc = l + gp;                 // [G][hd]
        bool wide = Avx512F.IsSupported && hd % 16 == 0 && UseHalfGroup512;
        for (int c = 0; c < chunks; c++)
            for (int i = 0; i < hd; i++)
                for (int lane = 0; lane < 8; lane++)
                {
                    int g = c * 8 + lane;
                    // ScoresT8's [i][head], or ScoresT8x2's [i / 2][head][i % 2]
                    long at = (long)c * hd * 8 + (wide ? (i >> 1) * 16 + 2 * lane + (i & 1) : i * 8 + lane);
                    qT[at] = g < G ? q[g * hd + i] * scale : 0f;
                }
        for (int g = 0; g < gp; g++) { mx[g] = float.NegativeInfinity; l[g] = 0; }
        new Span<float>(acc, G * hd).Clear();
        var ninf = Vector256.Create(float.NegativeInfinity);
        var two112 = Vector256.Create(Two112);
        for (int j0 = 0; j0 < end; j0 += BlockKeys)
        {
            int jn = Math.Min(BlockKeys, end - j0);
            float* mb = mask == null ? null : mask + j0;
            if (mb != null)
            {
                int jj = 0;
                while (jj < jn && mb[jj] == 0f) jj++;
                if (jj == jn) continue;   // the whole block masked: nothing to read
            }
            ushort* vb = v + j0 * stride;
            WidenRows(k + j0 * stride, stride, jn, hd, tile);
            PrefetchHalfRows(vb, stride, jn, hd, v + end * stride);
            for (int c = 0; c < chunks; c++)
            {
                if (wide) ScoresT8x2(qT + (long)c * hd * 8, tile, hd, jn, sT);
                else ScoresT8(qT + (long)c * hd * 8, tile, hd, jn, sT);
                var bmax = ninf;
                for (int jj = 0; jj < jn; jj++)
                    if (mb == null || mb[jj] != 0f) bmax = Vector256.Max(bmax, Vector256.Load(sT + jj * 8));
                var m = Vector256.Load(mx + c * 8);
                var mnew = Vector256.Max(m, bmax);
                var corr = VecMath.Exp(m - mnew);   // a head's first block: its accumulator and sum are still 0
                var sum = Vector256<float>.Zero;
                for (int jj = 0; jj < jn; jj++)
                {
                    var p = mb == null || mb[jj] != 0f ? VecMath.Exp(Vector256.Load(sT + jj * 8) - mnew) : Vector256<float>.Zero;
                    sum += p;
                    (p * two112).Store(sT + jj * 8);
                }
                Fma.MultiplyAdd(Vector256.Load(l + c * 8), corr, sum).Store(l + c * 8);
                mnew.Store(mx + c * 8);
                int g0 = c * 8, gn = Math.Min(8, G - g0);
                if (!Vector256.EqualsAll(corr, Vector256<float>.One))
                    for (int lane = 0; lane < gn; lane++) Scale(acc + (g0 + lane) * hd, corr.GetElement(lane), hd);
                int gg = 0;
                if (wide && gn == 8) { PVHalf8x512(sT, jn, vb, stride, hd, acc + g0 * hd); gg = 8; }
                for (; gg + 4 <= gn; gg += 4) PVHalf4(sT + gg, jn, vb, stride, hd, acc + (g0 + gg) * hd);
                for (; gg < gn; gg++) PVHalf1(sT + gg, jn, vb, stride, hd, acc + (g0 + gg) * hd);
            }
        }
        Normalize(o, acc, l, G, hd);
    }

    // sT[key][0..8) = Σᵢ tile[key][i] · qT[i][0..8) for the block's keys: eight keys at a time (eight FMA chains).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScoresT8(float* qT, float* tile, int hd, int jn, float* sT)
    {
        int jj = 0;
        for (; jj + 8 <= jn; jj += 8)
        {
            float* t = tile + jj * hd;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            for (int i = 0; i < hd; i++)
            {
                var qi = Avx.LoadVector256(qT + i * 8);
                a0 = Fma.MultiplyAdd(Vector256.Create(t[i]), qi, a0);
                a1 = Fma.MultiplyAdd(Vector256.Create(t[hd + i]), qi, a1);
                a2 = Fma.MultiplyAdd(Vector256.Create(t[2 * hd + i]), qi, a2);
                a3 = Fma.MultiplyAdd(Vector256.Create(t[3 * hd + i]), qi, a3);
                a4 = Fma.MultiplyAdd(Vector256.Create(t[4 * hd + i]), qi, a4);
                a5 = Fma.MultiplyAdd(Vector256.Create(t[5 * hd + i]), qi, a5);
                a6 = Fma.MultiplyAdd(Vector256.Create(t[6 * hd + i]), qi, a6);
                a7 = Fma.MultiplyAdd(Vector256.Create(t[7 * hd + i]), qi, a7);
            }
            float* s = sT + jj * 8;
            a0.Store(s); a1.Store(s + 8); a2.Store(s + 16); a3.Store(s + 24);
            a4.Store(s + 32); a5.Store(s + 40); a6.Store(s + 48); a7.Store(s + 56);
        }
        for (; jj < jn; jj++)
        {
            float* t = tile + jj * hd;
            Vector256<float> a = default, b = default;
            int i = 0;
            for (; i + 2 <= hd; i += 2)
            {
                a = Fma.MultiplyAdd(Vector256.Create(t[i]), Avx.LoadVector256(qT + i * 8), a);
                b = Fma.MultiplyAdd(Vector256.Create(t[i + 1]), Avx.LoadVector256(qT + i * 8 + 8), b);
            }
            for (; i < hd; i++) a = Fma.MultiplyAdd(Vector256.Create(t[i]), Avx.LoadVector256(qT + i * 8), a);
            (a + b).Store(sT + jj * 8);
        }
    }

    // acc[h][0..hd) += Σ_key p[key·8 + h] · raw(v[key]) for four heads h (p holds weights × 2¹¹²): each value row
    // widened once for the four heads, 16 columns (eight accumulators) at a time.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PVHalf4(float* p, int jn, ushort* v, long stride, int hd, float* acc)
    {
        float* a0p = acc, a1p = acc + hd, a2p = acc + 2 * hd, a3p = acc + 3 * hd;
        int c = 0;
        for (; c + 16 <= hd; c += 16)
        {
            var r0 = Avx.LoadVector256(a0p + c); var s0 = Avx.LoadVector256(a0p + c + 8);
            var r1 = Avx.LoadVector256(a1p + c); var s1 = Avx.LoadVector256(a1p + c + 8);
            var r2 = Avx.LoadVector256(a2p + c); var s2 = Avx.LoadVector256(a2p + c + 8);
            var r3 = Avx.LoadVector256(a3p + c); var s3 = Avx.LoadVector256(a3p + c + 8);
            ushort* vr = v + c;
            float* pj = p;
            for (int j = 0; j < jn; j++, vr += stride, pj += 8)
            {
                var x = LoadHalfRaw(vr); var y = LoadHalfRaw(vr + 8);
                var p0 = Vector256.Create(pj[0]); r0 = Fma.MultiplyAdd(p0, x, r0); s0 = Fma.MultiplyAdd(p0, y, s0);
                var p1 = Vector256.Create(pj[1]); r1 = Fma.MultiplyAdd(p1, x, r1); s1 = Fma.MultiplyAdd(p1, y, s1);
                var p2 = Vector256.Create(pj[2]); r2 = Fma.MultiplyAdd(p2, x, r2); s2 = Fma.MultiplyAdd(p2, y, s2);
                var p3 = Vector256.Create(pj[3]); r3 = Fma.MultiplyAdd(p3, x, r3); s3 = Fma.MultiplyAdd(p3, y, s3);
            }
            r0.Store(a0p + c); s0.Store(a0p + c + 8); r1.Store(a1p + c); s1.Store(a1p + c + 8);
            r2.Store(a2p + c); s2.Store(a2p + c + 8); r3.Store(a3p + c); s3.Store(a3p + c + 8);
        }
        if (c < hd)
        {
            var r0 = Avx.LoadVector256(a0p + c); var r1 = Avx.LoadVector256(a1p + c);
            var r2 = Avx.LoadVector256(a2p + c); var r3 = Avx.LoadVector256(a3p + c);
            ushort* vr = v + c;
            float* pj = p;
            for (int j = 0; j < jn; j++, vr += stride, pj += 8)
            {
                var x = LoadHalfRaw(vr);
                r0 = Fma.MultiplyAdd(Vector256.Create(pj[0]), x, r0); r1 = Fma.MultiplyAdd(Vector256.Create(pj[1]), x, r1);
                r2 = Fma.MultiplyAdd(Vector256.Create(pj[2]), x, r2); r3 = Fma.MultiplyAdd(Vector256.Create(pj[3]), x, r3);
            }
            r0.Store(a0p + c); r1.Store(a1p + c); r2.Store(a2p + c); r3.Store(a3p + c);
        }
    }

    // acc[0..hd) += Σ_key p[key·8] · raw(v[key]) for one head, 32 columns (four accumulators) at a time.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PVHalf1(float* p, int jn, ushort* v, long stride, int hd, float* acc)
    {
        int c = 0;
        for (; c + 32 <= hd; c += 32)
        {
            var r0 = Avx.LoadVector256(acc + c); var r1 = Avx.LoadVector256(acc + c + 8);
            var r2 = Avx.LoadVector256(acc + c + 16); var r3 = Avx.LoadVector256(acc + c + 24);
            ushort* vr = v + c;
            for (int j = 0; j < jn; j++, vr += stride)
            {
                var pj = Vector256.Create(p[j * 8]);
                r0 = Fma.MultiplyAdd(pj, LoadHalfRaw(vr), r0); r1 = Fma.MultiplyAdd(pj, LoadHalfRaw(vr + 8), r1);
                r2 = Fma.MultiplyAdd(pj, LoadHalfRaw(vr + 16), r2); r3 = Fma.MultiplyAdd(pj, LoadHalfRaw(vr + 24), r3);
            }
            r0.Store(acc + c); r1.Store(acc + c + 8); r2.Store(acc + c + 16); r3.Store(acc + c + 24);
        }
        for (; c < hd; c += 8)
        {
            var r0 = Avx.LoadVector256(acc + c);
            ushort* vr = v + c;
            for (int j = 0; j < jn; j++, vr += stride) r0 = Fma.MultiplyAdd(Vector256.Create(p[j * 8]), LoadHalfRaw(vr), r0);
            r0.Store(acc + c);
        }
    }

    // ScoresT8 on 512-bit vectors: lanes 2h + p hold head h's partial sum over dims of parity p (qT2[i'][2h + p] =
    // q[h][2i' + p]·scale), so one broadcast of a key's dims (2i', 2i' + 1) feeds all 8 heads; adjacent lanes are summed
    // at the end and two keys' 8 sums packed into one vector. head_dim a multiple of 16.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScoresT8x2(float* qT2, float* tile, int hd, int jn, float* sT)
    {
        int half = hd >> 1, jj = 0;
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        for (; jj + 8 <= jn; jj += 8)
        {
            float* t = tile + jj * hd;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            for (int i = 0; i < half; i++)
            {
                var qi = Vector512.Load(qT2 + i * 16);
                double* d = (double*)t + i;
                a0 = Avx512F.FusedMultiplyAdd(Vector512.Create(d[0]).AsSingle(), qi, a0);
                a1 = Avx512F.FusedMultiplyAdd(Vector512.Create(d[half]).AsSingle(), qi, a1);
                a2 = Avx512F.FusedMultiplyAdd(Vector512.Create(d[2 * half]).AsSingle(), qi, a2);
                a3 = Avx512F.FusedMultiplyAdd(Vector512.Create(d[3 * half]).AsSingle(), qi, a3);
                a4 = Avx512F.FusedMultiplyAdd(Vector512.Create(d[4 * half]).AsSingle(), qi, a4);
                a5 = Avx512F.FusedMultiplyAdd(Vector512.Create(d[5 * half]).AsSingle(), qi, a5);
                a6 = Avx512F.FusedMultiplyAdd(Vector512.Create(d[6 * half]).AsSingle(), qi, a6);
                a7 = Avx512F.FusedMultiplyAdd(Vector512.Create(d[7 * half]).AsSingle(), qi, a7);
            }
            float* s = sT + jj * 8;
            Avx512F.PermuteVar16x32x2(PairSum(a0), even, PairSum(a1)).Store(s);
            Avx512F.PermuteVar16x32x2(PairSum(a2), even, PairSum(a3)).Store(s + 16);
            Avx512F.PermuteVar16x32x2(PairSum(a4), even, PairSum(a5)).Store(s + 32);
            Avx512F.PermuteVar16x32x2(PairSum(a6), even, PairSum(a7)).Store(s + 48);
        }
        for (; jj < jn; jj++)
        {
            double* d = (double*)(tile + jj * hd);
            Vector512<float> a = default, b = default;
            int i = 0;
            for (; i + 2 <= half; i += 2)
            {
                a = Avx512F.FusedMultiplyAdd(Vector512.Create(d[i]).AsSingle(), Vector512.Load(qT2 + i * 16), a);
                b = Avx512F.FusedMultiplyAdd(Vector512.Create(d[i + 1]).AsSingle(), Vector512.Load(qT2 + i * 16 + 16), b);
            }
            for (; i < half; i++) a = Avx512F.FusedMultiplyAdd(Vector512.Create(d[i]).AsSingle(), Vector512.Load(qT2 + i * 16), a);
            Avx512F.PermuteVar16x32(PairSum(a + b), even).GetLower().Store(sT + jj * 8);
        }
    }

    // Lane 2h gets lanes 2h + 2h+1 (odd lanes: the same sum).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairSum(Vector512<float> a) => a + Avx512F.Shuffle(a, a, 0b10_11_00_01);

    // PVHalf4 for eight heads on 512-bit vectors: each value row widened once for the eight heads, 32 columns (sixteen
    // accumulators) at a time. head_dim a multiple of 16.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PVHalf8x512(float* p, int jn, ushort* v, long stride, int hd, float* acc)
    {
        int c = 0;
        for (; c + 32 <= hd; c += 32)
        {
            float* a = acc + c;
            var r0 = Vector512.Load(a); var s0 = Vector512.Load(a + 16); a += hd;
            var r1 = Vector512.Load(a); var s1 = Vector512.Load(a + 16); a += hd;
            var r2 = Vector512.Load(a); var s2 = Vector512.Load(a + 16); a += hd;
            var r3 = Vector512.Load(a); var s3 = Vector512.Load(a + 16); a += hd;
            var r4 = Vector512.Load(a); var s4 = Vector512.Load(a + 16); a += hd;
            var r5 = Vector512.Load(a); var s5 = Vector512.Load(a + 16); a += hd;
            var r6 = Vector512.Load(a); var s6 = Vector512.Load(a + 16); a += hd;
            var r7 = Vector512.Load(a); var s7 = Vector512.Load(a + 16);
            ushort* vr = v + c;
            float* pj = p;
            for (int j = 0; j < jn; j++, vr += stride, pj += 8)
            {
                var x = LoadHalfRaw512(vr); var y = LoadHalfRaw512(vr + 16);
                var w = Vector512.Create(pj[0]); r0 = Avx512F.FusedMultiplyAdd(w, x, r0); s0 = Avx512F.FusedMultiplyAdd(w, y, s0);
                w = Vector512.Create(pj[1]); r1 = Avx512F.FusedMultiplyAdd(w, x, r1); s1 = Avx512F.FusedMultiplyAdd(w, y, s1);
                w = Vector512.Create(pj[2]); r2 = Avx512F.FusedMultiplyAdd(w, x, r2); s2 = Avx512F.FusedMultiplyAdd(w, y, s2);
                w = Vector512.Create(pj[3]); r3 = Avx512F.FusedMultiplyAdd(w, x, r3); s3 = Avx512F.FusedMultiplyAdd(w, y, s3);
                w = Vector512.Create(pj[4]); r4 = Avx512F.FusedMultiplyAdd(w, x, r4); s4 = Avx512F.FusedMultiplyAdd(w, y, s4);
                w = Vector512.Create(pj[5]); r5 = Avx512F.FusedMultiplyAdd(w, x, r5); s5 = Avx512F.FusedMultiplyAdd(w, y, s5);
                w = Vector512.Create(pj[6]); r6 = Avx512F.FusedMultiplyAdd(w, x, r6); s6 = Avx512F.FusedMultiplyAdd(w, y, s6);
                w = Vector512.Create(pj[7]); r7 = Avx512F.FusedMultiplyAdd(w, x, r7); s7 = Avx512F.FusedMultiplyAdd(w, y, s7);
            }
            a = acc + c;
            r0.Store(a); s0.Store(a + 16); a += hd;
            r1.Store(a); s1.Store(a + 16); a += hd;
            r2.Store(a); s2.Store(a + 16); a += hd;
            r3.Store(a); s3.Store(a + 16); a += hd;
            r4.Store(a); s4.Store(a + 16); a += hd;
            r5.Store(a); s5.Store(a + 16); a += hd;
            r6.Store(a); s6.Store(a + 16); a += hd;
            r7.Store(a); s7.Store(a + 16);
        }
        if (c < hd)
        {
            float* a = acc + c;
            var r0 = Vector512.Load(a); var r1 = Vector512.Load(a + hd); var r2 = Vector512.Load(a + 2 * hd); var r3 = Vector512.Load(a + 3 * hd);
            var r4 = Vector512.Load(a + 4 * hd); var r5 = Vector512.Load(a + 5 * hd); var r6 = Vector512.Load(a + 6 * hd); var r7 = Vector512.Load(a + 7 * hd);
            ushort* vr = v + c;
            float* pj = p;
            for (int j = 0; j < jn; j++, vr += stride, pj += 8)
            {
                var x = LoadHalfRaw512(vr);
                r0 = Avx512F.FusedMultiplyAdd(Vector512.Create(pj[0]), x, r0); r1 = Avx512F.FusedMultiplyAdd(Vector512.Create(pj[1]), x, r1);
                r2 = Avx512F.FusedMultiplyAdd(Vector512.Create(pj[2]), x, r2); r3 = Avx512F.FusedMultiplyAdd(Vector512.Create(pj[3]), x, r3);
                r4 = Avx512F.FusedMultiplyAdd(Vector512.Create(pj[4]), x, r4); r5 = Avx512F.FusedMultiplyAdd(Vector512.Create(pj[5]), x, r5);
                r6 = Avx512F.FusedMultiplyAdd(Vector512.Create(pj[6]), x, r6); r7 = Avx512F.FusedMultiplyAdd(Vector512.Create(pj[7]), x, r7);
            }
            r0.Store(a); r1.Store(a + hd); r2.Store(a + 2 * hd); r3.Store(a + 3 * hd);
            r4.Store(a + 4 * hd); r5.Store(a + 5 * hd); r6.Store(a + 6 * hd); r7.Store(a + 7 * hd);
        }
    }

    // LoadHalfRaw for sixteen halves.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> LoadHalfRaw512(ushort* p) =>
        Avx512F.And(Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)p)), 13), Vector512.Create(unchecked((int)0x8FFFE000))).AsSingle();

    // rows × width halves (rows stride halves apart) widened into a dense [rows, width] float tile.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WidenRows(ushort* src, long stride, int rows, int width, float* dst)
    {
        if (stride == width) { WidenCore(src, dst, (long)rows * width); return; }
        for (int r = 0; r < rows; r++) WidenCore(src + r * stride, dst + r * width, width);
    }

    // One or two heads (or no AVX2/FMA, or head_dim not a multiple of 8): rows are widened in registers on load, once
    // per head.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendRowHalfInRegisters(float* q, int groupHeads, int headDim, ushort* k, ushort* v, long stride, int end,
        float* mask, float scale, float* o, float* scratch, bool simd)
    {
        int hd = headDim, G = groupHeads;
        // The SIMD path widens a half with three integer operations and no multiply (LoadHalfRaw: the value × 2⁻¹¹²),
        // so q and the softmax weights carry the 2¹¹² instead: q' = q·2¹¹² once per call, p' = p·2¹¹² per key.
        float* qs = stackalloc float[simd ? G * hd : 1];
        if (simd) for (int i = 0; i < G * hd; i++) qs[i] = q[i] * Two112;
        // 512-bit rows where AVX-512F is present: each op the same per lane as on 256 bits, so bit-identical, with
        // half the conversion and FMA instructions per key
        bool wide = simd && Avx512F.IsSupported && UseHalfRow512;
        float* acc = scratch;
        float* mx = acc + G * hd;
        float* l = mx + G;
        float* s = l + G;
        new Span<float>(acc, G * hd).Clear();
        for (int g = 0; g < G; g++) { mx[g] = float.NegativeInfinity; l[g] = 0; }
        int pfk = PrefetchHalfKeys;   // read once: the stores to s below keep the JIT from hoisting a static
        for (int j0 = 0; j0 < end; j0 += BlockKeys)
        {
            int jn = Math.Min(BlockKeys, end - j0);
            ushort* kb = k + j0 * stride, vb = v + j0 * stride;
            for (int g = 0; g < G; g++)
            {
                float* qg = q + g * hd;
                int jj = 0;
                if (simd)
                    for (; jj <= jn - 4; jj += 4)
                    {
                        if (g == 0)
                        {
                            PrefetchHalfRows(kb + (jj + pfk) * stride, stride, 4, hd, k + end * stride);
                            PrefetchHalfRows(vb + jj * stride, stride, 4, hd, v + end * stride); // the block's V rows, read after its K pass
                        }
                        if (wide) DotHalf4x512(qs + g * hd, kb + jj * stride, stride, hd, scale, s + jj);
                        else DotHalf4(qs + g * hd, kb + jj * stride, stride, hd, scale, s + jj);
                    }
                // the block's last keys (fewer than 4): DotHalf4's arithmetic one key at a time (a scalar loop over
                // HalfToSingle took ~160 ns a key, more than the rest of a 32-key head)
                if (simd) for (; jj < jn; jj++) s[jj] = DotHalf1(qs + g * hd, kb + jj * stride, hd, scale);
                for (; jj < jn; jj++)
                {
                    ushort* kr = kb + jj * stride;
                    float d = 0;
                    for (int i = 0; i < hd; i++) d += qg[i] * QuantKernels.HalfToSingle(kr[i]);
                    s[jj] = d * scale;
                }
                float* ag = acc + g * hd;
                if (!SoftmaxBlock(s, jn, mask == null ? null : mask + j0, mx + g, l + g, ag, hd)) continue;
                if (simd)
                {
                    int c = 0;
                    if (wide) for (; c <= hd - 64; c += 64) AccumulatePVHalf64x512(s, jn, vb + c, stride, ag + c);
                    for (; c <= hd - 32; c += 32) AccumulatePVHalf32(s, jn, vb + c, stride, ag + c);
                    for (; c < hd; c += 8)
                    {
                        var a = Avx.LoadVector256(ag + c);
                        for (jj = 0; jj < jn; jj++)
                        {
                            float p = s[jj];
                            if (p == 0f) continue;
                            a = Fma.MultiplyAdd(Vector256.Create(p * Two112), LoadHalfRaw(vb + jj * stride + c), a);
                        }
                        a.Store(ag + c);
                    }
                }
                else
                    for (jj = 0; jj < jn; jj++)
                    {
                        float p = s[jj];
                        if (p == 0f) continue;
                        ushort* vr = vb + jj * stride;
                        for (int i = 0; i < hd; i++) ag[i] += p * QuantKernels.HalfToSingle(vr[i]);
                    }
            }
        }
        Normalize(o, acc, l, G, hd);
    }

    /// <summary>
    /// Whether the per-head f16 decode kernel scores 16 keys at a time where AVX-512F is present and head_dim is a
    /// multiple of 16 (A/B switch "attn16" of the decode profile; within the reference tolerance of the 4-key path).
    /// </summary>
    internal static bool UseHalfRowKeys16 = true;

    // The per-head kernel (1–2 heads) on 512-bit vectors with the per-key overhead taken out of the block: sixteen keys'
    // dot products reduced to one vector of scores by a 4-level transpose-add (about 3 shuffles and adds a key where
    // a horizontal sum per key took about 10), the block's online softmax (mask, max, exp, sum) on those vectors, the
    // weights stored × 2¹¹² once per block (LoadHalfRaw's scale) rather than multiplied key by key in P·V. The last
    // keys of a block (fewer than 16) are scored by the 4-key path. head_dim a multiple of 16.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendRowHalf16(float* q, int groupHeads, int headDim, ushort* k, ushort* v, long stride, int end,
        float* mask, float scale, float* o, float* scratch)
    {
        int hd = headDim, G = groupHeads;
        float* qs = stackalloc float[G * hd];
        for (int i = 0; i < G * hd; i++) qs[i] = q[i] * Two112;
        float* acc = scratch;
        float* mx = acc + G * hd;
        float* l = mx + G;
        float* s = l + G;   // BlockKeys scores, rounded up to 16 (ScratchFloats leaves 16 floats past the block)
        new Span<float>(acc, G * hd).Clear();
        for (int g = 0; g < G; g++) { mx[g] = float.NegativeInfinity; l[g] = 0; }
        int pfk = PrefetchHalfKeys;
        var ninf = Vector512.Create(float.NegativeInfinity);
        var sc = Vector512.Create(scale);
        var two112 = Vector512.Create(Two112);
        ushort* kEnd = k + end * stride, vEnd = v + end * stride;
        for (int j0 = 0; j0 < end; j0 += BlockKeys)
        {
            int jn = Math.Min(BlockKeys, end - j0), full = jn & ~15, groups = (jn + 15) >> 4;
            ushort* kb = k + j0 * stride, vb = v + j0 * stride;
            float* mb = mask == null ? null : mask + j0;
            for (int g = 0; g < G; g++)
            {
                float* qg = qs + g * hd;
                int jj = 0;
                for (; jj < full; jj += 16)
                {
                    if (g == 0)
                    {
                        PrefetchHalfRows(kb + (jj + pfk) * stride, stride, 16, hd, kEnd);
                        PrefetchHalfRows(vb + jj * stride, stride, 16, hd, vEnd);   // the rows P·V reads after the block's scores
                    }
                    var x = Scores16(qg, kb + jj * stride, stride, hd) * sc;
                    if (mb != null) x = Vector512.ConditionalSelect(Vector512.Equals(Vector512.Load(mb + jj), Vector512<float>.Zero), ninf, x);
                    x.Store(s + jj);
                }
                if (jj < jn)
                {
                    if (g == 0) PrefetchHalfRows(vb + jj * stride, stride, jn - jj, hd, vEnd);
                    for (; jj + 4 <= jn; jj += 4) DotHalf4x512(qg, kb + jj * stride, stride, hd, scale, s + jj);
                    for (; jj < jn; jj++) s[jj] = DotHalf1(qg, kb + jj * stride, hd, scale);
                    if (mb != null) for (jj = full; jj < jn; jj++) if (mb[jj] == 0f) s[jj] = float.NegativeInfinity;
                    for (jj = jn; jj < groups * 16; jj++) s[jj] = float.NegativeInfinity;
                }
                float* ag = acc + g * hd;
                if (!SoftmaxBlock16(s, groups, mx + g, l + g, ag, hd, two112)) continue;   // every key of the block masked
                int col = 0;
                for (; col + 64 <= hd; col += 64) AccumulatePVHalf64Scaled(s, jn, vb + col, stride, ag + col);
                for (; col < hd; col += 16) AccumulatePVHalf16Scaled(s, jn, vb + col, stride, ag + col);
            }
        }
        Normalize(o, acc, l, G, hd);
    }

    // s[0..16) = q' · raw(k_j) for the sixteen key rows at k (stride halves apart), head_dim a multiple of 16: one
    // accumulator per key over the row, then a transpose-add in four levels (256-bit halves, 128-bit quarters, pairs,
    // lanes), each level adding two vectors' halves so the 16 sums land in key order.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scores16(float* q, ushort* k, long stride, int hd)
    {
        Vector512<float> w0 = default, w1 = default, w2 = default, w3 = default, w4 = default, w5 = default, w6 = default, w7 = default;
        Vector512<float> w8 = default, w9 = default, w10 = default, w11 = default, w12 = default, w13 = default, w14 = default, w15 = default;
        ushort* k4 = k + 4 * stride, k8 = k4 + 4 * stride, k12 = k8 + 4 * stride;
        long s2 = 2 * stride, s3 = 3 * stride;
        for (int i = 0; i < hd; i += 16)
        {
            var qv = Vector512.Load(q + i);
            w0 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k + i), w0);
            w1 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k + stride + i), w1);
            w2 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k + s2 + i), w2);
            w3 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k + s3 + i), w3);
            w4 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k4 + i), w4);
            w5 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k4 + stride + i), w5);
            w6 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k4 + s2 + i), w6);
            w7 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k4 + s3 + i), w7);
            w8 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k8 + i), w8);
            w9 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k8 + stride + i), w9);
            w10 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k8 + s2 + i), w10);
            w11 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k8 + s3 + i), w11);
            w12 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k12 + i), w12);
            w13 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k12 + stride + i), w13);
            w14 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k12 + s2 + i), w14);
            w15 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k12 + s3 + i), w15);
        }
        return ReduceKeys16(w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15);
    }

    // Lane j of the result = the sum of w_j's sixteen lanes. Level 1 adds each vector's 256-bit halves (two keys a
    // vector), level 2 its 128-bit quarters (four keys), level 3 its 64-bit pairs within quarters (eight), level 4 its
    // lanes (sixteen); the pairings (keys j, j+4, j+8, j+12 first) leave key 4c + r in quarter c, lane r.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> ReduceKeys16(Vector512<float> w0, Vector512<float> w1, Vector512<float> w2, Vector512<float> w3,
        Vector512<float> w4, Vector512<float> w5, Vector512<float> w6, Vector512<float> w7, Vector512<float> w8, Vector512<float> w9,
        Vector512<float> w10, Vector512<float> w11, Vector512<float> w12, Vector512<float> w13, Vector512<float> w14, Vector512<float> w15)
    {
        // [a.q0 + a.q2, a.q1 + a.q3, b.q0 + b.q2, b.q1 + b.q3]
        static Vector512<float> L1(Vector512<float> a, Vector512<float> b) =>
            Avx512F.Shuffle4x128(a, b, 0b01_00_01_00) + Avx512F.Shuffle4x128(a, b, 0b11_10_11_10);
        // [a, b] (halves a0 a1 b0 b1) and [c, d] → [a, b, c, d] one quarter each
        static Vector512<float> L2(Vector512<float> ab, Vector512<float> cd) =>
            Avx512F.Shuffle4x128(ab, cd, 0b10_00_10_00) + Avx512F.Shuffle4x128(ab, cd, 0b11_01_11_01);
        // per quarter [x0 x1 x2 x3], [y0 y1 y2 y3] → [x0 + x2, x1 + x3, y0 + y2, y1 + y3]
        static Vector512<float> L3(Vector512<float> x, Vector512<float> y) =>
            (Avx512F.UnpackLow(x.AsDouble(), y.AsDouble()) .AsSingle()) + Avx512F.UnpackHigh(x.AsDouble(), y.AsDouble()).AsSingle();
        // per quarter [x0 x1 y0 y1] pairs, [z0 z1 u0 u1] → [x, y, z, u]
        static Vector512<float> L4(Vector512<float> a, Vector512<float> b) =>
            Avx512F.Shuffle(a, b, 0b10_00_10_00) + Avx512F.Shuffle(a, b, 0b11_01_11_01);
        var k0 = L2(L1(w0, w4), L1(w8, w12));    // keys 0, 4, 8, 12 in quarters 0..3
        var k1 = L2(L1(w1, w5), L1(w9, w13));
        var k2 = L2(L1(w2, w6), L1(w10, w14));
        var k3 = L2(L1(w3, w7), L1(w11, w15));
        return L4(L3(k0, k1), L3(k2, k3));
    }

    // acc[0..64) += p_j · raw(v_j[0..64)) over the block's keys with p_j ≠ 0 (p already × 2¹¹²), four 512-bit accumulators.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AccumulatePVHalf64Scaled(float* p, int n, ushort* v, long stride, float* acc)
    {
        var r0 = Vector512.Load(acc); var r1 = Vector512.Load(acc + 16);
        var r2 = Vector512.Load(acc + 32); var r3 = Vector512.Load(acc + 48);
        for (int j = 0; j < n; j++, v += stride)
        {
            float pj = p[j];
            if (pj == 0f) continue;
            var pv = Vector512.Create(pj);
            r0 = Avx512F.FusedMultiplyAdd(pv, LoadHalfRaw512(v), r0);
            r1 = Avx512F.FusedMultiplyAdd(pv, LoadHalfRaw512(v + 16), r1);
            r2 = Avx512F.FusedMultiplyAdd(pv, LoadHalfRaw512(v + 32), r2);
            r3 = Avx512F.FusedMultiplyAdd(pv, LoadHalfRaw512(v + 48), r3);
        }
        r0.Store(acc); r1.Store(acc + 16); r2.Store(acc + 32); r3.Store(acc + 48);
    }

    // AccumulatePVHalf64Scaled for 16 columns.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AccumulatePVHalf16Scaled(float* p, int n, ushort* v, long stride, float* acc)
    {
        var r0 = Vector512.Load(acc);
        for (int j = 0; j < n; j++, v += stride)
        {
            float pj = p[j];
            if (pj != 0f) r0 = Avx512F.FusedMultiplyAdd(Vector512.Create(pj), LoadHalfRaw512(v), r0);
        }
        r0.Store(acc);
    }

    // VecMath.Exp on 512-bit vectors (the same operations per lane).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Exp512(Vector512<float> x)
    {
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(-87.3f)), Vector512.Create(88.3f));
        var magic = Vector512.Create(12582912f);
        var t = Avx512F.FusedMultiplyAdd(x, Vector512.Create(1.44269504088896341f), magic);
        var n = t - magic;
        var r = Avx512F.FusedMultiplyAdd(n, Vector512.Create(-0.693359375f), x);
        r = Avx512F.FusedMultiplyAdd(n, Vector512.Create(2.12194440e-4f), r);
        var p = Avx512F.FusedMultiplyAdd(Vector512.Create(1.9875691500E-4f), r, Vector512.Create(1.3981999507E-3f));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(8.3334519073E-3f));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(4.1665795894E-2f));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1.6666665459E-1f));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(5.0000001201E-1f));
        var y = Avx512F.FusedMultiplyAdd(p, r * r, r) + Vector512<float>.One;
        var pow2 = (t.AsInt32() + Vector512.Create(127)) << 23;
        return y * pow2.AsSingle();
    }

    /// <summary>
    /// Whether the f32 decode kernel (<see cref="RowKernel.Default"/>) scores 16 keys at a time where AVX-512F is present
    /// and head_dim is a multiple of 16 (A/B switch "attn16" with <see cref="UseHalfRowKeys16"/>; within the reference
    /// tolerance of the interleaved kernel, not bit-identical to it).
    /// </summary>
    internal static bool UseRowKeys16 = true;

    // AttendRowHalf16 over an f32 cache, any group size (a second head rereads the block from L1): sixteen keys' dot
    // products (FMAs straight from the key rows) reduced by ReduceKeys16, the block's softmax on 512-bit vectors, P·V
    // with 64 (then 16) output columns in registers. head_dim a multiple of 16.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendRow16(float* q, int groupHeads, int headDim, float* k, float* v, long stride, int end,
        float* mask, float scale, float* o, float* scratch, int prefetch)
    {
        int hd = headDim, G = groupHeads;
        float* acc = scratch;
        float* mx = acc + G * hd;
        float* l = mx + G;
        float* s = l + G;
        new Span<float>(acc, G * hd).Clear();
        for (int g = 0; g < G; g++) { mx[g] = float.NegativeInfinity; l[g] = 0; }
        var ninf = Vector512.Create(float.NegativeInfinity);
        var sc = Vector512.Create(scale);
        float* kEnd = k + end * stride, vEnd = v + end * stride;
        for (int j0 = 0; j0 < end; j0 += BlockKeys)
        {
            int jn = Math.Min(BlockKeys, end - j0), full = jn & ~15, groups = (jn + 15) >> 4;
            float* kb = k + j0 * stride, vb = v + j0 * stride;
            float* mb = mask == null ? null : mask + j0;
            for (int g = 0; g < G; g++)
            {
                float* qg = q + g * hd;
                int jj = 0;
                for (; jj < full; jj += 16)
                {
                    if (g == 0 && prefetch > 0)
                    {
                        PrefetchRows(kb + (jj + prefetch) * stride, stride, 16, hd, kEnd);
                        PrefetchRows(vb + jj * stride, stride, 16, hd, vEnd);
                    }
                    var x = Scores16(qg, kb + jj * stride, stride, hd) * sc;
                    if (mb != null) x = Vector512.ConditionalSelect(Vector512.Equals(Vector512.Load(mb + jj), Vector512<float>.Zero), ninf, x);
                    x.Store(s + jj);
                }
                if (jj < jn)
                {
                    if (g == 0 && prefetch > 0) PrefetchRows(vb + jj * stride, stride, jn - jj, hd, vEnd);
                    for (; jj + 4 <= jn; jj += 4) Dot4(qg, kb + jj * stride, stride, hd, scale, s + jj);
                    for (; jj < jn; jj++) s[jj] = Dot(qg, kb + jj * stride, hd) * scale;
                    if (mb != null) for (jj = full; jj < jn; jj++) if (mb[jj] == 0f) s[jj] = float.NegativeInfinity;
                    for (jj = jn; jj < groups * 16; jj++) s[jj] = float.NegativeInfinity;
                }
                float* ag = acc + g * hd;
                if (!SoftmaxBlock16(s, groups, mx + g, l + g, ag, hd, Vector512<float>.One)) continue;
                int col = 0;
                for (; col + 64 <= hd; col += 64) AccumulatePV64x512(s, jn, vb + col, stride, ag + col);
                for (; col < hd; col += 16) AccumulatePV16x512(s, jn, vb + col, stride, ag + col);
            }
        }
        Normalize(o, acc, l, G, hd);
    }

    // The online-softmax step of the 16-key kernels on one block's scores s[0 .. 16·groups) (−∞ for masked keys and
    // the lanes past the block): the head's accumulator and running sum rescaled to the new running max, s replaced
    // by the weights × <paramref name="pscale"/> (0 for masked keys). False when every key is masked.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool SoftmaxBlock16(float* s, int groups, float* mx, float* l, float* ag, int hd, Vector512<float> pscale)
    {
        var ninf = Vector512.Create(float.NegativeInfinity);
        var bm = ninf;
        for (int c = 0; c < groups; c++) bm = Vector512.Max(bm, Vector512.Load(s + c * 16));
        float bmax = MaxAcross(Vector256.Max(bm.GetLower(), bm.GetUpper()));
        if (bmax == float.NegativeInfinity) return false;
        float mnew = Math.Max(*mx, bmax);
        if (*mx != float.NegativeInfinity && *mx != mnew)
        {
            float corr = MathF.Exp(*mx - mnew);
            Scale(ag, corr, hd);
            *l *= corr;
        }
        var mv = Vector512.Create(mnew);
        var sum = Vector512<float>.Zero;
        for (int c = 0; c < groups; c++)
        {
            var x = Vector512.Load(s + c * 16);
            var e = Vector512.ConditionalSelect(Vector512.Equals(x, ninf), Vector512<float>.Zero, Exp512(x - mv));
            sum += e;
            (e * pscale).Store(s + c * 16);
        }
        *l += Vector512.Sum(sum);
        *mx = mnew;
        return true;
    }

    // s[0..16) = q · k_j for the sixteen f32 key rows at k: Scores16's order.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scores16(float* q, float* k, long stride, int hd)
    {
        Vector512<float> w0 = default, w1 = default, w2 = default, w3 = default, w4 = default, w5 = default, w6 = default, w7 = default;
        Vector512<float> w8 = default, w9 = default, w10 = default, w11 = default, w12 = default, w13 = default, w14 = default, w15 = default;
        float* k4 = k + 4 * stride, k8 = k4 + 4 * stride, k12 = k8 + 4 * stride;
        long s2 = 2 * stride, s3 = 3 * stride;
        for (int i = 0; i < hd; i += 16)
        {
            var qv = Vector512.Load(q + i);
            w0 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k + i), w0);
            w1 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k + stride + i), w1);
            w2 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k + s2 + i), w2);
            w3 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k + s3 + i), w3);
            w4 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k4 + i), w4);
            w5 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k4 + stride + i), w5);
            w6 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k4 + s2 + i), w6);
            w7 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k4 + s3 + i), w7);
            w8 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k8 + i), w8);
            w9 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k8 + stride + i), w9);
            w10 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k8 + s2 + i), w10);
            w11 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k8 + s3 + i), w11);
            w12 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k12 + i), w12);
            w13 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k12 + stride + i), w13);
            w14 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k12 + s2 + i), w14);
            w15 = Avx512F.FusedMultiplyAdd(qv, Vector512.Load(k12 + s3 + i), w15);
        }
        return ReduceKeys16(w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15);
    }

    // acc[0..64) += p_j · v_j[0..64) over the block's keys with p_j ≠ 0, four 512-bit accumulators.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AccumulatePV64x512(float* p, int n, float* v, long stride, float* acc)
    {
        var r0 = Vector512.Load(acc); var r1 = Vector512.Load(acc + 16);
        var r2 = Vector512.Load(acc + 32); var r3 = Vector512.Load(acc + 48);
        for (int j = 0; j < n; j++, v += stride)
        {
            float pj = p[j];
            if (pj == 0f) continue;
            var pv = Vector512.Create(pj);
            r0 = Avx512F.FusedMultiplyAdd(pv, Vector512.Load(v), r0);
            r1 = Avx512F.FusedMultiplyAdd(pv, Vector512.Load(v + 16), r1);
            r2 = Avx512F.FusedMultiplyAdd(pv, Vector512.Load(v + 32), r2);
            r3 = Avx512F.FusedMultiplyAdd(pv, Vector512.Load(v + 48), r3);
        }
        r0.Store(acc); r1.Store(acc + 16); r2.Store(acc + 32); r3.Store(acc + 48);
    }

    // AccumulatePV64x512 for 16 columns.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AccumulatePV16x512(float* p, int n, float* v, long stride, float* acc)
    {
        var r0 = Vector512.Load(acc);
        for (int j = 0; j < n; j++, v += stride)
        {
            float pj = p[j];
            if (pj != 0f) r0 = Avx512F.FusedMultiplyAdd(Vector512.Create(pj), Vector512.Load(v), r0);
        }
        r0.Store(acc);
    }

    private const float Two112 = 5.192296858534828e33f;   // 2^112, exact; a constant folds even in code jitted before the class initializer

    // Eight halves as floats scaled by 2⁻¹¹²: sign-extended to 32 bits and shifted so the half's exponent and mantissa
    // land in the float's (bits 27..13), the sign extension's copies above the exponent masked off. Exact for every
    // finite half (zero and subnormals included); × 2¹¹² gives the value.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> LoadHalfRaw(ushort* p) =>
        Avx2.And(Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((short*)p), 13), Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle();

    // acc[0..32) += p_j·2¹¹² · raw(v_j[0..32)) over the block's keys with p_j ≠ 0, the 32 outputs in four registers.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AccumulatePVHalf32(float* p, int n, ushort* v, long stride, float* acc)
    {
        var r0 = Avx.LoadVector256(acc); var r1 = Avx.LoadVector256(acc + 8);
        var r2 = Avx.LoadVector256(acc + 16); var r3 = Avx.LoadVector256(acc + 24);
        for (int j = 0; j < n; j++)
        {
            float pj = p[j];
            if (pj == 0f) continue;
            var pv = Vector256.Create(pj * Two112);
            ushort* vr = v + j * stride;
            r0 = Fma.MultiplyAdd(pv, LoadHalfRaw(vr), r0);
            r1 = Fma.MultiplyAdd(pv, LoadHalfRaw(vr + 8), r1);
            r2 = Fma.MultiplyAdd(pv, LoadHalfRaw(vr + 16), r2);
            r3 = Fma.MultiplyAdd(pv, LoadHalfRaw(vr + 24), r3);
        }
        r0.Store(acc); r1.Store(acc + 8); r2.Store(acc + 16); r3.Store(acc + 24);
    }

    // scale · (q' · raw(k)) for one key row: DotHalf4's operations for one of its four keys.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotHalf1(float* q, ushort* k, int n, float scale)
    {
        Vector256<float> a = default, b = default;
        int i = 0;
        for (; i <= n - 16; i += 16)
        {
            a = Fma.MultiplyAdd(Avx.LoadVector256(q + i), LoadHalfRaw(k + i), a);
            b = Fma.MultiplyAdd(Avx.LoadVector256(q + i + 8), LoadHalfRaw(k + i + 8), b);
        }
        if (i <= n - 8) a = Fma.MultiplyAdd(Avx.LoadVector256(q + i), LoadHalfRaw(k + i), a);
        return Vector256.Sum(a + b) * scale;
    }

    /// <summary>Whether the per-head f16 decode kernel runs 512-bit rows where AVX-512F is present (A/B switch; bit-identical either way).</summary>
    internal static bool UseHalfRow512 = true;

    // DotHalf4 on 512-bit vectors: one accumulator per key whose low and high halves are DotHalf4's a and b (dims
    // i..i+8 and i+8..i+16 of each 16-step), so the FMAs, the 8-dim tail (into the low half) and the final sum are DotHalf4's.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DotHalf4x512(float* q, ushort* k, long stride, int n, float scale, float* s)
    {
        ushort* k0 = k, k1 = k + stride, k2 = k1 + stride, k3 = k2 + stride;
        Vector512<float> w0 = default, w1 = default, w2 = default, w3 = default;
        int i = 0;
        for (; i <= n - 16; i += 16)
        {
            var qv = Vector512.Load(q + i);
            w0 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k0 + i), w0);
            w1 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k1 + i), w1);
            w2 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k2 + i), w2);
            w3 = Avx512F.FusedMultiplyAdd(qv, LoadHalfRaw512(k3 + i), w3);
        }
        Vector256<float> a0 = w0.GetLower(), a1 = w1.GetLower(), a2 = w2.GetLower(), a3 = w3.GetLower();
        if (i <= n - 8)
        {
            var qa = Avx.LoadVector256(q + i);
            a0 = Fma.MultiplyAdd(qa, LoadHalfRaw(k0 + i), a0);
            a1 = Fma.MultiplyAdd(qa, LoadHalfRaw(k1 + i), a1);
            a2 = Fma.MultiplyAdd(qa, LoadHalfRaw(k2 + i), a2);
            a3 = Fma.MultiplyAdd(qa, LoadHalfRaw(k3 + i), a3);
        }
        s[0] = Vector256.Sum(a0 + w0.GetUpper()) * scale;
        s[1] = Vector256.Sum(a1 + w1.GetUpper()) * scale;
        s[2] = Vector256.Sum(a2 + w2.GetUpper()) * scale;
        s[3] = Vector256.Sum(a3 + w3.GetUpper()) * scale;
    }

    // AccumulatePVHalf32 over 64 columns in four 512-bit registers: each column's FMAs in the same key order.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AccumulatePVHalf64x512(float* p, int n, ushort* v, long stride, float* acc)
    {
        var r0 = Vector512.Load(acc); var r1 = Vector512.Load(acc + 16);
        var r2 = Vector512.Load(acc + 32); var r3 = Vector512.Load(acc + 48);
        for (int j = 0; j < n; j++)
        {
            float pj = p[j];
            if (pj == 0f) continue;
            var pv = Vector512.Create(pj * Two112);
            ushort* vr = v + j * stride;
            r0 = Avx512F.FusedMultiplyAdd(pv, LoadHalfRaw512(vr), r0);
            r1 = Avx512F.FusedMultiplyAdd(pv, LoadHalfRaw512(vr + 16), r1);
            r2 = Avx512F.FusedMultiplyAdd(pv, LoadHalfRaw512(vr + 32), r2);
            r3 = Avx512F.FusedMultiplyAdd(pv, LoadHalfRaw512(vr + 48), r3);
        }
        r0.Store(acc); r1.Store(acc + 16); r2.Store(acc + 32); r3.Store(acc + 48);
    }

    // s[0..4) = scale · (q' · raw(k_j)) for four half-precision key rows (q' = q·2¹¹²), 8 lanes per step in two accumulators.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DotHalf4(float* q, ushort* k, long stride, int n, float scale, float* s)
    {
        ushort* k0 = k, k1 = k + stride, k2 = k1 + stride, k3 = k2 + stride;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        int i = 0;
        for (; i <= n - 16; i += 16)
        {
            var qa = Avx.LoadVector256(q + i);
            var qb = Avx.LoadVector256(q + i + 8);
            a0 = Fma.MultiplyAdd(qa, LoadHalfRaw(k0 + i), a0);
            b0 = Fma.MultiplyAdd(qb, LoadHalfRaw(k0 + i + 8), b0);
            a1 = Fma.MultiplyAdd(qa, LoadHalfRaw(k1 + i), a1);
            b1 = Fma.MultiplyAdd(qb, LoadHalfRaw(k1 + i + 8), b1);
            a2 = Fma.MultiplyAdd(qa, LoadHalfRaw(k2 + i), a2);
            b2 = Fma.MultiplyAdd(qb, LoadHalfRaw(k2 + i + 8), b2);
            a3 = Fma.MultiplyAdd(qa, LoadHalfRaw(k3 + i), a3);
            b3 = Fma.MultiplyAdd(qb, LoadHalfRaw(k3 + i + 8), b3);
        }
        if (i <= n - 8)
        {
            var qa = Avx.LoadVector256(q + i);
            a0 = Fma.MultiplyAdd(qa, LoadHalfRaw(k0 + i), a0);
            a1 = Fma.MultiplyAdd(qa, LoadHalfRaw(k1 + i), a1);
            a2 = Fma.MultiplyAdd(qa, LoadHalfRaw(k2 + i), a2);
            a3 = Fma.MultiplyAdd(qa, LoadHalfRaw(k3 + i), a3);
        }
        s[0] = Vector256.Sum(a0 + b0) * scale;
        s[1] = Vector256.Sum(a1 + b1) * scale;
        s[2] = Vector256.Sum(a2 + b2) * scale;
        s[3] = Vector256.Sum(a3 + b3) * scale;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchHalfRows(ushort* p, long stride, int rows, int width, ushort* end)
    {
        for (int r = 0; r < rows; r++, p += stride)
        {
            if (p >= end) return;
            for (int i = 0; i < width; i += 32) Sse.Prefetch0(p + i);
        }
    }

    /// <summary>Keys ahead that <see cref="RowKernel.InterleavedPrefetch"/> prefetches.</summary>
    internal static int PrefetchKeys = 8;

    /// <summary>
    /// Keys ahead that the f16 per-head decode kernel prefetches: 16 rows of 64 halves are the 2 KiB
    /// <see cref="PrefetchKeys"/> f32 rows are (at 545 positions of the small model's cache, 5–10 % faster than 8 keys).
    /// </summary>
    internal static int PrefetchHalfKeys = 16;

    /// <summary>Whether the prefetching kernel fetches a block's V rows during its K pass (else a few keys ahead in P·V).</summary>
    internal static bool PrefetchVWithK;

    // Prefetches the 64-byte lines of <rows> rows of <width> floats from p (stride floats apart), none at or past end.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchRows(float* p, long stride, int rows, int width, float* end)
    {
        for (int r = 0; r < rows; r++, p += stride)
        {
            if (p >= end) return;
            for (int i = 0; i < width; i += 16) Sse.Prefetch0(p + i);
        }
    }

    // acc[0..64) += p_j · v_j[0..64) over the block's keys with p_j ≠ 0, in key order (Axpy's FMA per element), the 64
    // outputs held in eight registers.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AccumulatePV64(float* p, int n, float* v, long stride, float* acc, int prefetch, float* vEnd)
    {
        var r0 = Avx.LoadVector256(acc); var r1 = Avx.LoadVector256(acc + 8);
        var r2 = Avx.LoadVector256(acc + 16); var r3 = Avx.LoadVector256(acc + 24);
        var r4 = Avx.LoadVector256(acc + 32); var r5 = Avx.LoadVector256(acc + 40);
        var r6 = Avx.LoadVector256(acc + 48); var r7 = Avx.LoadVector256(acc + 56);
        for (int j = 0; j < n; j++)
        {
            if (prefetch > 0) PrefetchRows(v + (j + prefetch) * stride, stride, 1, 64, vEnd);
            float pj = p[j];
            if (pj == 0f) continue;
            var pv = Vector256.Create(pj);
            float* vr = v + j * stride;
            r0 = Fma.MultiplyAdd(pv, Avx.LoadVector256(vr), r0);
            r1 = Fma.MultiplyAdd(pv, Avx.LoadVector256(vr + 8), r1);
            r2 = Fma.MultiplyAdd(pv, Avx.LoadVector256(vr + 16), r2);
            r3 = Fma.MultiplyAdd(pv, Avx.LoadVector256(vr + 24), r3);
            r4 = Fma.MultiplyAdd(pv, Avx.LoadVector256(vr + 32), r4);
            r5 = Fma.MultiplyAdd(pv, Avx.LoadVector256(vr + 40), r5);
            r6 = Fma.MultiplyAdd(pv, Avx.LoadVector256(vr + 48), r6);
            r7 = Fma.MultiplyAdd(pv, Avx.LoadVector256(vr + 56), r7);
        }
        r0.Store(acc); r1.Store(acc + 8); r2.Store(acc + 16); r3.Store(acc + 24);
        r4.Store(acc + 32); r5.Store(acc + 40); r6.Store(acc + 48); r7.Store(acc + 56);
    }

    /// <summary>Rows (query position × head of a GQA group) a prefill block holds; S for them is rows × 64 floats.</summary>
    public const int BlockRows = 32;

    /// <summary>Query positions per <see cref="AttendBlock"/> call for a group of <paramref name="groupHeads"/> heads.</summary>
    public static int QueriesPerBlock(int groupHeads)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(groupHeads);
        return Math.Max(1, RowsPerBlock / groupHeads);
    }

    /// <summary>Rows per prefill block actually used (a switch for A/B runs of the kernel bench; 32 or 64).</summary>
    internal static int RowsPerBlock = BlockRows;

    /// <summary>Floats of per-worker scratch <see cref="AttendBlock"/> needs.</summary>
    public static int PrefillScratchFloats(int groupHeads, int headDim)
    {
        CheckHeads(groupHeads, headDim);
        int rows = QueriesPerBlock(groupHeads) * groupHeads, rp = (rows + 7) & ~7;
        return rp * (2 * headDim + 3 + BlockKeys) + 32;
    }

    /// <summary>
    /// Flash-style prefill over query positions [<paramref name="t0"/>, <paramref name="t1"/>) and the
    /// <paramref name="groupHeads"/> heads of one GQA group, as rows (position, head) × blocks of 64 keys. Scores are
    /// kept keys-major (Sᵀ[key][row], from Qᵀ and K rows read in place), so masking, the running max/sum of the online
    /// softmax and exp are all vertical vector operations, and P·V broadcasts Sᵀ entries. Query t (absolute position
    /// <paramref name="past"/>+t) of head g is at q + t·qStride + g·headDim, output likewise in <paramref name="o"/>;
    /// keys/values j at k/v + j·kvStride. Causal: query i sees keys ≤ i, plus keys below <paramref name="prefixLen"/>
    /// when i &lt; prefixLen; <paramref name="mask"/>[j] == 0 drops key j; a row that sees no key gets zeros.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AttendBlock(float* q, long qStride, int t0, int t1, int groupHeads, int headDim,
        float* k, float* v, long kvStride, int keys, float* mask, bool causal, int past, int prefixLen, float scale,
        float* o, float* scratch)
    {
        CheckBlock(q, qStride, t0, t1, groupHeads, headDim, k, v, kvStride, keys, qStride, o, scratch);
        ArgumentOutOfRangeException.ThrowIfNegative(past);
        ArgumentOutOfRangeException.ThrowIfNegative(prefixLen);
        // A causal query at absolute position past + t needs its own key: the keys must reach past + t1.
        if (causal && t1 > t0 && (long)past + t1 > keys)
            throw new ArgumentOutOfRangeException(nameof(keys), keys, $"{keys} keys but causal queries reach position {past + t1 - 1} (past {past} + t1 {t1} − 1)");
        int G = groupHeads, hd = headDim, rows = (t1 - t0) * G;
        if (rows <= 0) return;
        int rp = (rows + 7) & ~7;
        float* QT = (float*)(((nint)scratch + 63) & ~(nint)63); // [hd][rp]
        float* A = QT + hd * rp;      // [rows][hd]
        float* M = A + rp * hd;       // [rp] running max
        float* L = M + rp;            // [rp] running sum
        float* E = L + rp;            // [rp] visible keys per row (as float)
        float* ST = E + rp;           // [64][rp]
        new Span<float>(QT, hd * rp).Clear();
        for (int r = 0; r < rows; r++)
        {
            float* src = q + (t0 + r / G) * qStride + (r % G) * hd;
            for (int i = 0; i < hd; i++) QT[i * rp + r] = src[i] * scale;
        }
        for (int r = 0; r < rp; r++)
        {
            M[r] = float.NegativeInfinity; L[r] = 0;
            E[r] = r < rows ? End(t0 + r / G, keys, causal, past, prefixLen) : 0;
        }
        new Span<float>(A, rows * hd).Clear();
        int maxEnd = 0;
        for (int t = t0; t < t1; t++) maxEnd = Math.Max(maxEnd, End(t, keys, causal, past, prefixLen));
        int minEnd = End(t0, keys, causal, past, prefixLen);
        for (int j0 = 0; j0 < maxEnd; j0 += BlockKeys)
        {
            int jn = Math.Min(BlockKeys, maxEnd - j0);
            ScoresT(QT, rp, hd, k + j0 * kvStride, kvStride, jn, ST);
            // drop masked keys and, for rows whose visible range ends inside this block, the keys past it
            bool partial = j0 + jn > minEnd;
            for (int jj = 0; jj < jn; jj++)
            {
                float* row = ST + jj * rp;
                if (mask != null && mask[j0 + jj] == 0f) new Span<float>(row, rp).Fill(float.NegativeInfinity);
                else if (partial) MaskBeyond(row, E, rp, j0 + jj);
            }
            OnlineSoftmax(ST, jn, rp, M, L, A, rows, hd);
            AccumulatePVT(ST, rp, rows, jn, v + j0 * kvStride, kvStride, hd, A);
        }
        for (int r = 0; r < rows; r++)
        {
            float* dst = o + (t0 + r / G) * qStride + (r % G) * hd;
            float* ar = A + r * hd;
            if (L[r] > 0) { float inv = 1f / L[r]; for (int i = 0; i < hd; i++) dst[i] = ar[i] * inv; }
            else new Span<float>(dst, hd).Clear();
        }
    }

    /// <summary>Most keys <see cref="AttendDirect"/> takes (its scores block is <see cref="DirectRows"/> × keys floats).</summary>
    public const int DirectMaxKeys = 512;

    /// <summary>Query rows per scores block of <see cref="AttendDirect"/>: 8 register tiles of <see cref="Gemm.MR"/> rows.</summary>
    public const int DirectRows = 8 * Gemm.MR;

    /// <summary>Fewest query rows a split <see cref="AttendDirect"/> unit takes: each unit packs K and V again, which
    /// costs about as much as a few rows of Q·Kᵀ and P·V.</summary>
    public const int DirectMinUnitRows = 4 * Gemm.MR;

    /// <summary>
    /// Query rows per <see cref="AttendDirect"/> work unit when <paramref name="groups"/> (batch rows × kv heads) units of
    /// <paramref name="queries"/> rows each are shared by <paramref name="workers"/> threads: all of them while there are
    /// at least four units per worker (BERT-base at batch 1 has 12 on 2 workers), else blocks of whole register tiles,
    /// at least <see cref="DirectMinUnitRows"/>, so that about four units per worker keep a bigger machine busy. Each
    /// query row's result does not depend on how the rows are split.
    /// </summary>
    public static int DirectQueriesPerUnit(int queries, int groups, int workers)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(queries);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(groups);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(workers);
        long want = 4L * workers;
        if (workers == 1 || groups >= want || queries <= DirectMinUnitRows) return Math.Max(queries, 1);
        int chunks = (int)((want + groups - 1) / groups);
        int rows = (queries + chunks - 1) / chunks;
        rows = (rows + Gemm.MR - 1) / Gemm.MR * Gemm.MR;
        return Math.Min(queries, Math.Max(rows, DirectMinUnitRows));
    }

    /// <summary>Floats of per-worker scratch <see cref="AttendDirect"/> needs for heads of <paramref name="headDim"/>.</summary>
    public static int DirectScratchFloats(int headDim)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        int nr = Gemm.PanelWidth, kPad = DirectMaxKeys, hPad = (headDim + nr - 1) / nr * nr;
        return kPad * headDim + hPad * DirectMaxKeys + DirectRows * kPad + DirectRows * hPad + Gemm.MR * 32 + DirectRows + 6 * 16;
    }

    /// <summary>
    /// Bidirectional attention for short sequences (at most <see cref="DirectMaxKeys"/> keys) with the scores
    /// materialized, as BERT-style encoders need: K and V of the group's kv head are packed once into GEMM panels,
    /// then per query head and block of <see cref="DirectRows"/> queries S = Q·Kᵀ and O = P·V run on the GEMM register
    /// tile, with a two-pass softmax in between (no online rescaling). Queries [<paramref name="t0"/>,
    /// <paramref name="t1"/>), layout as in <see cref="AttendBlock"/> except that the output rows are
    /// <paramref name="oStride"/> apart (q, k and v may then be column slices of one fused projection);
    /// <paramref name="mask"/>[j] == 0 drops key j; a row that sees no key gets zeros.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AttendDirect(float* q, long qStride, int t0, int t1, int groupHeads, int headDim,
        float* k, float* v, long kvStride, int keys, float* mask, float scale, float* o, long oStride, float* scratch)
    {
        if (keys > DirectMaxKeys || keys < 0)
            throw new ArgumentOutOfRangeException(nameof(keys), $"{keys} keys: the direct path takes 0..{DirectMaxKeys}");
        CheckBlock(q, qStride, t0, t1, groupHeads, headDim, k, v, kvStride, keys, oStride, o, scratch);
        int hd = headDim, nr = Gemm.PanelWidth;
        if (t1 <= t0) return;
        int kPad = (keys + nr - 1) / nr * nr, hPad = (hd + nr - 1) / nr * nr;
        float* Kp = (float*)(((nint)scratch + 63) & ~(nint)63); // [kPad/nr] panels of [hd][nr]
        float* Vp = Kp + kPad * hd;                              // [hPad/nr] panels of [keys][nr]
        float* S = Vp + hPad * keys;                             // [DirectRows][kPad]
        float* Ob = S + DirectRows * kPad;                       // [DirectRows][hPad]
        float* tile = Ob + DirectRows * hPad;                    // [MR][nr]
        float* L = tile + Gemm.MR * 32;                          // [DirectRows] 1/sum
        for (int j0 = 0; j0 < keys; j0 += nr)
            Gemm.PackRowsPanel(k + j0 * kvStride, (int)kvStride, Math.Min(nr, keys - j0), hd, Kp + (long)j0 * hd);
        // The softmax scale goes into K once, and a mask that drops nothing is not consulted per score.
        VecMath.ScaleShift(Kp, scale, 0f, Kp, (long)kPad * hd);
        if (mask != null)
        {
            bool any = false;
            for (int j = 0; j < keys && !any; j++) any = mask[j] == 0f;
            if (!any) mask = null;
        }
        for (int c0 = 0; c0 < hd; c0 += nr)
        {
            int nc = Math.Min(nr, hd - c0);
            float* panel = Vp + (long)c0 * keys;
            // A full panel is a straight copy of nr floats per key (16, or 32 with AVX-512's zmm panels); a partial
            // last panel (hd = 80 on zmm panels: 64 + 16) is zero-padded to the panel's row stride of nr.
            if (nc == nr && nr % 8 == 0 && Vector256.IsHardwareAccelerated)
                for (int j = 0; j < keys; j++)
                {
                    float* src = v + j * kvStride + c0, dst = panel + j * nr;
                    for (int c = 0; c < nr; c += 8) Vector256.Load(src + c).Store(dst + c);
                }
            else
                for (int j = 0; j < keys; j++)
                {
                    float* src = v + j * kvStride + c0, dst = panel + j * nr;
                    int c = 0;
                    for (; c < nc; c++) dst[c] = src[c];
                    for (; c < nr; c++) dst[c] = 0f;
                }
        }
        for (int g = 0; g < groupHeads; g++)
            for (int b0 = t0; b0 < t1; b0 += DirectRows)
            {
                int rows = Math.Min(DirectRows, t1 - b0);
                float* qg = q + b0 * qStride + g * hd;
                // S = Q·Kᵀ, one 6-row tile × one key panel at a time.
                for (int r0 = 0; r0 < rows; r0 += Gemm.MR)
                {
                    int mr = Math.Min(Gemm.MR, rows - r0);
                    for (int j0 = 0; j0 < keys; j0 += nr)
                        Gemm.MicroTile(qg + r0 * qStride, (int)qStride, mr, Kp + (long)j0 * hd, hd, S + r0 * kPad + j0, kPad, nr, tile);
                }
                for (int r = 0; r < rows; r++) L[r] = SoftmaxRow(S + r * kPad, keys, mask);
                // O = P·V over the visible keys (dropped ones have P = 0).
                for (int r0 = 0; r0 < rows; r0 += Gemm.MR)
                {
                    int mr = Math.Min(Gemm.MR, rows - r0);
                    for (int c0 = 0; c0 < hd; c0 += nr)
                        Gemm.MicroTile(S + r0 * kPad, kPad, mr, Vp + (long)c0 * keys, keys, Ob + r0 * hPad + c0, hPad, nr, tile);
                }
                for (int r = 0; r < rows; r++)
                {
                    float* dst = o + (b0 + r) * oStride + g * hd, src = Ob + r * hPad;
                    float inv = L[r];
                    int i = 0;
                    if (Vector256.IsHardwareAccelerated)
                        for (var iv = Vector256.Create(inv); i + 8 <= hd; i += 8) (Vector256.Load(src + i) * iv).Store(dst + i);
                    for (; i < hd; i++) dst[i] = src[i] * inv;
                }
            }
    }

    // AttendRow's arguments: positive group shape, end ≥ 0, key rows that do not overlap, buffers where they are read.
    private static void CheckRow(float* q, int groupHeads, int headDim, float* k, float* v, long stride, int end, float* o)
    {
        CheckHeads(groupHeads, headDim);
        ArgumentOutOfRangeException.ThrowIfNegative(end);
        KernelArgs.Stride(stride, headDim, "one key row holds headDim floats");
        KernelArgs.NotNull(q, true);
        KernelArgs.NotNull(o, true);
        KernelArgs.NotNull(k, end > 0);
        KernelArgs.NotNull(v, end > 0);
    }

    // AttendBlock's and AttendDirect's shared arguments: queries 0 ≤ t0 ≤ t1 whose rows hold the group's heads, keys ≥ 0
    // whose rows hold one head, buffers where they are read or written.
    private static void CheckBlock(float* q, long qStride, int t0, int t1, int groupHeads, int headDim, float* k, float* v,
        long kvStride, int keys, long oStride, float* o, float* scratch)
    {
        CheckHeads(groupHeads, headDim);
        KernelArgs.Range(t0, t1);
        ArgumentOutOfRangeException.ThrowIfNegative(keys);
        KernelArgs.Stride(qStride, (long)groupHeads * headDim, "a query row holds the group's heads");
        KernelArgs.Stride(oStride, (long)groupHeads * headDim, "an output row holds the group's heads");
        KernelArgs.Stride(kvStride, headDim, "a key row holds headDim floats");
        bool any = t1 > t0;
        KernelArgs.NotNull(q, any);
        KernelArgs.NotNull(o, any);
        KernelArgs.NotNull(scratch, any);
        KernelArgs.NotNull(k, any && keys > 0);
        KernelArgs.NotNull(v, any && keys > 0);
    }

    // s[j] ← exp(s[j] − max) over the visible keys (0 for dropped ones); returns 1/Σ, or 0 when no key is visible.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float SoftmaxRow(float* s, int n, float* mask)
    {
        float mx = float.NegativeInfinity;
        int j = 0;
        var ninf = Vector256.Create(float.NegativeInfinity);
        if (Vector256.IsHardwareAccelerated)
        {
            var vm = ninf;
            if (mask == null)
                for (; j + 8 <= n; j += 8) vm = Vector256.Max(vm, Vector256.Load(s + j));
            else
                for (; j + 8 <= n; j += 8)
                {
                    var x = Vector256.ConditionalSelect(Vector256.Equals(Vector256.Load(mask + j), Vector256<float>.Zero), ninf, Vector256.Load(s + j));
                    x.Store(s + j);
                    vm = Vector256.Max(vm, x);
                }
            mx = MaxAcross(vm);
        }
        for (; j < n; j++)
        {
            if (mask != null && mask[j] == 0f) s[j] = float.NegativeInfinity;
            if (s[j] > mx) mx = s[j];
        }
        if (mx == float.NegativeInfinity) { new Span<float>(s, n).Clear(); return 0f; }
        float sum = 0;
        j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var m = Vector256.Create(mx);
            var vs0 = Vector256<float>.Zero;
            // (dropped keys hold −∞ only when there is a mask; without one the select is skipped)
            var keep = mask == null ? Vector256<float>.AllBitsSet : Vector256<float>.Zero;
            for (; j + 8 <= n; j += 8)
            {
                var x = Vector256.Load(s + j);
                var e = VecMath.Exp(x - m) & (keep | ~Vector256.Equals(x, ninf));
                e.Store(s + j);
                vs0 += e;
            }
            sum = Vector256.Sum(vs0);
        }
        for (; j < n; j++)
        {
            float e = s[j] == float.NegativeInfinity ? 0f : MathF.Exp(s[j] - mx);
            s[j] = e;
            sum += e;
        }
        return 1f / sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float MaxAcross(Vector256<float> v)
    {
        var m = Vector128.Max(v.GetLower(), v.GetUpper());
        float r = m[0];
        for (int i = 1; i < 4; i++) r = Math.Max(r, m[i]);
        return r;
    }

    // Keys [0, end) a query at position past+t may see.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int End(int t, int keys, bool causal, int past, int prefixLen)
    {
        if (!causal) return keys;
        int qpos = past + t, end = qpos + 1;
        if (qpos < prefixLen) end = Math.Max(end, prefixLen);
        return Math.Min(end, keys);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Madd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : a * b + c;

    // row[r] = −∞ where key j is at or past row r's visible end E[r].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MaskBeyond(float* row, float* E, int rp, int j)
    {
        int r = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var jv = Vector256.Create((float)j);
            var ninf = Vector256.Create(float.NegativeInfinity);
            for (; r < rp; r += 8)
                Vector256.ConditionalSelect(Vector256.LessThanOrEqual(Vector256.Load(E + r), jv), ninf, Vector256.Load(row + r)).Store(row + r);
        }
        for (; r < rp; r++) if (E[r] <= j) row[r] = float.NegativeInfinity;
    }

    // ST[jj][r] = Σ_p QT[p][r]·k[jj][p] for jj < jn: four keys × sixteen rows per register tile.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoresT(float* QT, int rp, int hd, float* k, long stride, int jn, float* ST)
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            for (int jj = 0; jj < jn; jj++)
                for (int r = 0; r < rp; r++)
                {
                    float s = 0;
                    for (int p = 0; p < hd; p++) s += QT[p * rp + r] * k[jj * stride + p];
                    ST[jj * rp + r] = s;
                }
            return;
        }
        for (int r0 = 0; r0 < rp; r0 += 16)
        {
            bool two = r0 + 8 < rp;
            float* qt = QT + r0;
            for (int jj = 0; jj < jn; jj += 4)
            {
                int last = jn - 1;
                float* k0 = k + jj * stride, k1 = k + Math.Min(jj + 1, last) * stride,
                    k2 = k + Math.Min(jj + 2, last) * stride, k3 = k + Math.Min(jj + 3, last) * stride;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
                float* qp = qt;
                if (two)
                    for (int p = 0; p < hd; p++, qp += rp)
                    {
                        var x = Vector256.Load(qp); var y = Vector256.Load(qp + 8);
                        var c = Vector256.Create(k0[p]); a0 = Madd(c, x, a0); b0 = Madd(c, y, b0);
                        c = Vector256.Create(k1[p]); a1 = Madd(c, x, a1); b1 = Madd(c, y, b1);
                        c = Vector256.Create(k2[p]); a2 = Madd(c, x, a2); b2 = Madd(c, y, b2);
                        c = Vector256.Create(k3[p]); a3 = Madd(c, x, a3); b3 = Madd(c, y, b3);
                    }
                else
                    for (int p = 0; p < hd; p++, qp += rp)
                    {
                        var x = Vector256.Load(qp);
                        a0 = Madd(Vector256.Create(k0[p]), x, a0); a1 = Madd(Vector256.Create(k1[p]), x, a1);
                        a2 = Madd(Vector256.Create(k2[p]), x, a2); a3 = Madd(Vector256.Create(k3[p]), x, a3);
                    }
                float* st = ST + jj * rp + r0;
                a0.Store(st); if (two) b0.Store(st + 8);
                if (jj + 1 < jn) { a1.Store(st + rp); if (two) b1.Store(st + rp + 8); }
                if (jj + 2 < jn) { a2.Store(st + 2 * rp); if (two) b2.Store(st + 2 * rp + 8); }
                if (jj + 3 < jn) { a3.Store(st + 3 * rp); if (two) b3.Store(st + 3 * rp + 8); }
            }
        }
    }

    // One online-softmax step over the key block: per row, new max, rescale of the running sum and accumulator, and
    // ST replaced by exp(S − max) (exactly 0 for dropped keys and for rows that see none of the block).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void OnlineSoftmax(float* ST, int jn, int rp, float* M, float* L, float* A, int rows, int hd)
    {
        float* corr = stackalloc float[rp];
        int r = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var ninf = Vector256.Create(float.NegativeInfinity);
            for (; r < rp; r += 8)
            {
                var mx = ninf;
                for (int jj = 0; jj < jn; jj++) mx = Vector256.Max(mx, Vector256.Load(ST + jj * rp + r));
                var mold = Vector256.Load(M + r);
                var mnew = Vector256.Max(mold, mx);
                var none = Vector256.Equals(mnew, ninf);
                var shift = Vector256.ConditionalSelect(none, Vector256<float>.Zero, mnew);
                var c = Vector256.ConditionalSelect(Vector256.Equals(mold, ninf), Vector256<float>.Zero, VecMath.Exp(mold - shift));
                var sum = Vector256<float>.Zero;
                for (int jj = 0; jj < jn; jj++)
                {
                    float* sp = ST + jj * rp + r;
                    var x = Vector256.Load(sp);
                    var e = Vector256.ConditionalSelect(Vector256.Equals(x, ninf), Vector256<float>.Zero, VecMath.Exp(x - shift));
                    e.Store(sp);
                    sum += e;
                }
                (Vector256.Load(L + r) * c + sum).Store(L + r);
                mnew.Store(M + r);
                c.Store(corr + r);
            }
        }
        for (; r < rp; r++)
        {
            float mx = float.NegativeInfinity;
            for (int jj = 0; jj < jn; jj++) mx = Math.Max(mx, ST[jj * rp + r]);
            float mold = M[r], mnew = Math.Max(mold, mx);
            float shift = mnew == float.NegativeInfinity ? 0f : mnew;
            float c = mold == float.NegativeInfinity ? 0f : MathF.Exp(mold - shift);
            float sum = 0;
            for (int jj = 0; jj < jn; jj++)
            {
                float x = ST[jj * rp + r];
                float e = x == float.NegativeInfinity ? 0f : MathF.Exp(x - shift);
                ST[jj * rp + r] = e;
                sum += e;
            }
            L[r] = L[r] * c + sum;
            M[r] = mnew;
            corr[r] = c;
        }
        for (r = 0; r < rows; r++)
            if (corr[r] != 1f) Scale(A + r * hd, corr[r], hd);
    }

    // A[r] += Σ_jj ST[jj][r]·V[jj] for jj < jn: two rows × 32 channels per register tile.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulatePVT(float* ST, int rp, int rows, int jn, float* v, long stride, int hd, float* A)
    {
        int c0 = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; c0 + 32 <= hd; c0 += 32)
                for (int r = 0; r < rows; r += 2)
                {
                    bool two = r + 1 < rows;
                    float* x0 = A + r * hd + c0, x1 = two ? x0 + hd : x0;
                    float* p0 = ST + r, p1 = two ? p0 + 1 : p0;
                    var a0 = Vector256.Load(x0); var a1 = Vector256.Load(x0 + 8); var a2 = Vector256.Load(x0 + 16); var a3 = Vector256.Load(x0 + 24);
                    var b0 = Vector256.Load(x1); var b1 = Vector256.Load(x1 + 8); var b2 = Vector256.Load(x1 + 16); var b3 = Vector256.Load(x1 + 24);
                    float* vj = v + c0;
                    for (int jj = 0; jj < jn; jj++, vj += stride, p0 += rp, p1 += rp)
                    {
                        var v0 = Vector256.Load(vj); var v1 = Vector256.Load(vj + 8); var v2 = Vector256.Load(vj + 16); var v3 = Vector256.Load(vj + 24);
                        var x = Vector256.Create(*p0);
                        a0 = Madd(x, v0, a0); a1 = Madd(x, v1, a1); a2 = Madd(x, v2, a2); a3 = Madd(x, v3, a3);
                        var y = Vector256.Create(*p1);
                        b0 = Madd(y, v0, b0); b1 = Madd(y, v1, b1); b2 = Madd(y, v2, b2); b3 = Madd(y, v3, b3);
                    }
                    a0.Store(x0); a1.Store(x0 + 8); a2.Store(x0 + 16); a3.Store(x0 + 24);
                    if (two) { b0.Store(x1); b1.Store(x1 + 8); b2.Store(x1 + 16); b3.Store(x1 + 24); }
                }
            for (; c0 + 8 <= hd; c0 += 8)
                for (int r = 0; r < rows; r++)
                {
                    float* x0 = A + r * hd + c0, p0 = ST + r;
                    var a0 = Vector256.Load(x0);
                    float* vj = v + c0;
                    for (int jj = 0; jj < jn; jj++, vj += stride, p0 += rp) a0 = Madd(Vector256.Create(*p0), Vector256.Load(vj), a0);
                    a0.Store(x0);
                }
        }
        for (int r = 0; r < rows; r++)
        {
            float* x0 = A + r * hd;
            for (int jj = 0; jj < jn; jj++)
            {
                float pj = ST[jj * rp + r];
                float* vj = v + jj * stride;
                for (int c = c0; c < hd; c++) x0[c] += pj * vj[c];
            }
        }
    }

    /// <summary>Scalar twin of <see cref="AttendRow"/>: materialized scores, two-pass softmax in double.</summary>
    public static void AttendRowReference(float* q, int groupHeads, int headDim, float* k, float* v, long stride, int end,
        float* mask, float scale, float* o)
    {
        CheckRow(q, groupHeads, headDim, k, v, stride, end, o);
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
