// int8 prefill GEMM in the broadcast layout (issue #8). The dot-product layout of the former QuantKernels.GemmInt8 (removed)
// spends a vpsignb per (activation row, weight row, block) to feed signed × signed bytes to vpmaddubsw, and that sign
// step was its bottleneck. Here each call first repacks its weight rows, once, into a scratch panel where the sign
// problem disappears and no horizontal reduction is needed:
//   - every int8 weight is split into two unsigned nibble planes, w = 16·h + l − 128 with h = (w >> 4) + 8 and
//     l = w & 15 (both 0..15), so vpmaddubsw takes the plane (unsigned) against the activation bytes (signed) directly;
//   - 8 output rows are interleaved: one 32-byte vector holds 4 consecutive k values (a "quad") for each of the 8 rows,
//     so the kernel broadcasts 4 activation bytes per activation row (vpbroadcastd) against the vector and each int16
//     pair of the product belongs to one output row.
// Per activation row, block of 32 k and 8 weight rows: 8 broadcasts, 16 vpmaddubsw and 16 int16 adds (|pair| ≤
// 2·15·127 = 3810, eight quads ≤ 30480: no saturation), then two vpmaddwd (by 16 and by 1) recombine the planes into
// the 8 rows' int32 block sums, one convert, one FMS for dx_b·Σ − 128·Σx_b (Σx_b·dx_b is the group sum the activation
// quantizer already stores, the group being the block) and one FMA by the 8 rows' scales. Results are those of
// QuantKernels.GemvIntegerReference on the same quantized activations up to float rounding.
// Asymmetric int8 (the default `--weight-format int8` export: unsigned q with a zero point z per group, per channel by
// default) and symmetric weights with groups longer than one block take the same tiles: the planes are q = 16·h + l
// directly (symmetric: w + 128), no per-block correction, and the zero-point term Σ_g s_g·z_g·Σx_g (z = 128 when
// symmetric) initializes each 8-row accumulator instead of zero (Σx_g is the quantizer's group sum). Groups of one block
// multiply dx_b·Σ by the block's scale as Q8_0 does; longer groups repeat the group scale per block; per channel
// (one group) accumulates dx_b·Σ alone and multiplies by the row's scale once, when the result is stored.
// With AVX-VNNI (session 9, RunVnni) the nibble split is unnecessary: vpdpbusd multiplies unsigned by signed bytes into
// int32 lanes (4 products each, no int16 saturation), so the panel holds one plane of the unsigned bytes (w + 128 or q)
// and a 4 × 16 tile does one vpdpbusd per activation row, k-quad and 8 weight rows: a quarter of the AVX2 tile's
// integer instructions. The int32 block sums are the same integers, so the results are bit-identical to the nibble path.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>
/// Prefill GEMM for int8 weights — symmetric Q8_0 and the asymmetric per-channel / grouped exports, any group length
/// that is a multiple of 32 — against int8 activations quantized in the decode layout: weight rows repacked per call
/// into interleaved nibble planes (AVX2 + FMA) or one unsigned plane (AVX-VNNI), see the file header.
/// </summary>
public static unsafe class QuantGemmInt8
{
    /// <summary>Weight rows one pass repacks at once (two interleaved groups of 8): the unit the executor hands out.</summary>
    public const int Rows = 16;

    private const int Interleave = 8;                       // output rows per weight vector
    private const int Block = QuantKernels.Block;           // 32 k per block (= group)
    private const int BlockBytes = Interleave * Block * 2;  // one block of 8 rows in both planes: 512 bytes
    private const int MR = 4;                               // activation rows per register tile
    private const int RowChunk = 64;                        // activation rows whose float accumulators live in scratch
    private const int KcBlocks = 16;                        // blocks per pass over a row chunk (8 KiB of panel per group)

    /// <summary>
    /// True when <paramref name="w"/> can use <see cref="Gemm"/>: int8 (either symmetry) with groups of a multiple of 32
    /// values (per channel included), AVX2+FMA.
    /// </summary>
    public static bool Fits(in QuantMatrix w) =>
        !w.Int4 && w.K % Block == 0 && w.GroupLength % Block == 0 && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// Scratch floats <see cref="Gemm"/> needs for K = <paramref name="k"/>: the panel (2 bytes per weight), its scales,
    /// the zero-point terms, the accumulators and 128·Σx per row chunk.
    /// </summary>
    public static long ScratchFloats(int k) => (long)Rows * k / 2 + 2L * Rows * (k / Block) + (long)(RowChunk + MR) * Rows + (long)RowChunk * (k / Block) + 32;

