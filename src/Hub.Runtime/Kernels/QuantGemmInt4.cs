// int4 (Q4_0: symmetric, groups of 32) prefill GEMM in the broadcast layout (the idea of llama.cpp's block_q4_0x8
// repack, our own layout and code). Each prefill unit repacks its weight rows once into a scratch panel of 8-row
// groups: per 32-value block, eight 32-byte vectors, vector q holding the 4 consecutive k values 4q..4q+3 of each of
// the 8 rows as unsigned nibbles 0..15 (rows interleaved), then the 8 rows' block scales as f32. The micro-kernel
// broadcasts 4 activation bytes (vpbroadcastd) per activation row and multiplies them with the weight vector
// (vpmaddubsw: unsigned weight × signed activation, no sign trick), sums the block's 8 quads in int16
// (|Σ| ≤ 8·2·15·127 = 30480), then one vpmaddwd by ones, one convert and two FMAs per activation row and block:
// t = isum·dx_b − 8·Σx_b (the Q4_0 offset, per block) and acc += t·s_w[8 rows]. The 8 accumulator lanes are the 8
// output rows, so a tile ends in one 8-float store: no horizontal reduction. The repack costs about as much as one
// activation row's pass and is amortized over all M rows of the unit.
// Other int4 groupings (the default `--weight-format int4` export is asymmetric group 128, zero point z per group)
// take the same panel and tiles: the block's scale slot holds its group's scale, the per-block term becomes a plain
// multiply (t = isum·dx_b; groups of several blocks sum isum·dx_b over the group and multiply by s_g once: 1.01–1.3×
// the per-block multiply on asymmetric g128), and the zero-point term Σ_g s_g·z_g·Σx_g (z = 8 when symmetric) presets the accumulators
// from an 8-float vector s_g·z_g per group and 8-row group stored after the blocks.
// With AVX-512BW (session 9) the panel groups are 16 rows wide (quad vectors of 64 bytes, 16 scales per block) and the
// tiles run 512-bit vpmaddubsw: one 16-row prefill unit is one group, and each broadcast activation quad serves 16
// rows (1.2–1.5× the 8-row tiles, 1.46–1.53× prefill in-process). AVX-VNNI 8-row tiles (vpdpbusd into int32) were
// tried and measured no better than vpmaddubsw + vpaddw on Zen 5 (0.85–1.22×), so the AVX2 path keeps vpmaddubsw.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>
/// Prefill GEMM for int4 weights — Q4_0 (symmetric, groups of 32) and the asymmetric / longer-group exports — on 8-row
/// interleaved panels repacked per unit.
/// </summary>
public static unsafe class QuantGemmInt4
{
    /// <summary>Weight rows interleaved in one panel group on the AVX2 path (the 8 f32 lanes of an accumulator).</summary>
    public const int GroupRows = 8;

    /// <summary>Weight rows interleaved in one panel group on the AVX-512 path (the 16 f32 lanes of a zmm accumulator).</summary>
    public const int WideGroupRows = 16;

    /// <summary>
    /// Whether the panels and tiles are 16 rows wide (AVX-512BW: 512-bit vpmaddubsw; one 16-row prefill unit is one
    /// panel group). Settable only by the kernel A/B benchmark; a panel must be read with the setting it was written with.
    /// </summary>
    internal static bool Wide { get; set; } = Avx512BW.IsSupported;

    // Bytes per block of a panel group of `rows` rows: 8 quad vectors of 4·rows bytes, then rows f32 scales.
    private static int BlockBytesOf(int rows) => rows * 36;

    /// <summary>Activation rows per register tile: 4 int16 block sums + 4 f32 accumulators + weight, broadcast, scales.</summary>
    public const int TileRows = 4;

    /// <summary>Panel bytes per block of one 8-row group: 8 quad vectors of 32 bytes, then 8 f32 scales.</summary>
    private const int BlockBytes = 8 * 32 + 32;

    /// <summary>Panel bytes per block of one 16-row group: 8 quad vectors of 64 bytes, then 16 f32 scales.</summary>
    private const int WideBlockBytes = 8 * 64 + 64;

    /// <summary>
    /// True when <paramref name="w"/> can use this GEMM: int4 of either symmetry and any group (a multiple of 32 for
    /// int4), K a multiple of 64 (the nibble-pair activation order pairs blocks), AVX2+FMA.
    /// </summary>
    public static bool Fits(in QuantMatrix w) => w.Int4 && w.K % 64 == 0 && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// Bytes of the scratch panel <see cref="Repack(in QuantMatrix, int, int, byte*)"/> writes for <paramref name="rows"/> weight rows of length
    /// <paramref name="k"/>: the blocks, then room for the zero-point terms (one float per row and group, at most one
    /// group per block), plus 32 for alignment.
    /// </summary>
    public static long PanelBytes(int rows, int k) => PanelBytes(rows, k, Wide);