    // How a tile turns the 8 rows' int32 block sums Σ into acc (see Combine).
    private struct Q8Sym { }        // symmetric groups of one block: acc += s_b·(dx_b·Σ − 128·Σx_b)
    private struct PerBlockScale { } // groups of one or more blocks: acc += s_b·(dx_b·Σ), zero-point term preset in acc
    private struct RowScale { }     // per channel: acc += dx_b·Σ, zero-point term (unscaled) preset, s applied at the store

    /// <summary>
    /// y[i, j] = Σ_k x[i,k]·W[j,k] + b[j] for rows i ∈ [<paramref name="m0"/>, <paramref name="m1"/>) and outputs
    /// j ∈ [<paramref name="n0"/>, <paramref name="n1"/>), with x quantized for <paramref name="w"/> by
    /// <see cref="QuantKernels.QuantizeActivations(in QuantMatrix, float*, int, byte*)"/> into <paramref name="act"/>
    /// (<see cref="QuantKernels.ActivationBytes"/> for <paramref name="m"/> rows). <paramref name="scratch"/> holds
    /// <see cref="ScratchFloats"/> floats; each call repacks its weight rows <see cref="Rows"/> at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemm(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int m0, int m1, int n0, int n1, float* scratch) =>
        GemmOnPath(w, m, act, bias, y, ldy, m0, m1, n0, n1, scratch, UseVnni);

    /// <summary><see cref="Gemm"/> on the path <paramref name="vnni"/> names (tests run both).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void GemmOnPath(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int m0, int m1, int n0, int n1, float* scratch, bool vnni)
    {
        if (vnni && !AvxVnni.IsSupported) throw new NotSupportedException("the VNNI path needs AvxVnni");
        if (!Fits(w)) throw new NotSupportedException($"QuantGemmInt8 needs int8 weights with groups of a multiple of {Block} and AVX2+FMA (group {w.GroupLength}, K {w.K}, int4 = {w.Int4}); check Fits first");
        QuantKernels.CheckGemmArgs(w, m, act, y, ldy, m0, m1, n0, n1, scratch);
        bool work = m1 > m0 && n1 > n0;
        if (!work) return;
        if (vnni)
        {
            if (w.Symmetric && w.GroupLength == Block) RunVnni<Q8Sym>(w, m, act, bias, y, ldy, m0, m1, n0, n1, scratch);
            else if (w.Groups == 1) RunVnni<RowScale>(w, m, act, bias, y, ldy, m0, m1, n0, n1, scratch);
            else RunVnni<PerBlockScale>(w, m, act, bias, y, ldy, m0, m1, n0, n1, scratch);
            return;
        }
        if (w.Symmetric && w.GroupLength == Block) Run<Q8Sym>(w, m, act, bias, y, ldy, m0, m1, n0, n1, scratch);
        else if (w.Groups == 1) Run<RowScale>(w, m, act, bias, y, ldy, m0, m1, n0, n1, scratch);
        else Run<PerBlockScale>(w, m, act, bias, y, ldy, m0, m1, n0, n1, scratch);
    }

    /// <summary>
    /// Whether <see cref="Gemm"/> (and QuantLinearExec, read when its executor is built) takes the AVX-VNNI tiles (one
    /// unsigned byte plane, vpdpbusd) instead of the AVX2 nibble planes: AvxVnni.IsSupported (DOTNET_EnableAVXVNNI=0
    /// turns it off). Settable for in-process A/B benchmarks; tests pass the path to <see cref="GemmOnPath"/>. Both
    /// paths give bit-identical results (the same int32 block sums, the same float steps).
    /// </summary>
    internal static bool UseVnni { get; set; } = AvxVnni.IsSupported;

    private const int VnniBlockBytes = Interleave * Block;   // one block of 8 rows in the single plane: 256 bytes