    /// <summary><see cref="PanelBytes(int, int)"/> for 16-row (<paramref name="wide"/>) or 8-row panel groups.</summary>
    internal static long PanelBytes(int rows, int k, bool wide)
    {
        int g = wide ? WideGroupRows : GroupRows;
        return (long)((rows + g - 1) / g) * (k / QuantKernels.Block) * (BlockBytesOf(g) + 4 * g) + 32;
    }

    // Q4_0 (symmetric, groups of one block): the offset term −8·Σx_b per block. Others: zero-point terms preset.
    private static bool IsQ4_0(in QuantMatrix w) => w.Symmetric && w.GroupLength == QuantKernels.Block;

    // Where the zero-point terms [panel group, group, rows] start in a panel of `rows`-row groups for rows [n0, n1).
    private static float* ZeroTerms(in QuantMatrix w, byte* panel, int n0, int n1, int rows) =>
        (float*)(panel + (long)((n1 - n0 + rows - 1) / rows) * (w.K / QuantKernels.Block) * BlockBytesOf(rows));

    private struct OffsetPerBlock { }   // Q4_0: a += (isum·dx_b − 8·Σx_b)·s_b
    private struct ZeroPreset { }       // a starts at −Σ_g s_g·z_g·Σx_g, a += (isum·dx_b)·s_b

    /// <summary>
    /// Bytes of the activation buffer for <paramref name="m"/> rows: <see cref="QuantKernels.ActivationBytes"/> (the
    /// integer GEMV's layout in nibble-pair order) then −8·Σx per row and block [m, K/32] f32.
    /// </summary>
    public static long ActivationBytes(int m, int k) => OffsetsOffset(m, k) + 4L * m * (k / QuantKernels.Block) + 64;

    private static long OffsetsOffset(int m, int k) => (QuantKernels.ActivationBytes(m, k, k / QuantKernels.Block) + 63) & ~63L;

    /// <summary>
    /// Quantizes rows [<paramref name="r0"/>, <paramref name="r1"/>) of x [m, w.K] into <paramref name="buf"/>
    /// (laid out for all <paramref name="m"/> rows, <see cref="ActivationBytes"/>): int8 per block of 32 as the GEMV
    /// reads them, then (Q4_0) the per-block offset term −8·dx_b·Σq_b. Workers may quantize disjoint ranges at once.
    /// </summary>
    public static void QuantizeActivations(in QuantMatrix w, float* x, int m, byte* buf, int r0, int r1)
    {
        if (!Fits(w)) throw new ArgumentException($"the int4 broadcast GEMM needs int4 weights, K a multiple of 64 and AVX2+FMA (K = {w.K}, group = {w.GroupLength}, int4 = {w.Int4}); check Fits first", nameof(w));
        QuantKernels.QuantizeActivations(w, x, m, buf, r0, r1);
        if (!IsQ4_0(w)) return;   // the group sums Σx_g the quantizer stores are all the other groupings read
        int blocks = w.K / QuantKernels.Block;
        // groups of 32: the per-group sums Σ d_b·Σq are per block
        float* xs = QuantKernels.BlockScales(buf, m, w.K) + (long)m * blocks;
        float* nx = (float*)(buf + OffsetsOffset(m, w.K));
        for (long t = (long)r0 * blocks; t < (long)r1 * blocks; t++) nx[t] = -8f * xs[t];
    }

    /// <summary>
    /// Repacks weight rows [<paramref name="n0"/>, <paramref name="n1"/>) into <paramref name="panel"/> (32-byte
    /// aligned, <see cref="PanelBytes(int, int)"/>): per row group (<see cref="GroupRows"/> rows, or
    /// <see cref="WideGroupRows"/> when <c>Wide</c>) and block, 8 quad vectors (row r's k values 4q..4q+3 in bytes 4r..4r+3,
    /// each 0..15) then the group's scales of the block as f32; then, unless Q4_0, the zero-point terms s_g·z_g [row
    /// group, group, rows]. A last group's missing rows get scale 0.
    /// </summary>
    public static void Repack(in QuantMatrix w, int n0, int n1, byte* panel) => Repack(w, n0, n1, panel, Wide);