    // The VNNI path: every 16-row pass packs both 8-row groups into one unsigned plane (u = w + 128 symmetric, q
    // asymmetric; rows past jn repeat the last live row with scale and zero-point term 0) and a tile takes all 16
    // weight rows against MR activation rows: per quad two weight loads, MR broadcasts and 2·MR vpdpbusd into int32
    // block sums (4 products per lane, no saturation: |Σ| ≤ 32·255·128). acc is [row, 16] floats.
    // The scratch layout both paths share: the 64-byte aligned weight panel (Rows·k·2 bytes), then the panel's scales,
    // its zero-point terms [8-row group, group, 8], the accumulator tile [RowChunk + MR, Rows] and 128·xs [RowChunk,
    // blocks] of the current row chunk.
    // (A struct, not out parameters: the callers copy its fields into locals, which stay enregistered.)
    private readonly struct Carved(byte* panel, float* scales, float* zeroTerms, float* acc, float* c128)
    {
        public readonly byte* Panel = panel;
        public readonly float* Scales = scales, ZeroTerms = zeroTerms, Acc = acc, C128 = c128;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Carved CarveScratch(float* scratch, int k, int blocks)
    {
        byte* panel = (byte*)(((nint)scratch + 63) & ~(nint)63);
        float* sc = (float*)(panel + (long)Rows * k * 2);
        float* sz = sc + (long)Rows * blocks;
        float* acc = sz + (long)Rows * blocks;
        return new Carved(panel, sc, sz, acc, acc + (RowChunk + MR) * Rows);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RunVnni<TMode>(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int m0, int m1, int n0, int n1, float* scratch)
        where TMode : struct
    {
        int k = w.K, blocks = k / Block, groups = w.Groups;
        sbyte* xq = (sbyte*)act;
        float* dx = QuantKernels.BlockScales(act, m, k);
        float* xs = dx + (long)m * blocks;
        var carved = CarveScratch(scratch, k, blocks);
        byte* panel = carved.Panel;
        float* sc = carved.Scales, sz = carved.ZeroTerms, acc = carved.Acc, c128 = carved.C128;
        bool q8 = typeof(TMode) == typeof(Q8Sym), rowScale = typeof(TMode) == typeof(RowScale);
        byte* p1 = panel + (long)blocks * VnniBlockBytes;
        float* s1 = sc + (long)blocks * Interleave;
        for (int jc = n0; jc < n1; jc += Rows)
        {
            int jn = Math.Min(Rows, n1 - jc);
            RepackVnni(w, jc, jn, panel, sc, sz, rowScale);
            for (int ic = m0; ic < m1; ic += RowChunk)
            {
                int rows = Math.Min(RowChunk, m1 - ic);
                if (q8) Scale128(xs, ic, rows, blocks, c128);
                if (q8) new Span<float>(acc, (RowChunk + MR) * Rows).Clear();
                else
                {
                    // acc starts at −Σ_g Σx_g·sz_g per 8-row half (the zero points' share of every row's sum)
                    float* z1 = sz + (long)groups * Interleave;
                    for (int t = 0; t < rows; t++)
                    {
                        float* xr = xs + (long)(ic + t) * groups;
                        Vector256<float> a = Vector256<float>.Zero, b = Vector256<float>.Zero;
                        for (int gi = 0; gi < groups; gi++)
                        {
                            var xv = Vector256.Create(xr[gi]);
                            a = Fma.MultiplyAddNegated(xv, Avx.LoadVector256(sz + gi * Interleave), a);
                            b = Fma.MultiplyAddNegated(xv, Avx.LoadVector256(z1 + gi * Interleave), b);
                        }
                        Avx.Store(acc + t * Rows, a);
                        Avx.Store(acc + t * Rows + Interleave, b);
                    }
                    new Span<float>(acc + rows * Rows, MR * Rows).Clear();
                }
                for (int kb = 0; kb < blocks; kb += KcBlocks)
                {
                    int nb = Math.Min(KcBlocks, blocks - kb);
                    for (int t = 0; t < rows; t += MR)
                    {
                        long r0 = ic + t, r1 = ic + Math.Min(t + 1, rows - 1), r2 = ic + Math.Min(t + 2, rows - 1), r3 = ic + Math.Min(t + 3, rows - 1);
                        long o = (long)kb * Block;
                        TileVnni<TMode>(panel + (long)kb * VnniBlockBytes, p1 + (long)kb * VnniBlockBytes, sc + kb * Interleave, s1 + kb * Interleave, nb,
                            xq + r0 * k + o, xq + r1 * k + o, xq + r2 * k + o, xq + r3 * k + o,
                            dx + r0 * blocks + kb, dx + r1 * blocks + kb, dx + r2 * blocks + kb, dx + r3 * blocks + kb,
                            c128 + (r0 - ic) * blocks + kb, c128 + (r1 - ic) * blocks + kb, c128 + (r2 - ic) * blocks + kb, c128 + (r3 - ic) * blocks + kb,
                            acc + t * Rows);
                    }
                }
                for (int t = 0; t < rows; t++)
                {
                    float* yr = y + (long)(ic + t) * ldy + jc;
                    float* ar = acc + t * Rows;
                    for (int c = 0; c < jn; c++)
                    {
                        float v = rowScale ? ar[c] * (c < Interleave ? sc[c] : s1[c - Interleave]) : ar[c];
                        yr[c] = v + (bias != null ? bias[jc + c] : 0f);
                    }
                }
            }
        }
    }

    // MR = 4 activation rows × 16 weight rows (two 8-row halves) over nb blocks; acc [4, 16] floats accumulates. Eight
    // int32 accumulators, two weight vectors and the broadcast: 11 of the 16 registers a VEX vpdpbusd can address.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TileVnni<TMode>(byte* wp0, byte* wp1, float* sp0, float* sp1, int nb, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        float* d0, float* d1, float* d2, float* d3, float* c0, float* c1, float* c2, float* c3, float* acc)
        where TMode : struct
    {
        for (int b = 0; b < nb; b++)
        {
            byte* p = wp0 + b * VnniBlockBytes, q = wp1 + b * VnniBlockBytes;
            int o = b * Block;
            Vector256<int> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
            for (int t = 0; t < 8; t++, o += 4)
            {
                var w0 = Avx.LoadVector256(p + t * 32);
                var w1 = Avx.LoadVector256(q + t * 32);
                var v = Avx.BroadcastScalarToVector256((float*)(x0 + o)).AsSByte();
                a0 = AvxVnni.MultiplyWideningAndAdd(a0, w0, v); b0 = AvxVnni.MultiplyWideningAndAdd(b0, w1, v);
                v = Avx.BroadcastScalarToVector256((float*)(x1 + o)).AsSByte();
                a1 = AvxVnni.MultiplyWideningAndAdd(a1, w0, v); b1 = AvxVnni.MultiplyWideningAndAdd(b1, w1, v);
                v = Avx.BroadcastScalarToVector256((float*)(x2 + o)).AsSByte();
                a2 = AvxVnni.MultiplyWideningAndAdd(a2, w0, v); b2 = AvxVnni.MultiplyWideningAndAdd(b2, w1, v);
                v = Avx.BroadcastScalarToVector256((float*)(x3 + o)).AsSByte();
                a3 = AvxVnni.MultiplyWideningAndAdd(a3, w0, v); b3 = AvxVnni.MultiplyWideningAndAdd(b3, w1, v);
            }
            Vector256<float> s0 = default, s1 = default;
            if (typeof(TMode) != typeof(RowScale)) { s0 = Avx.LoadVector256(sp0 + b * Interleave); s1 = Avx.LoadVector256(sp1 + b * Interleave); }
            CombineSum<TMode>(Avx.ConvertToVector256Single(a0), d0 + b, c0 + b, s0, acc);
            CombineSum<TMode>(Avx.ConvertToVector256Single(b0), d0 + b, c0 + b, s1, acc + Interleave);
            CombineSum<TMode>(Avx.ConvertToVector256Single(a1), d1 + b, c1 + b, s0, acc + Rows);
            CombineSum<TMode>(Avx.ConvertToVector256Single(b1), d1 + b, c1 + b, s1, acc + Rows + Interleave);
            CombineSum<TMode>(Avx.ConvertToVector256Single(a2), d2 + b, c2 + b, s0, acc + 2 * Rows);
            CombineSum<TMode>(Avx.ConvertToVector256Single(b2), d2 + b, c2 + b, s1, acc + 2 * Rows + Interleave);
            CombineSum<TMode>(Avx.ConvertToVector256Single(a3), d3 + b, c3 + b, s0, acc + 3 * Rows);
            CombineSum<TMode>(Avx.ConvertToVector256Single(b3), d3 + b, c3 + b, s1, acc + 3 * Rows + Interleave);
        }
    }

    // Rows [j0, j0 + jn) into the VNNI panel: two 8-row groups (the second all padding when jn ≤ 8), per group and
    // block 8 quad vectors of 32 bytes (row r at bytes 4r..4r+3), unsigned (symmetric w ^ 0x80 = w + 128); scales and
    // zero-point terms as Repack's. Padding rows repeat the last live row with scale and zero-point term 0.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RepackVnni(in QuantMatrix w, int j0, int jn, byte* panel, float* sc, float* sz, bool rowScale)
    {
        int k = w.K, blocks = k / Block, groups = w.Groups;
        var flip = Vector256.Create((byte)(w.Symmetric ? 0x80 : 0));
        int stride = w.BlockStride;
        bool x4 = w.Interleaved != null;
        byte** rows = stackalloc byte*[Interleave];
        float* rs = stackalloc float[groups];
        for (int g = 0; g < 2; g++)
        {
            byte* pg = panel + (long)g * blocks * VnniBlockBytes;
            float* sg = sc + (long)g * blocks * Interleave;
            float* zg = sz + (long)g * groups * Interleave;
            int live = Math.Min(Interleave, jn - g * Interleave);
            for (int r = 0; r < Interleave; r++)
            {
                int j = j0 + Math.Min(g * Interleave + r, jn - 1);
                rows[r] = w.RowStart(j);   // block b at + b·stride (row-major, or the interleaved copy)
                if (!x4) StageRowScales(w, j, r, r < live, sg, zg, rs, rowScale);
            }
            // the interleaved layout's usual case (8 slots = two whole 4-row groups, or one and padding): the 4 scales of
            // a block header as one vector, read with the block's data
            bool headers = x4 && ((j0 + g * Interleave) & 3) == 0 && (live == 8 || live == 4) && !rowScale;
            for (int b = 0; b < blocks; b++)
            {
                int o = b * stride;
                if (headers)
                {
                    var lo = QuantKernels.LoadHalf4((ushort*)(rows[0] - QuantKernels.X4ScaleBytes + o));
                    var hi = live == 8 ? QuantKernels.LoadHalf4((ushort*)(rows[4] - QuantKernels.X4ScaleBytes + o)) : Vector128<float>.Zero;
                    var s8 = Vector256.Create(lo, hi);
                    Avx.Store(sg + b * Interleave, s8);
                    Avx.Store(zg + b * Interleave, Avx.Multiply(s8, Vector256.Create(128f)));   // groups are blocks: s·128
                }
                Transpose(Avx2.Xor(Avx.LoadVector256(rows[0] + o), flip), Avx2.Xor(Avx.LoadVector256(rows[1] + o), flip),
                          Avx2.Xor(Avx.LoadVector256(rows[2] + o), flip), Avx2.Xor(Avx.LoadVector256(rows[3] + o), flip),
                          Avx2.Xor(Avx.LoadVector256(rows[4] + o), flip), Avx2.Xor(Avx.LoadVector256(rows[5] + o), flip),
                          Avx2.Xor(Avx.LoadVector256(rows[6] + o), flip), Avx2.Xor(Avx.LoadVector256(rows[7] + o), flip),
                          pg + (long)b * VnniBlockBytes, 8);
            }
            // The interleaved layout keeps a row's scales in its blocks' headers, one per 136 bytes: read before the data
            // they were a latency-bound strided walk over lines not yet fetched (the staging ran at 0.55–0.6× its
            // row-major rate); after it they come from cache.
            if (x4 && !headers)
                for (int r = 0; r < Interleave; r++)
                    StageRowScales(w, j0 + Math.Min(g * Interleave + r, jn - 1), r, r < live, sg, zg, rs, rowScale);
        }
    }

    // Row j's scales into slot r of an 8-row group's panel scales sg [block, 8] and zero-point terms zg [group, 8] (0 when
    // the slot is padding): s_g·z_g, or z alone when rowScale; z = 128 when symmetric.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StageRowScales(in QuantMatrix w, int j, int r, bool on, float* sg, float* zg, float* rs, bool rowScale)
    {
        int blocks = w.K / Block, groups = w.Groups, bpg = w.GroupLength / Block;
        float* s = w.RowScales(j, rs);
        for (int b = 0; b < blocks; b++) sg[b * Interleave + r] = on ? s[b / bpg] : 0f;
        for (int gi = 0; gi < groups; gi++)
        {
            float z = w.Symmetric ? 128f : w.Zeros[(long)j * groups + gi];
            zg[gi * Interleave + r] = !on ? 0f : rowScale ? z : s[gi] * z;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run<TMode>(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int m0, int m1, int n0, int n1, float* scratch)
        where TMode : struct
    {
        int k = w.K, blocks = k / Block, groups = w.Groups;
        sbyte* xq = (sbyte*)act;
        float* dx = QuantKernels.BlockScales(act, m, k);
        float* xs = dx + (long)m * blocks;   // Σ_t x_t·dx_b per row and group (Q8_0: the group is the block)
        var carved = CarveScratch(scratch, k, blocks);
        byte* panel = carved.Panel;
        float* sc = carved.Scales, sz = carved.ZeroTerms, acc = carved.Acc, c128 = carved.C128;
        bool q8 = typeof(TMode) == typeof(Q8Sym), rowScale = typeof(TMode) == typeof(RowScale);
        for (int jc = n0; jc < n1; jc += Rows)
        {
            int jn = Math.Min(Rows, n1 - jc), rowGroups = (jn + Interleave - 1) / Interleave;
            Repack(w, jc, jn, panel, sc, sz, rowScale);
            for (int ic = m0; ic < m1; ic += RowChunk)
            {
                int rows = Math.Min(RowChunk, m1 - ic);
                if (q8) Scale128(xs, ic, rows, blocks, c128);
                for (int g = 0; g < rowGroups; g++)
                {
                    byte* pg = panel + (long)g * blocks * BlockBytes;
                    float* sg = sc + (long)g * blocks * Interleave;
                    new Span<float>(acc, (RowChunk + MR) * Interleave).Clear();
                    if (!q8)
                    {
                        // acc starts at −Σ_g' Σx_g'·sz_g' (the zero points' share of every row's sum)
                        float* zg = sz + (long)g * groups * Interleave;
                        for (int t = 0; t < rows; t++)
                        {
                            float* xr = xs + (long)(ic + t) * groups;
                            var a = Vector256<float>.Zero;
                            for (int gi = 0; gi < groups; gi++) a = Fma.MultiplyAddNegated(Vector256.Create(xr[gi]), Avx.LoadVector256(zg + gi * Interleave), a);
                            Avx.Store(acc + t * Interleave, a);
                        }
                    }
                    for (int kb = 0; kb < blocks; kb += KcBlocks)
                    {
                        int nb = Math.Min(KcBlocks, blocks - kb);
                        for (int t = 0; t < rows; t += MR)
                        {
                            // rows past the range repeat the last one and accumulate into spare rows of acc
                            long r0 = ic + t, r1 = ic + Math.Min(t + 1, rows - 1), r2 = ic + Math.Min(t + 2, rows - 1), r3 = ic + Math.Min(t + 3, rows - 1);
                            long o = (long)kb * Block;
                            Tile<TMode>(pg + (long)kb * BlockBytes, sg + kb * Interleave, nb,
                                xq + r0 * k + o, xq + r1 * k + o, xq + r2 * k + o, xq + r3 * k + o,
                                dx + r0 * blocks + kb, dx + r1 * blocks + kb, dx + r2 * blocks + kb, dx + r3 * blocks + kb,
                                c128 + (r0 - ic) * blocks + kb, c128 + (r1 - ic) * blocks + kb, c128 + (r2 - ic) * blocks + kb, c128 + (r3 - ic) * blocks + kb,
                                acc + t * Interleave, blocks);
                        }
                    }
                    int j0 = jc + g * Interleave, cols = Math.Min(Interleave, n1 - j0);
                    for (int t = 0; t < rows; t++)
                    {
                        float* yr = y + (long)(ic + t) * ldy + j0;
                        float* ar = acc + t * Interleave;
                        if (rowScale) for (int c = 0; c < cols; c++) yr[c] = ar[c] * sg[c] + (bias != null ? bias[j0 + c] : 0f);
                        else for (int c = 0; c < cols; c++) yr[c] = ar[c] + (bias != null ? bias[j0 + c] : 0f);
                    }
                }
            }
        }
    }

    // MR = 4 activation rows × 8 interleaved weight rows over nb blocks; acc [4, 8] floats (row stride 8) accumulates.
    // Register budget: 8 int16 plane accumulators, 2 weight vectors, the broadcast, one product. The activation
    // broadcasts are vbroadcastss (a plain load on AMD, unlike vpbroadcastd) of the same 4 bytes; the first quad of a
    // block initializes the accumulators.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TMode>(byte* wp, float* sp, int nb, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        float* d0, float* d1, float* d2, float* d3, float* c0, float* c1, float* c2, float* c3, float* acc, int blocks)
        where TMode : struct
    {
        var sixteen = Vector256.Create((short)16);
        var one = Vector256.Create((short)1);
        for (int b = 0; b < nb; b++)
        {
            byte* p = wp + b * BlockBytes;
            int o = b * Block;
            var wh = Avx.LoadVector256(p);
            var wl = Avx.LoadVector256(p + 32);
            var v = Avx.BroadcastScalarToVector256((float*)(x0 + o)).AsSByte();
            var h0 = Avx2.MultiplyAddAdjacent(wh, v); var l0 = Avx2.MultiplyAddAdjacent(wl, v);
            v = Avx.BroadcastScalarToVector256((float*)(x1 + o)).AsSByte();
            var h1 = Avx2.MultiplyAddAdjacent(wh, v); var l1 = Avx2.MultiplyAddAdjacent(wl, v);
            v = Avx.BroadcastScalarToVector256((float*)(x2 + o)).AsSByte();
            var h2 = Avx2.MultiplyAddAdjacent(wh, v); var l2 = Avx2.MultiplyAddAdjacent(wl, v);
            v = Avx.BroadcastScalarToVector256((float*)(x3 + o)).AsSByte();
            var h3 = Avx2.MultiplyAddAdjacent(wh, v); var l3 = Avx2.MultiplyAddAdjacent(wl, v);
            for (int q = 1; q < 8; q++)
            {
                p += 64; o += 4;
                wh = Avx.LoadVector256(p);
                wl = Avx.LoadVector256(p + 32);
                v = Avx.BroadcastScalarToVector256((float*)(x0 + o)).AsSByte();
                h0 = Avx2.Add(h0, Avx2.MultiplyAddAdjacent(wh, v));
                l0 = Avx2.Add(l0, Avx2.MultiplyAddAdjacent(wl, v));
                v = Avx.BroadcastScalarToVector256((float*)(x1 + o)).AsSByte();
                h1 = Avx2.Add(h1, Avx2.MultiplyAddAdjacent(wh, v));
                l1 = Avx2.Add(l1, Avx2.MultiplyAddAdjacent(wl, v));
                v = Avx.BroadcastScalarToVector256((float*)(x2 + o)).AsSByte();
                h2 = Avx2.Add(h2, Avx2.MultiplyAddAdjacent(wh, v));
                l2 = Avx2.Add(l2, Avx2.MultiplyAddAdjacent(wl, v));
                v = Avx.BroadcastScalarToVector256((float*)(x3 + o)).AsSByte();
                h3 = Avx2.Add(h3, Avx2.MultiplyAddAdjacent(wh, v));
                l3 = Avx2.Add(l3, Avx2.MultiplyAddAdjacent(wl, v));
            }
            var s = typeof(TMode) == typeof(RowScale) ? default : Avx.LoadVector256(sp + b * Interleave);
            Combine<TMode>(h0, l0, sixteen, one, d0 + b, c0 + b, s, acc);
            Combine<TMode>(h1, l1, sixteen, one, d1 + b, c1 + b, s, acc + Interleave);
            Combine<TMode>(h2, l2, sixteen, one, d2 + b, c2 + b, s, acc + 2 * Interleave);
            Combine<TMode>(h3, l3, sixteen, one, d3 + b, c3 + b, s, acc + 3 * Interleave);
        }
    }

    // Q8Sym: acc[0..8) += s · (dx·(16·H + L) − 128·xs): the planes' int32 block sums, the −128·Σx term (c = 128·xs,
    // prepared per call) and the scales. PerBlockScale: acc += s · dx·(16·H + L). RowScale: acc += dx·(16·H + L).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Combine<TMode>(Vector256<short> h, Vector256<short> l, Vector256<short> sixteen, Vector256<short> one,
        float* dx, float* c, Vector256<float> s, float* acc) where TMode : struct
    {
        var sum = Avx.ConvertToVector256Single(Avx2.Add(Avx2.MultiplyAddAdjacent(h, sixteen), Avx2.MultiplyAddAdjacent(l, one)));
        CombineSum<TMode>(sum, dx, c, s, acc);
    }

    // Combine on the 8 rows' block sums as float (both paths: the same float steps on the same integers).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CombineSum<TMode>(Vector256<float> sum, float* dx, float* c, Vector256<float> s, float* acc) where TMode : struct
    {
        if (typeof(TMode) == typeof(RowScale))
        {
            Avx.Store(acc, Fma.MultiplyAdd(sum, Avx.BroadcastScalarToVector256(dx), Avx.LoadVector256(acc)));
            return;
        }
        var t = typeof(TMode) == typeof(Q8Sym)
            ? Fma.MultiplySubtract(sum, Avx.BroadcastScalarToVector256(dx), Avx.BroadcastScalarToVector256(c))
            : Avx.Multiply(sum, Avx.BroadcastScalarToVector256(dx));
        Avx.Store(acc, Fma.MultiplyAdd(t, s, Avx.LoadVector256(acc)));
    }

    // Rows [j0, j0 + jn) of w into the panel: per group of 8 rows and block, 8 quads of [h plane 32 B | l plane 32 B]
    // with row r at bytes 4r..4r+3 of each plane vector (an 8 × 8 transpose of dwords per plane); scales
    // [8-row group, block, 8] as float (a group's scale repeated over its blocks); zero-point terms [8-row group,
    // group, 8]: s_g·z_g, or z alone when rowScale (per channel, s applied at the store); z = 128 when symmetric.
    // Rows past jn repeat the last live row with scale and zero-point term 0.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Repack(in QuantMatrix w, int j0, int jn, byte* panel, float* sc, float* sz, bool rowScale)
    {
        int k = w.K, blocks = k / Block, groups = w.Groups, rowGroups = (jn + Interleave - 1) / Interleave;
        var low = Vector256.Create((byte)0x0F);
        // symmetric bytes w become w + 128 = w ^ 0x80: the high nibble's top bit flips
        var eight = Vector256.Create((byte)(w.Symmetric ? 0x08 : 0));
        int stride = w.BlockStride;
        byte** rows = stackalloc byte*[Interleave];
        float* rs = stackalloc float[groups];
        for (int g = 0; g < rowGroups; g++)
        {
            byte* pg = panel + (long)g * blocks * BlockBytes;
            float* sg = sc + (long)g * blocks * Interleave;
            float* zg = sz + (long)g * groups * Interleave;
            int live = Math.Min(Interleave, jn - g * Interleave);
            for (int r = 0; r < Interleave; r++)
            {
                int j = j0 + g * Interleave + Math.Min(r, live - 1);
                rows[r] = w.RowStart(j);   // block b at + b·stride (row-major, or the interleaved copy)
                StageRowScales(w, j, r, r < live, sg, zg, rs, rowScale);
            }
            for (int b = 0; b < blocks; b++)
            {
                int o = b * stride;
                byte* dst = pg + (long)b * BlockBytes;
                var v0 = Avx.LoadVector256(rows[0] + o); var v1 = Avx.LoadVector256(rows[1] + o);
                var v2 = Avx.LoadVector256(rows[2] + o); var v3 = Avx.LoadVector256(rows[3] + o);
                var v4 = Avx.LoadVector256(rows[4] + o); var v5 = Avx.LoadVector256(rows[5] + o);
                var v6 = Avx.LoadVector256(rows[6] + o); var v7 = Avx.LoadVector256(rows[7] + o);
                Transpose(Hi(v0, low, eight), Hi(v1, low, eight), Hi(v2, low, eight), Hi(v3, low, eight),
                          Hi(v4, low, eight), Hi(v5, low, eight), Hi(v6, low, eight), Hi(v7, low, eight), dst);
                Transpose(Avx2.And(v0, low), Avx2.And(v1, low), Avx2.And(v2, low), Avx2.And(v3, low),
                          Avx2.And(v4, low), Avx2.And(v5, low), Avx2.And(v6, low), Avx2.And(v7, low), dst + 32);
            }
        }
    }

    // (w >> 4) + 8 of signed bytes = the unsigned high nibble with its top bit flipped (eight = 8); q >> 4 of unsigned
    // bytes (eight = 0).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Hi(Vector256<byte> v, Vector256<byte> low, Vector256<byte> eight) =>
        Avx2.Xor(Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), low), eight);

    // Rows a..h of 8 dwords each → 8 vectors (stride floats apart from dst: 64 bytes for the nibble planes, 32 for VNNI), vector q = dword q of rows a..h.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose(Vector256<byte> a, Vector256<byte> b, Vector256<byte> c, Vector256<byte> d,
        Vector256<byte> e, Vector256<byte> f, Vector256<byte> g, Vector256<byte> h, byte* dst, int stride = 16) =>
        Kernels.Gemm.Transpose8x8(a.AsSingle(), b.AsSingle(), c.AsSingle(), d.AsSingle(), e.AsSingle(), f.AsSingle(), g.AsSingle(), h.AsSingle(), (float*)dst, stride);

    // Q8_0's zero-point term per row chunk: 128·Σx_b of each block (the quantizer's block sums), rows [ic, ic + rows).
    private static void Scale128(float* xs, int ic, int rows, int blocks, float* c128)
    {
        for (int t = 0; t < rows; t++)
        {
            float* src = xs + (long)(ic + t) * blocks, dst = c128 + (long)t * blocks;
            for (int b = 0; b < blocks; b++) dst[b] = 128f * src[b];
        }
    }
}