    /// <summary><see cref="Repack(in QuantMatrix, int, int, byte*)"/> into 16-row (<paramref name="wide"/>) or 8-row groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Repack(in QuantMatrix w, int n0, int n1, byte* panel, bool wide)
    {
        if (!Fits(w)) throw new NotSupportedException("the int4 broadcast GEMM needs int4 weights, K a multiple of 64 and AVX2+FMA");
        KernelArgs.Range(n0, n1);
        if (n1 > w.N) throw new ArgumentOutOfRangeException(nameof(n1), n1, $"n1 = {n1} is past the weight's {w.N} rows");
        if (((nint)panel & 31) != 0) throw new ArgumentException("the panel must be 32-byte aligned", nameof(panel));
        int blocks = w.K / QuantKernels.Block, groups = w.Groups, bpg = w.GroupLength / QuantKernels.Block;
        if (wide && !Avx512BW.IsSupported) throw new NotSupportedException("16-row panels need AVX-512BW");
        int gr = wide ? WideGroupRows : GroupRows, bb = BlockBytesOf(gr);
        bool q4 = IsQ4_0(w);
        float* zt = ZeroTerms(w, panel, n0, n1, gr);
        var low4 = Vector128.Create((byte)0x0F);
        byte** rows = stackalloc byte*[WideGroupRows];
        bool x4 = w.Interleaved != null;   // the compiled model's interleaved Q4_0 copy: block b at X4BlockOffset(b) from the row's block 0
        for (int j0 = n0; j0 < n1; j0 += gr)
        {
            int count = Math.Min(gr, n1 - j0);
            // a last group's missing rows repeat its first row (their scales are 0 and their lanes are never stored)
            for (int r = 0; r < gr; r++) rows[r] = w.Int4Block(j0 + (r < count ? r : 0), 0);
            byte* pg = panel + (long)((j0 - n0) / gr) * blocks * bb;
            for (int b = 0; b < blocks; b++)
            {
                byte* pb = pg + (long)b * bb;
                int o = x4 ? QuantGemvInt4.X4BlockOffset(b) : b * 16;
                // each row's block: 16 bytes → 32 values in k order (low nibbles 0..15, high nibbles 16..31); 8×8
                // transposes of 32-bit quads: vector q = quad q of the group's rows (rows 8..15 in its upper half)
                for (int h = 0; h < gr; h += 8)
                    Kernels.Gemm.Transpose8x8(Unpack(rows[h] + o, low4), Unpack(rows[h + 1] + o, low4), Unpack(rows[h + 2] + o, low4), Unpack(rows[h + 3] + o, low4),
                        Unpack(rows[h + 4] + o, low4), Unpack(rows[h + 5] + o, low4), Unpack(rows[h + 6] + o, low4), Unpack(rows[h + 7] + o, low4), (float*)pb + h, gr);
            }
            // the scales, one gr-float vector per block; the zero-point terms, one gr-float vector per group
            float* zg = zt + (long)((j0 - n0) / gr) * groups * gr;
            for (int r = 0; r < gr; r++)
            {
                float* dst = (float*)(pg + 8 * 4 * gr) + r;
                if (r >= count)
                {
                    for (int b = 0; b < blocks; b++) dst[(long)b * (bb / 4)] = 0f;
                    if (!q4) for (int g = 0; g < groups; g++) zg[g * gr + r] = 0f;
                    continue;
                }
                int j = j0 + r;
                if (x4)
                {
                    // Q4_0 copy: the row's scales sit in its units' headers (QuantMatrix.Scale would divide per block)
                    byte* u0 = w.Int4Block(j, 0) - QuantGemvInt4.X4DataOffset(j & 3, 0);
                    for (int b = 0; b < blocks; b++)
                        dst[(long)b * (bb / 4)] = QuantKernels.HalfToSingle(((ushort*)(u0 + (long)(b >> 3) * QuantGemvInt4.X4UnitBytes))[QuantGemvInt4.X4ScaleIndex(j & 3, b & 7)]);
                }
                else for (int b = 0; b < blocks; b++) dst[(long)b * (bb / 4)] = w.Scale(j, b / bpg);
                if (!q4)
                    for (int g = 0; g < groups; g++)
                        zg[g * gr + r] = w.Scale(j, g) * (w.Symmetric ? 8 : w.Zeros[(long)j * groups + g]);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Unpack(byte* p, Vector128<byte> low4)
    {
        var x = Sse2.LoadVector128(p);
        var lo = Sse2.And(x, low4);
        var hi = Sse2.And(Sse2.ShiftRightLogical(x.AsUInt16(), 4).AsByte(), low4);
        return Vector256.Create(lo, hi).AsSingle();
    }

    /// <summary>
    /// y[i, j] = Σ_k x[i,k]·W[j,k] + b[j] for activation rows i ∈ [<paramref name="m0"/>, <paramref name="m1"/>) and
    /// outputs j ∈ [<paramref name="n0"/>, <paramref name="n1"/>), from <paramref name="panel"/> as <see cref="Repack(in QuantMatrix, int, int, byte*)"/>
    /// wrote it for exactly those rows and activations quantized by <see cref="QuantizeActivations"/>.
    /// </summary>
    public static void GemmPacked(in QuantMatrix w, int m, byte* act, byte* panel, float* bias, float* y, int ldy, int m0, int m1, int n0, int n1) =>
        GemmPacked(w, m, act, panel, bias, y, ldy, m0, m1, n0, n1, Wide);

    /// <summary>
    /// <see cref="GemmPacked(in QuantMatrix, int, byte*, byte*, float*, float*, int, int, int, int, int)"/> on a panel of
    /// 16-row (<paramref name="wide"/>) or 8-row groups.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void GemmPacked(in QuantMatrix w, int m, byte* act, byte* panel, float* bias, float* y, int ldy, int m0, int m1, int n0, int n1, bool wide)
    {
        if (!Fits(w)) throw new NotSupportedException("the int4 broadcast GEMM needs int4 weights, K a multiple of 64 and AVX2+FMA");
        QuantKernels.CheckGemmArgs(w, m, act, y, ldy, m0, m1, n0, n1, panel);
        if (((nint)panel & 31) != 0) throw new ArgumentException("the panel must be 32-byte aligned", nameof(panel));
        if (wide && !Avx512BW.IsSupported) throw new NotSupportedException("16-row panels need AVX-512BW");
        if (wide)
        {
            if (IsQ4_0(w)) PackedWide<OffsetPerBlock>(w, m, act, panel, bias, y, ldy, m0, m1, n0, n1);
            else PackedWide<ZeroPreset>(w, m, act, panel, bias, y, ldy, m0, m1, n0, n1);
        }
        else if (IsQ4_0(w)) Packed<OffsetPerBlock>(w, m, act, panel, bias, y, ldy, m0, m1, n0, n1);
        else Packed<ZeroPreset>(w, m, act, panel, bias, y, ldy, m0, m1, n0, n1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Packed<TMode>(in QuantMatrix w, int m, byte* act, byte* panel, float* bias, float* y, int ldy, int m0, int m1, int n0, int n1)
        where TMode : struct
    {
        int k = w.K, blocks = k / QuantKernels.Block, groups = w.Groups, bpg = w.GroupLength / QuantKernels.Block;
        bool preset = typeof(TMode) == typeof(ZeroPreset);
        float* xs = QuantKernels.BlockScales(act, m, k) + (long)m * blocks;   // Σx per row and group
        float* zt = ZeroTerms(w, panel, n0, n1, GroupRows);
        sbyte* xq = (sbyte*)act;
        float* dx = QuantKernels.BlockScales(act, m, k);
        float* nx = (float*)(act + OffsetsOffset(m, k));
        float* tile = stackalloc float[GroupRows];
        // Activation tiles outer: a tile's 4 rows stay in L1 while the unit's groups stream past them.
        for (int i = m0; i < m1; i += TileRows)
        {
            int i1 = Math.Min(i + 1, m1 - 1), i2 = Math.Min(i + 2, m1 - 1), i3 = Math.Min(i + 3, m1 - 1);
            for (int j0 = n0; j0 < n1; j0 += GroupRows)
            {
                byte* pg = panel + (long)((j0 - n0) / GroupRows) * blocks * BlockBytes;
                int count = Math.Min(GroupRows, n1 - j0);
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                if (preset)
                {
                    float* zg = zt + (long)((j0 - n0) / GroupRows) * groups * GroupRows;
                    float* e0 = xs + (long)i * groups, e1 = xs + (long)i1 * groups, e2 = xs + (long)i2 * groups, e3 = xs + (long)i3 * groups;
                    for (int g = 0; g < groups; g++)
                    {
                        var z = Avx.LoadVector256(zg + g * GroupRows);
                        a0 = Fma.MultiplyAddNegated(Vector256.Create(e0[g]), z, a0);
                        a1 = Fma.MultiplyAddNegated(Vector256.Create(e1[g]), z, a1);
                        a2 = Fma.MultiplyAddNegated(Vector256.Create(e2[g]), z, a2);
                        a3 = Fma.MultiplyAddNegated(Vector256.Create(e3[g]), z, a3);
                    }
                }
                if (preset && bpg > 1)
                    Tile4Groups(pg, blocks, bpg, xq + (long)i * k, xq + (long)i1 * k, xq + (long)i2 * k, xq + (long)i3 * k,
                        dx + (long)i * blocks, dx + (long)i1 * blocks, dx + (long)i2 * blocks, dx + (long)i3 * blocks,
                        ref a0, ref a1, ref a2, ref a3);
                else
                    Tile4<TMode>(pg, blocks, xq + (long)i * k, xq + (long)i1 * k, xq + (long)i2 * k, xq + (long)i3 * k,
                        dx + (long)i * blocks, dx + (long)i1 * blocks, dx + (long)i2 * blocks, dx + (long)i3 * blocks,
                        nx + (long)i * blocks, nx + (long)i1 * blocks, nx + (long)i2 * blocks, nx + (long)i3 * blocks,
                        ref a0, ref a1, ref a2, ref a3);
                float* bj = bias == null ? null : bias + j0;
                Store(a0, y + (long)i * ldy + j0, bj, count, tile);
                if (i + 1 < m1) Store(a1, y + (long)(i + 1) * ldy + j0, bj, count, tile);
                if (i + 2 < m1) Store(a2, y + (long)(i + 2) * ldy + j0, bj, count, tile);
                if (i + 3 < m1) Store(a3, y + (long)(i + 3) * ldy + j0, bj, count, tile);
            }
        }
    }

    /// <summary>
    /// Repacks rows [<paramref name="n0"/>, <paramref name="n1"/>) into <paramref name="panel"/> and runs
    /// <see cref="GemmPacked(in QuantMatrix, int, byte*, byte*, float*, float*, int, int, int, int, int)"/> on activation rows [<paramref name="m0"/>, <paramref name="m1"/>): one prefill unit.
    /// </summary>
    public static void Gemm(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int m0, int m1, int n0, int n1, byte* panel) =>
        Gemm(w, m, act, bias, y, ldy, m0, m1, n0, n1, panel, Wide);

    /// <summary>
    /// <see cref="Gemm(in QuantMatrix, int, byte*, float*, float*, int, int, int, int, int, byte*)"/> with the tile
    /// variant as a parameter (tests): 16-row panels (<paramref name="wide"/>, AVX-512BW) or 8-row ones.
    /// </summary>
    internal static void Gemm(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int m0, int m1, int n0, int n1, byte* panel, bool wide)
    {
        if (m1 <= m0 || n1 <= n0) return;
        Repack(w, n0, n1, panel, wide);
        GemmPacked(w, m, act, panel, bias, y, ldy, m0, m1, n0, n1, wide);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector256<float> a, float* y, float* bias, int count, float* tile)
    {
        if (count == GroupRows)
        {
            if (bias != null) a = Avx.Add(a, Avx.LoadVector256(bias));
            Avx.Store(y, a);
            return;
        }
        Avx.Store(tile, a);
        for (int r = 0; r < count; r++) y[r] = tile[r] + (bias != null ? bias[r] : 0f);
    }

    // Σ_k over all blocks for 4 activation rows × one 8-row group: per block 8 quad vectors, each multiplied with the
    // 4 rows' broadcast quads and summed in int16, then per row one vpmaddwd, convert and two FMAs.
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Tile4<TMode>(byte* pg, int blocks, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        float* d0, float* d1, float* d2, float* d3, float* c0, float* c1, float* c2, float* c3,
        ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2, ref Vector256<float> r3) where TMode : struct
    {
        var ones = Vector256.Create((short)1);
        Vector256<float> a0 = r0, a1 = r1, a2 = r2, a3 = r3;
        for (int b = 0; b < blocks; b++)
        {
            byte* pb = pg + (long)b * BlockBytes;
            // nibble-pair activation order: block b's values 0..15 at xo, 16..31 at xo + 32
            int xo = (b >> 1) * 64 + (b & 1) * 16;
            var wv = Avx.LoadVector256(pb);
            var s0 = Avx2.MultiplyAddAdjacent(wv, B(x0 + xo));
            var s1 = Avx2.MultiplyAddAdjacent(wv, B(x1 + xo));
            var s2 = Avx2.MultiplyAddAdjacent(wv, B(x2 + xo));
            var s3 = Avx2.MultiplyAddAdjacent(wv, B(x3 + xo));
            Quad(pb + 32, xo + 4, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            Quad(pb + 64, xo + 8, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            Quad(pb + 96, xo + 12, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            Quad(pb + 128, xo + 32, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            Quad(pb + 160, xo + 36, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            Quad(pb + 192, xo + 40, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            Quad(pb + 224, xo + 44, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            var sw = Avx.LoadVector256((float*)(pb + 256));
            if (typeof(TMode) == typeof(ZeroPreset))
            {
                a0 = Fma.MultiplyAdd(Avx.Multiply(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s0, ones)), Avx.BroadcastScalarToVector256(d0 + b)), sw, a0);
                a1 = Fma.MultiplyAdd(Avx.Multiply(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s1, ones)), Avx.BroadcastScalarToVector256(d1 + b)), sw, a1);
                a2 = Fma.MultiplyAdd(Avx.Multiply(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s2, ones)), Avx.BroadcastScalarToVector256(d2 + b)), sw, a2);
                a3 = Fma.MultiplyAdd(Avx.Multiply(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s3, ones)), Avx.BroadcastScalarToVector256(d3 + b)), sw, a3);
                continue;
            }
            a0 = Fma.MultiplyAdd(Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s0, ones)), Avx.BroadcastScalarToVector256(d0 + b), Avx.BroadcastScalarToVector256(c0 + b)), sw, a0);
            a1 = Fma.MultiplyAdd(Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s1, ones)), Avx.BroadcastScalarToVector256(d1 + b), Avx.BroadcastScalarToVector256(c1 + b)), sw, a1);
            a2 = Fma.MultiplyAdd(Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s2, ones)), Avx.BroadcastScalarToVector256(d2 + b), Avx.BroadcastScalarToVector256(c2 + b)), sw, a2);
            a3 = Fma.MultiplyAdd(Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s3, ones)), Avx.BroadcastScalarToVector256(d3 + b), Avx.BroadcastScalarToVector256(c3 + b)), sw, a3);
        }
        r0 = a0; r1 = a1; r2 = a2; r3 = a3;
    }

    // Tile4 for groups of bpg > 1 blocks (zero-point terms preset in r0..r3): per block t += isum·dx_b (one FMA), per
    // group a += t·s_g (one FMA), instead of a multiply and an FMA per block.
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Tile4Groups(byte* pg, int blocks, int bpg, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        float* d0, float* d1, float* d2, float* d3,
        ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2, ref Vector256<float> r3)
    {
        var ones = Vector256.Create((short)1);
        Vector256<float> a0 = r0, a1 = r1, a2 = r2, a3 = r3;
        for (int g0 = 0; g0 < blocks; g0 += bpg)
        {
            Vector256<float> t0 = default, t1 = default, t2 = default, t3 = default;
            for (int b = g0; b < g0 + bpg; b++)
            {
                byte* pb = pg + (long)b * BlockBytes;
                int xo = (b >> 1) * 64 + (b & 1) * 16;
                var wv = Avx.LoadVector256(pb);
                var s0 = Avx2.MultiplyAddAdjacent(wv, B(x0 + xo));
                var s1 = Avx2.MultiplyAddAdjacent(wv, B(x1 + xo));
                var s2 = Avx2.MultiplyAddAdjacent(wv, B(x2 + xo));
                var s3 = Avx2.MultiplyAddAdjacent(wv, B(x3 + xo));
                Quad(pb + 32, xo + 4, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                Quad(pb + 64, xo + 8, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                Quad(pb + 96, xo + 12, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                Quad(pb + 128, xo + 32, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                Quad(pb + 160, xo + 36, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                Quad(pb + 192, xo + 40, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                Quad(pb + 224, xo + 44, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                t0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s0, ones)), Avx.BroadcastScalarToVector256(d0 + b), t0);
                t1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s1, ones)), Avx.BroadcastScalarToVector256(d1 + b), t1);
                t2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s2, ones)), Avx.BroadcastScalarToVector256(d2 + b), t2);
                t3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s3, ones)), Avx.BroadcastScalarToVector256(d3 + b), t3);
            }
            var sw = Avx.LoadVector256((float*)(pg + (long)g0 * BlockBytes + 256));
            a0 = Fma.MultiplyAdd(t0, sw, a0);
            a1 = Fma.MultiplyAdd(t1, sw, a1);
            a2 = Fma.MultiplyAdd(t2, sw, a2);
            a3 = Fma.MultiplyAdd(t3, sw, a3);
        }
        r0 = a0; r1 = a1; r2 = a2; r3 = a3;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quad(byte* pw, int o, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector256<short> s0, ref Vector256<short> s1, ref Vector256<short> s2, ref Vector256<short> s3)
    {
        var wv = Avx.LoadVector256(pw);
        s0 = Avx2.Add(s0, Avx2.MultiplyAddAdjacent(wv, B(x0 + o)));
        s1 = Avx2.Add(s1, Avx2.MultiplyAddAdjacent(wv, B(x1 + o)));
        s2 = Avx2.Add(s2, Avx2.MultiplyAddAdjacent(wv, B(x2 + o)));
        s3 = Avx2.Add(s3, Avx2.MultiplyAddAdjacent(wv, B(x3 + o)));
    }

    // 4 activation bytes broadcast to all 8 dwords (vpbroadcastd from memory).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> B(sbyte* p) => Avx2.BroadcastScalarToVector256((int*)p).AsSByte();

    // Packed on 16-row panel groups with 512-bit vectors (Avx512BW): the same tiles as Packed with twice the rows per
    // instruction, so a 16-row prefill unit is one group and every broadcast activation quad serves 16 weight rows.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackedWide<TMode>(in QuantMatrix w, int m, byte* act, byte* panel, float* bias, float* y, int ldy, int m0, int m1, int n0, int n1)
        where TMode : struct
    {
        const int gr = WideGroupRows;
        int k = w.K, blocks = k / QuantKernels.Block, groups = w.Groups, bpg = w.GroupLength / QuantKernels.Block;
        bool preset = typeof(TMode) == typeof(ZeroPreset);
        float* xs = QuantKernels.BlockScales(act, m, k) + (long)m * blocks;   // Σx per row and group
        float* zt = ZeroTerms(w, panel, n0, n1, gr);
        sbyte* xq = (sbyte*)act;
        float* dx = QuantKernels.BlockScales(act, m, k);
        float* nx = (float*)(act + OffsetsOffset(m, k));
        float* tile = stackalloc float[gr];
        for (int i = m0; i < m1; i += TileRows)
        {
            int i1 = Math.Min(i + 1, m1 - 1), i2 = Math.Min(i + 2, m1 - 1), i3 = Math.Min(i + 3, m1 - 1);
            for (int j0 = n0; j0 < n1; j0 += gr)
            {
                byte* pg = panel + (long)((j0 - n0) / gr) * blocks * WideBlockBytes;
                int count = Math.Min(gr, n1 - j0);
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                if (preset)
                {
                    float* zg = zt + (long)((j0 - n0) / gr) * groups * gr;
                    float* e0 = xs + (long)i * groups, e1 = xs + (long)i1 * groups, e2 = xs + (long)i2 * groups, e3 = xs + (long)i3 * groups;
                    for (int g = 0; g < groups; g++)
                    {
                        var z = Avx512F.LoadVector512(zg + g * gr);
                        a0 = Avx512F.FusedMultiplyAddNegated(Vector512.Create(e0[g]), z, a0);
                        a1 = Avx512F.FusedMultiplyAddNegated(Vector512.Create(e1[g]), z, a1);
                        a2 = Avx512F.FusedMultiplyAddNegated(Vector512.Create(e2[g]), z, a2);
                        a3 = Avx512F.FusedMultiplyAddNegated(Vector512.Create(e3[g]), z, a3);
                    }
                }
                if (preset && bpg > 1)
                    Tile4GroupsWide(pg, blocks, bpg, xq + (long)i * k, xq + (long)i1 * k, xq + (long)i2 * k, xq + (long)i3 * k,
                        dx + (long)i * blocks, dx + (long)i1 * blocks, dx + (long)i2 * blocks, dx + (long)i3 * blocks,
                        ref a0, ref a1, ref a2, ref a3);
                else
                    Tile4Wide<TMode>(pg, blocks, xq + (long)i * k, xq + (long)i1 * k, xq + (long)i2 * k, xq + (long)i3 * k,
                        dx + (long)i * blocks, dx + (long)i1 * blocks, dx + (long)i2 * blocks, dx + (long)i3 * blocks,
                        nx + (long)i * blocks, nx + (long)i1 * blocks, nx + (long)i2 * blocks, nx + (long)i3 * blocks,
                        ref a0, ref a1, ref a2, ref a3);
                float* bj = bias == null ? null : bias + j0;
                StoreWide(a0, y + (long)i * ldy + j0, bj, count, tile);
                if (i + 1 < m1) StoreWide(a1, y + (long)(i + 1) * ldy + j0, bj, count, tile);
                if (i + 2 < m1) StoreWide(a2, y + (long)(i + 2) * ldy + j0, bj, count, tile);
                if (i + 3 < m1) StoreWide(a3, y + (long)(i + 3) * ldy + j0, bj, count, tile);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreWide(Vector512<float> a, float* y, float* bias, int count, float* tile)
    {
        if (count == WideGroupRows)
        {
            if (bias != null) a = Avx512F.Add(a, Avx512F.LoadVector512(bias));
            Avx512F.Store(y, a);
            return;
        }
        Avx512F.Store(tile, a);
        for (int r = 0; r < count; r++) y[r] = tile[r] + (bias != null ? bias[r] : 0f);
    }

    // Tile4 on a 16-row group: per block 8 quad vectors of 64 bytes, each multiplied (512-bit vpmaddubsw) with the 4
    // rows' broadcast quads and summed in int16 (the same bound as Tile4), then per row one vpmaddwd, convert and FMAs.
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Tile4Wide<TMode>(byte* pg, int blocks, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        float* d0, float* d1, float* d2, float* d3, float* c0, float* c1, float* c2, float* c3,
        ref Vector512<float> r0, ref Vector512<float> r1, ref Vector512<float> r2, ref Vector512<float> r3) where TMode : struct
    {
        var ones = Vector512.Create((short)1);
        Vector512<float> a0 = r0, a1 = r1, a2 = r2, a3 = r3;
        for (int b = 0; b < blocks; b++)
        {
            byte* pb = pg + (long)b * WideBlockBytes;
            int xo = (b >> 1) * 64 + (b & 1) * 16;
            var wv = Avx512F.LoadVector512(pb);
            var s0 = Avx512BW.MultiplyAddAdjacent(wv, BW(x0 + xo));
            var s1 = Avx512BW.MultiplyAddAdjacent(wv, BW(x1 + xo));
            var s2 = Avx512BW.MultiplyAddAdjacent(wv, BW(x2 + xo));
            var s3 = Avx512BW.MultiplyAddAdjacent(wv, BW(x3 + xo));
            QuadWide(pb + 64, xo + 4, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            QuadWide(pb + 128, xo + 8, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            QuadWide(pb + 192, xo + 12, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            QuadWide(pb + 256, xo + 32, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            QuadWide(pb + 320, xo + 36, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            QuadWide(pb + 384, xo + 40, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            QuadWide(pb + 448, xo + 44, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
            var sw = Avx512F.LoadVector512((float*)(pb + 512));
            if (typeof(TMode) == typeof(ZeroPreset))
            {
                a0 = Avx512F.FusedMultiplyAdd(Avx512F.Multiply(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(s0, ones)), Vector512.Create(d0[b])), sw, a0);
                a1 = Avx512F.FusedMultiplyAdd(Avx512F.Multiply(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(s1, ones)), Vector512.Create(d1[b])), sw, a1);
                a2 = Avx512F.FusedMultiplyAdd(Avx512F.Multiply(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(s2, ones)), Vector512.Create(d2[b])), sw, a2);
                a3 = Avx512F.FusedMultiplyAdd(Avx512F.Multiply(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(s3, ones)), Vector512.Create(d3[b])), sw, a3);
                continue;
            }
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(s0, ones)), Vector512.Create(d0[b]), Vector512.Create(c0[b])), sw, a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(s1, ones)), Vector512.Create(d1[b]), Vector512.Create(c1[b])), sw, a1);
            a2 = Avx512F.FusedMultiplyAdd(Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(s2, ones)), Vector512.Create(d2[b]), Vector512.Create(c2[b])), sw, a2);
            a3 = Avx512F.FusedMultiplyAdd(Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(s3, ones)), Vector512.Create(d3[b]), Vector512.Create(c3[b])), sw, a3);
        }
        r0 = a0; r1 = a1; r2 = a2; r3 = a3;
    }

    // Tile4Groups on a 16-row group (zero-point terms preset in r0..r3).
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Tile4GroupsWide(byte* pg, int blocks, int bpg, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        float* d0, float* d1, float* d2, float* d3,
        ref Vector512<float> r0, ref Vector512<float> r1, ref Vector512<float> r2, ref Vector512<float> r3)
    {
        var ones = Vector512.Create((short)1);
        Vector512<float> a0 = r0, a1 = r1, a2 = r2, a3 = r3;
        for (int g0 = 0; g0 < blocks; g0 += bpg)
        {
            Vector512<float> t0 = default, t1 = default, t2 = default, t3 = default;
            for (int b = g0; b < g0 + bpg; b++)
            {
                byte* pb = pg + (long)b * WideBlockBytes;
                int xo = (b >> 1) * 64 + (b & 1) * 16;
                var wv = Avx512F.LoadVector512(pb);
                var s0 = Avx512BW.MultiplyAddAdjacent(wv, BW(x0 + xo));
                var s1 = Avx512BW.MultiplyAddAdjacent(wv, BW(x1 + xo));
                var s2 = Avx512BW.MultiplyAddAdjacent(wv, BW(x2 + xo));
                var s3 = Avx512BW.MultiplyAddAdjacent(wv, BW(x3 + xo));
                QuadWide(pb + 64, xo + 4, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                QuadWide(pb + 128, xo + 8, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                QuadWide(pb + 192, xo + 12, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                QuadWide(pb + 256, xo + 32, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                QuadWide(pb + 320, xo + 36, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                QuadWide(pb + 384, xo + 40, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                QuadWide(pb + 448, xo + 44, x0, x1, x2, x3, ref s0, ref s1, ref s2, ref s3);
                t0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(s0, ones)), Vector512.Create(d0[b]), t0);
                t1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(s1, ones)), Vector512.Create(d1[b]), t1);
                t2 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(s2, ones)), Vector512.Create(d2[b]), t2);
                t3 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(s3, ones)), Vector512.Create(d3[b]), t3);
            }
            var sw = Avx512F.LoadVector512((float*)(pg + (long)g0 * WideBlockBytes + 512));
            a0 = Avx512F.FusedMultiplyAdd(t0, sw, a0);
            a1 = Avx512F.FusedMultiplyAdd(t1, sw, a1);
            a2 = Avx512F.FusedMultiplyAdd(t2, sw, a2);
            a3 = Avx512F.FusedMultiplyAdd(t3, sw, a3);
        }
        r0 = a0; r1 = a1; r2 = a2; r3 = a3;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void QuadWide(byte* pw, int o, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector512<short> s0, ref Vector512<short> s1, ref Vector512<short> s2, ref Vector512<short> s3)
    {
        var wv = Avx512F.LoadVector512(pw);
        s0 = Avx512BW.Add(s0, Avx512BW.MultiplyAddAdjacent(wv, BW(x0 + o)));
        s1 = Avx512BW.Add(s1, Avx512BW.MultiplyAddAdjacent(wv, BW(x1 + o)));
        s2 = Avx512BW.Add(s2, Avx512BW.MultiplyAddAdjacent(wv, BW(x2 + o)));
        s3 = Avx512BW.Add(s3, Avx512BW.MultiplyAddAdjacent(wv, BW(x3 + o)));
    }

    // 4 activation bytes broadcast to all 16 dwords (vpbroadcastd zmm from memory).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> BW(sbyte* p) => Vector512.Create(*(int*)p).AsSByte();
}
