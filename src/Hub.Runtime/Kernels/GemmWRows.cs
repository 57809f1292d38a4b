// f32 prefill GEMM with W read in place (session 8). y = x·Wᵀ + b is computed as its transpose yᵀ[N×M] = W[N×K]·xᵀ:
// W is the broadcast operand of the register tile, read straight from its rows (six row pointers, one vbroadcastss
// each per k step, no packing), and x (M×K, a prefill chunk of at most MC rows) is packed once per call and K block
// into k-major 16-row panels of xᵀ, the shape of Gemm's W panels, so the tile arithmetic is Gemm's 6×16 (2 panel
// loads + 6 broadcasts + 12 FMAs per k step). Each 6-row group of W runs against every xᵀ panel of the block while its
// rows sit in L1 (W comes from DRAM once, the xᵀ block from L2), and the group after it streams into L2 from inside
// the k loops. The 6×16 accumulator tile is yᵀ: it goes into a contiguous yᵀ buffer of the column chunk (six full
// cache lines per tile, accumulated there across K blocks), which is transposed into y once per chunk: y's rows are n
// floats apart, and a tile storing 16 of them (a power-of-two n maps them onto a few L1/L2 sets) measured 10 points
// slower than Gemm's per-call packing on 128×2048×2048.
// Session 9: with AVX-512 the panels are 32 rows (Gemm's 32-wide W panels), the main tile 8 W rows × 32 (16 zmm
// accumulators: the L2-streamed xᵀ panel is read once per 16 FMAs; 5 % ahead of 6-row groups, 12-row groups were level)
// and the rest of a chunk 6×32 / 4×32, with row blocks of whole panels (128 rows); Gemm's K blocks and bias order are
// kept, so the bits equal Gemm's 6×32 packed path.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>The AVX2/AVX-512 f32 GEMM for prefill-sized M that reads W [N, K] in place instead of packing it per call.</summary>
public static unsafe class GemmWRows
{
    /// <summary>W rows per register tile (the broadcast operand).</summary>
    public const int WR = 6;

    /// <summary>Input rows per packed xᵀ panel: <see cref="Gemm.PanelWidth"/>, two vectors per k step (32 with AVX-512,
    /// else 16), so the panels are Gemm's W panels and <see cref="Gemm.PackRowsPanel"/> packs them.</summary>
    public static readonly int XR = Gemm.PanelWidth;

    /// <summary>Whether this machine runs the kernel: AVX2 + FMA (zmm tiles with AVX-512; without AVX2 Gemm's portable
    /// path runs).</summary>
    public static readonly bool IsSupported = Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Whether the AVX-512 path runs 8-row W groups (16 zmm accumulators) before the 6/4-row ones (a switch for
    /// the kernel bench A/B).</summary>
    internal static bool Group8 = true;

    /// <summary>Most rows M of a Linear for which <see cref="Gemm"/> takes this path for F32 weights packed per call
    /// (0 turns it off; a switch for the kernel bench and the prefill A/B, never flipped by tests): 512 with AVX2 (session
    /// 8, Zen 3), every M with AVX-512 (session 9, Zen 5: level or ahead of per-call packing at M = 4096 too).</summary>
    internal static int MaxRows = Avx512F.IsSupported ? int.MaxValue : 512;

    /// <summary>Whether a Linear of <paramref name="m"/> rows with weights of type <paramref name="wt"/> (packed per
    /// call) runs here.</summary>
    internal static bool Applies(int m, DType wt) => IsSupported && wt == DType.F32 && m > Gemm.GemvMaxRows && m <= MaxRows;

    /// <summary>Floats of scratch <see cref="Block"/> needs for a row block of <paramref name="rows"/> rows (at most
    /// <see cref="Gemm.MC"/>) and depth <paramref name="k"/>; <see cref="Gemm.ScratchFloats"/>(k) covers it.</summary>
    public static long ScratchFloats(int rows, int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        long mPad = (long)Panels(rows) * XR;
        return PackOffset + (Gemm.NC + 8) * mPad + mPad * k + 32;
    }

    // scratch (64-byte aligned): [0, 256) the spill tile (up to 8 × 32) of the rare edge stores, then the yᵀ buffer of a column chunk
    // ((NC + 8) rows of mPad floats: a last group's discarded rows land in the 8 spare rows), then the packed xᵀ.
    private const int PackOffset = 256;

    private static int Panels(int rows) => (rows + XR - 1) / XR;

    // Gemm's K blocks (the whole of k up to 384, else near-equal blocks of at most Gemm.DeepKC), so every output sums
    // in the order of Gemm's packed paths and a model gives the same bits whether its weights are packed once or not.
    private static int KBlock(int k) => Math.Max(1, Gemm.KBlock(k, false));

    // Rows [m0, m1) of x (row stride k) as xᵀ panels: for the K block at pc (depth kc), panel j (rows m0 + 16j …) at
    // pack + pc·mPad + j·kc·16, element [p·16 + r] = x[m0 + 16j + r, pc + p], zero past m1.
    private static void PackCore(float* x, int m0, int m1, int k, float* scratch)
    {
        int rows = m1 - m0, panels = Panels(rows), kcb = KBlock(k);
        float* pack = Pack(scratch, rows);
        for (int pc = 0; pc < k; pc += kcb)
        {
            int kc = Math.Min(kcb, k - pc);
            float* blk = pack + (long)pc * panels * XR;
            for (int j = 0; j < panels; j++)
                Gemm.PackRowsPanel(x + (long)(m0 + j * XR) * k + pc, k, Math.Min(XR, rows - j * XR), kc, blk + (long)j * kc * XR);
        }
    }

    private static float* Aligned(float* scratch) => (float*)(((nint)scratch + 63) & ~(nint)63);

    // The yᵀ buffer and the packed xᵀ of a row block of `rows` rows.
    private static float* CtBuffer(float* scratch) => Aligned(scratch) + PackOffset;
    private static float* Pack(float* scratch, int rows) => CtBuffer(scratch) + (Gemm.NC + 8L) * Panels(rows) * XR;

    /// <summary>
    /// y[m0..m1, n0..n1) = x·Wᵀ + b for one row block (at most <see cref="Gemm.MC"/> rows) with W F32 [n, k] read in
    /// place. x is packed into the scratch unless <paramref name="packedRow"/> already equals m0 (a worker running
    /// several column chunks of the same row block packs once; pass −1 to force packing); it is set to m0 on return.
    /// <paramref name="pastEnd"/>: the last W group prefetches the rows after n1 (a split owner's next chunk).
    /// <paramref name="gemmReadsAInPlace"/>: Gemm's packed path would read A in place for this range (see
    /// <see cref="Gemm.GemmBlockPacked"/>), so the bias order of its edge rows is followed: results then equal its bits.
    /// </summary>
    public static void Block(float* x, int m0, int m1, int k, float* w, int n, float* bias, float* y, int n0, int n1,
        float* scratch, ref int packedRow, bool pastEnd = false, bool gemmReadsAInPlace = false)
    {
        KernelArgs.Range(m0, m1);
        KernelArgs.Range(n0, n1);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(n1, n);
        if (m1 - m0 > Gemm.MC) throw new ArgumentOutOfRangeException(nameof(m1), $"rows [{m0}, {m1}) exceed one row block of {Gemm.MC}");
        KernelArgs.NotNull(x, m1 > m0 && k > 0, nameof(x));
        KernelArgs.NotNull(w, n1 > n0 && k > 0, nameof(w));
        KernelArgs.NotNull(y, m1 > m0 && n1 > n0, nameof(y));
        KernelArgs.NotNull(scratch, m1 > m0 && n1 > n0 && k > 0, nameof(scratch));
        if (m0 >= m1 || n0 >= n1) return;
        if (!IsSupported) throw new PlatformNotSupportedException("GemmWRows needs AVX2 + FMA");
        if (k == 0)
        {
            for (int i = m0; i < m1; i++)
                if (bias != null) Buffer.MemoryCopy(bias + n0, y + (long)i * n + n0, (n1 - n0) * 4L, (n1 - n0) * 4L);
                else new Span<float>(y + (long)i * n + n0, n1 - n0).Clear();
            return;
        }
        if (packedRow != m0) { PackCore(x, m0, m1, k, scratch); packedRow = m0; }
        // Gemm with A read in place (narrow column ranges) adds the bias of a partial last 6-row tile after y: so do its rows
        int lateRow = gemmReadsAInPlace ? m0 + (m1 - m0) / Gemm.MR * Gemm.MR : m1;
        Columns(m0, m1, k, w, n, bias, y, n0, n1, scratch, Pack(scratch, m1 - m0), pastEnd, lateRow);
    }

    /// <summary>Rows per row block <see cref="Rows"/> and a <see cref="Gemm.GemmSplit"/> running this kernel use: whole xᵀ
    /// panels (128 = 4 × 32 with AVX-512: Gemm's 144 would pad its fifth panel with 16 idle rows, measured 5-8 points slower
    /// at M = 4096), else <see cref="Gemm.MC"/> (9 × 16).</summary>
    public static readonly int RowBlock = Gemm.MC / XR * XR;

    /// <summary>Runs rows [m0, m1) (any count, in row blocks of <see cref="RowBlock"/>) × columns [n0, n1) on one thread.</summary>
    public static void Rows(float* x, int m0, int m1, int k, float* w, int n, float* bias, float* y, int n0, int n1, float* scratch,
        bool gemmReadsAInPlace = false)
    {
        KernelArgs.Range(m0, m1);
        int packedRow = -1;
        for (int mb = m0; mb < m1; mb += RowBlock)
            Block(x, mb, Math.Min(m1, mb + RowBlock), k, w, n, bias, y, n0, n1, scratch, ref packedRow, false, gemmReadsAInPlace);
    }

    // The W groups of columns [n0, n1), in column chunks of NC, against every packed xᵀ panel, per K block: the tiles
    // accumulate the chunk's yᵀ in the buffer, which is transposed into y after the chunk's last K block.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Columns(int m0, int m1, int k, float* w, int n, float* bias, float* y, int n0, int n1, float* scratch, float* pack, bool pastEnd, int lateRow)
    {
        int rows = m1 - m0, panels = Panels(rows), kcb = KBlock(k), mPad = panels * XR;
        float* spill = Aligned(scratch), ct = CtBuffer(scratch);
        int chunk = Gemm.NC;
        bool wide = Avx512F.IsSupported;
        // Gemm adds the bias of a partial last panel's columns after y (AddTile): those columns do the same
        int edgeStart = n0 + ((n1 - n0) & ~(XR - 1));
        for (int c0 = n0; c0 < n1; c0 += chunk)
        {
            int c1 = Math.Min(n1, c0 + chunk);
            for (int pc = 0; pc < k; pc += kcb)
            {
                int kc = Math.Min(kcb, k - pc);
                bool first = pc == 0, last = pc + kc == k;
                float* blk = pack + (long)pc * mPad;
                // 6-row groups, the remainder as 4-row groups (16 columns = 6 + 6 + 4, 32 = 4×6 + 2×4; Gemm.TilePlan);
                // with AVX-512 (and Group8) 8-row groups first, the remainder so
                int n8 = wide && Group8 ? (c1 - c0) / 8 : 0;
                Gemm.TilePlan(c1 - c0 - 8 * n8, out int n6, out int groups);
                groups += n8;
                for (int g = 0, col = c0; g < groups; g++)
                {
                    int h = g < n8 ? 8 : g - n8 < n6 ? WR : 4, wrows = Math.Min(h, c1 - col);
                    // the group after this one: the next of this chunk, else the chunk's first at the next K block, else
                    // the next chunk, else (pastEnd, one K block) the rows after n1
                    int nextCol = -1, nextPc = pc;
                    if (col + wrows < c1) nextCol = col + wrows;
                    else if (!last) { nextCol = c0; nextPc = pc + kc; }
                    else if (c1 < n1) { nextCol = c1; nextPc = 0; }
                    else if (pastEnd && n1 < n && k == kc) { nextCol = n1; nextPc = 0; }
                    float* next = nextCol >= 0 && nextCol < n ? w + (long)nextCol * k + nextPc : null;
                    int nextRows = next != null ? Math.Min(n8 > 0 ? 8 : WR, n - nextCol) : 0;
                    // rows per panel streamed from inside the k loop: two with 8-row tiles, else one
                    int streams = h == 8 ? 2 : 1;
                    float* wg = w + (long)col * k + pc;
                    float* bg = last && bias != null ? bias + col : null;
                    int edgeFrom = Math.Clamp(edgeStart - col, 0, wrows);
                    float* cg = ct + (long)(col - c0) * mPad;
                    for (int j = 0; j < panels; j++)
                    {
                        int mr = Math.Min(XR, rows - j * XR);
                        // panel j streams next-group row j (and, with fewer panels than rows, j + panels, … as bursts)
                        byte* pf = j < nextRows ? (byte*)(next + (long)j * k) : null;
                        byte* pf2 = streams > 1 && j + panels < nextRows ? (byte*)(next + (long)(j + panels) * k) : null;
                        if (streams * panels < nextRows)
                            for (int r = j + streams * panels; r < nextRows; r += panels)
                            {
                                byte* rp = (byte*)(next + (long)r * k);
                                for (int l = 0; l < kc * 4; l += 64) Sse.Prefetch1(rp + l);
                            }
                        int lateI = Math.Clamp(lateRow - (m0 + j * XR), 0, mr);
                        float* xp = blk + (long)j * kc * XR;
                        if (wide)
                        {
                            if (h == 8) Tile8Avx512(wg, k, wrows, xp, kc, cg + j * XR, mPad, mr, first, bg, edgeFrom, lateI, pf, pf2, spill);
                            else if (h == WR) Tile6Avx512(wg, k, wrows, xp, kc, cg + j * XR, mPad, mr, first, bg, edgeFrom, lateI, pf, spill);
                            else Tile4Avx512(wg, k, wrows, xp, kc, cg + j * XR, mPad, mr, first, bg, edgeFrom, lateI, pf, spill);
                        }
                        else if (h == WR) Tile6(wg, k, wrows, xp, kc, cg + j * XR, mPad, mr, first, bg, edgeFrom, lateI, pf, spill);
                        else Tile4(wg, k, wrows, xp, kc, cg + j * XR, mPad, mr, first, bg, edgeFrom, lateI, pf, spill);
                    }
                    col += wrows;
                }
            }
            TransposeOut(ct, mPad, c1 - c0, rows, y + (long)m0 * n + c0, n);
        }
    }

    // yᵀ tile: rows = W rows w + r·ldw (r < wrows; the rest repeat row 0 and land in rows the caller discards), columns =
    // the 16 input rows of the xᵀ panel xp; ct[r·ldc + i] (=|+=) tile[r, i] (+ bias[r]).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile6(float* w, int ldw, int wrows, float* xp, int kc, float* ct, int ldc, int mr, bool assign, float* bias, int edgeFrom, int lateI, byte* pf, float* spill)
    {
        float* w0 = w, w1 = wrows > 1 ? w + ldw : w, w2 = wrows > 2 ? w + 2L * ldw : w, w3 = wrows > 3 ? w + 3L * ldw : w,
            w4 = wrows > 4 ? w + 4L * ldw : w, w5 = wrows > 5 ? w + 5L * ldw : w;
        if (pf == null) pf = (byte*)xp;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        nint p = 0, kc2 = kc & ~1;
        float* bp = xp;
        for (; p < kc2; p += 2)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Avx.BroadcastScalarToVector256(w0 + p); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(w1 + p); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(w2 + p); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(w3 + p); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Avx.BroadcastScalarToVector256(w4 + p); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Avx.BroadcastScalarToVector256(w5 + p); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
            b0 = Avx.LoadVector256(bp + 16);
            b1 = Avx.LoadVector256(bp + 24);
            av = Avx.BroadcastScalarToVector256(w0 + p + 1); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(w1 + p + 1); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(w2 + p + 1); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(w3 + p + 1); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Avx.BroadcastScalarToVector256(w4 + p + 1); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Avx.BroadcastScalarToVector256(w5 + p + 1); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
            // the next group's row: 8 bytes per 2 k steps = the row's kc floats over the loop
            Sse.Prefetch1(pf);
            pf += 8; bp += 32;
        }
        if (p < kc)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Avx.BroadcastScalarToVector256(w0 + p); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(w1 + p); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(w2 + p); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(w3 + p); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Avx.BroadcastScalarToVector256(w4 + p); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Avx.BroadcastScalarToVector256(w5 + p); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
        }
        // (an accumulating store whose cells Gemm would give the bias after y: the spill path below)
        if (bias != null && !assign && (edgeFrom < wrows || lateI < mr))
        {
            c00.Store(spill); c01.Store(spill + 8); c10.Store(spill + 16); c11.Store(spill + 24);
            c20.Store(spill + 32); c21.Store(spill + 40); c30.Store(spill + 48); c31.Store(spill + 56);
            c40.Store(spill + 64); c41.Store(spill + 72); c50.Store(spill + 80); c51.Store(spill + 88);
            LateBias(spill, wrows, ct, ldc, bias, edgeFrom, lateI);
            return;
        }
        if (bias != null)
        {
            Vector256<float> v = Vector256.Create(bias[0]); c00 += v; c01 += v;
            if (wrows > 1) { v = Vector256.Create(bias[1]); c10 += v; c11 += v; }
            if (wrows > 2) { v = Vector256.Create(bias[2]); c20 += v; c21 += v; }
            if (wrows > 3) { v = Vector256.Create(bias[3]); c30 += v; c31 += v; }
            if (wrows > 4) { v = Vector256.Create(bias[4]); c40 += v; c41 += v; }
            if (wrows > 5) { v = Vector256.Create(bias[5]); c50 += v; c51 += v; }
        }
        Put(ct, c00, c01, assign); Put(ct + ldc, c10, c11, assign); Put(ct + 2L * ldc, c20, c21, assign);
        Put(ct + 3L * ldc, c30, c31, assign); Put(ct + 4L * ldc, c40, c41, assign); Put(ct + 5L * ldc, c50, c51, assign);
    }

    // The 4-row tile for the W rows a 6-row grouping leaves over (8 accumulators keep both FMA pipes busy).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4(float* w, int ldw, int wrows, float* xp, int kc, float* ct, int ldc, int mr, bool assign, float* bias, int edgeFrom, int lateI, byte* pf, float* spill)
    {
        float* w0 = w, w1 = wrows > 1 ? w + ldw : w, w2 = wrows > 2 ? w + 2L * ldw : w, w3 = wrows > 3 ? w + 3L * ldw : w;
        if (pf == null) pf = (byte*)xp;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default;
        nint p = 0, kc2 = kc & ~1;
        float* bp = xp;
        for (; p < kc2; p += 2)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Avx.BroadcastScalarToVector256(w0 + p); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(w1 + p); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(w2 + p); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(w3 + p); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            b0 = Avx.LoadVector256(bp + 16);
            b1 = Avx.LoadVector256(bp + 24);
            av = Avx.BroadcastScalarToVector256(w0 + p + 1); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(w1 + p + 1); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(w2 + p + 1); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(w3 + p + 1); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            Sse.Prefetch1(pf);
            pf += 8; bp += 32;
        }
        if (p < kc)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Avx.BroadcastScalarToVector256(w0 + p); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(w1 + p); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(w2 + p); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(w3 + p); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
        }
        if (bias != null && !assign && (edgeFrom < wrows || lateI < mr))
        {
            c00.Store(spill); c01.Store(spill + 8); c10.Store(spill + 16); c11.Store(spill + 24);
            c20.Store(spill + 32); c21.Store(spill + 40); c30.Store(spill + 48); c31.Store(spill + 56);
            LateBias(spill, wrows, ct, ldc, bias, edgeFrom, lateI);
            return;
        }
        if (bias != null)
        {
            Vector256<float> v = Vector256.Create(bias[0]); c00 += v; c01 += v;
            if (wrows > 1) { v = Vector256.Create(bias[1]); c10 += v; c11 += v; }
            if (wrows > 2) { v = Vector256.Create(bias[2]); c20 += v; c21 += v; }
            if (wrows > 3) { v = Vector256.Create(bias[3]); c30 += v; c31 += v; }
        }
        Put(ct, c00, c01, assign); Put(ct + ldc, c10, c11, assign); Put(ct + 2L * ldc, c20, c21, assign); Put(ct + 3L * ldc, c30, c31, assign);
    }

    // The AVX-512 main tile: 8 W rows × a 32-row xᵀ panel (16 zmm accumulators): per k step 2 panel loads and 8
    // broadcasts feed 16 FMAs, so the xᵀ panel (streamed from L2) is read once per 16 FMAs instead of 12. pf, pf2: two
    // rows of the next group streamed into L2 (8 bytes per two k steps each).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile8Avx512(float* w, int ldw, int wrows, float* xp, int kc, float* ct, int ldc, int mr, bool assign, float* bias, int edgeFrom, int lateI, byte* pf, byte* pf2, float* spill)
    {
        float* w0 = w, w1 = wrows > 1 ? w + ldw : w, w2 = wrows > 2 ? w + 2L * ldw : w, w3 = wrows > 3 ? w + 3L * ldw : w,
            w4 = wrows > 4 ? w + 4L * ldw : w, w5 = wrows > 5 ? w + 5L * ldw : w, w6 = wrows > 6 ? w + 6L * ldw : w, w7 = wrows > 7 ? w + 7L * ldw : w;
        if (pf == null) pf = (byte*)xp;
        if (pf2 == null) pf2 = (byte*)xp;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default,
            c60 = default, c61 = default, c70 = default, c71 = default;
        nint p = 0, kc2 = kc & ~1;
        float* bp = xp;
        for (; p < kc2; p += 2)
        {
            var b0 = Avx512F.LoadVector512(bp + 0);
            var b1 = Avx512F.LoadVector512(bp + 16);
            var av = Vector512.Create(w0[p]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(w1[p]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(w2[p]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(w3[p]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(w4[p]); c40 = Avx512F.FusedMultiplyAdd(av, b0, c40); c41 = Avx512F.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(w5[p]); c50 = Avx512F.FusedMultiplyAdd(av, b0, c50); c51 = Avx512F.FusedMultiplyAdd(av, b1, c51);
            av = Vector512.Create(w6[p]); c60 = Avx512F.FusedMultiplyAdd(av, b0, c60); c61 = Avx512F.FusedMultiplyAdd(av, b1, c61);
            av = Vector512.Create(w7[p]); c70 = Avx512F.FusedMultiplyAdd(av, b0, c70); c71 = Avx512F.FusedMultiplyAdd(av, b1, c71);
            b0 = Avx512F.LoadVector512(bp + 32);
            b1 = Avx512F.LoadVector512(bp + 48);
            av = Vector512.Create(w0[p + 1]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(w1[p + 1]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(w2[p + 1]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(w3[p + 1]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(w4[p + 1]); c40 = Avx512F.FusedMultiplyAdd(av, b0, c40); c41 = Avx512F.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(w5[p + 1]); c50 = Avx512F.FusedMultiplyAdd(av, b0, c50); c51 = Avx512F.FusedMultiplyAdd(av, b1, c51);
            av = Vector512.Create(w6[p + 1]); c60 = Avx512F.FusedMultiplyAdd(av, b0, c60); c61 = Avx512F.FusedMultiplyAdd(av, b1, c61);
            av = Vector512.Create(w7[p + 1]); c70 = Avx512F.FusedMultiplyAdd(av, b0, c70); c71 = Avx512F.FusedMultiplyAdd(av, b1, c71);
            Sse.Prefetch1(pf);
            Sse.Prefetch1(pf2);
            pf += 8; pf2 += 8; bp += 64;
        }
        if (p < kc)
        {
            var b0 = Avx512F.LoadVector512(bp + 0);
            var b1 = Avx512F.LoadVector512(bp + 16);
            var av = Vector512.Create(w0[p]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(w1[p]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(w2[p]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(w3[p]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(w4[p]); c40 = Avx512F.FusedMultiplyAdd(av, b0, c40); c41 = Avx512F.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(w5[p]); c50 = Avx512F.FusedMultiplyAdd(av, b0, c50); c51 = Avx512F.FusedMultiplyAdd(av, b1, c51);
            av = Vector512.Create(w6[p]); c60 = Avx512F.FusedMultiplyAdd(av, b0, c60); c61 = Avx512F.FusedMultiplyAdd(av, b1, c61);
            av = Vector512.Create(w7[p]); c70 = Avx512F.FusedMultiplyAdd(av, b0, c70); c71 = Avx512F.FusedMultiplyAdd(av, b1, c71);
        }
        if (bias != null && !assign && (edgeFrom < wrows || lateI < mr))
        {
            c00.Store(spill); c01.Store(spill + 16); c10.Store(spill + 32); c11.Store(spill + 48);
            c20.Store(spill + 64); c21.Store(spill + 80); c30.Store(spill + 96); c31.Store(spill + 112);
            c40.Store(spill + 128); c41.Store(spill + 144); c50.Store(spill + 160); c51.Store(spill + 176);
            c60.Store(spill + 192); c61.Store(spill + 208); c70.Store(spill + 224); c71.Store(spill + 240);
            LateBias(spill, wrows, ct, ldc, bias, edgeFrom, lateI);
            return;
        }
        Out512(ct, c00, c01, bias, 0, wrows, assign);
        Out512(ct + ldc, c10, c11, bias, 1, wrows, assign);
        Out512(ct + 2L * ldc, c20, c21, bias, 2, wrows, assign);
        Out512(ct + 3L * ldc, c30, c31, bias, 3, wrows, assign);
        Out512(ct + 4L * ldc, c40, c41, bias, 4, wrows, assign);
        Out512(ct + 5L * ldc, c50, c51, bias, 5, wrows, assign);
        Out512(ct + 6L * ldc, c60, c61, bias, 6, wrows, assign);
        Out512(ct + 7L * ldc, c70, c71, bias, 7, wrows, assign);
    }

    // AVX-512 twins of Tile6 / Tile4: the same tiles over 32-row xᵀ panels (two zmm per W row, 12 or 8 accumulators).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile6Avx512(float* w, int ldw, int wrows, float* xp, int kc, float* ct, int ldc, int mr, bool assign, float* bias, int edgeFrom, int lateI, byte* pf, float* spill)
    {
        float* w0 = w, w1 = wrows > 1 ? w + ldw : w, w2 = wrows > 2 ? w + 2L * ldw : w, w3 = wrows > 3 ? w + 3L * ldw : w,
            w4 = wrows > 4 ? w + 4L * ldw : w, w5 = wrows > 5 ? w + 5L * ldw : w;
        if (pf == null) pf = (byte*)xp;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        nint p = 0, kc2 = kc & ~1;
        float* bp = xp;
        for (; p < kc2; p += 2)
        {
            var b0 = Avx512F.LoadVector512(bp);
            var b1 = Avx512F.LoadVector512(bp + 16);
            var av = Vector512.Create(w0[p]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(w1[p]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(w2[p]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(w3[p]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(w4[p]); c40 = Avx512F.FusedMultiplyAdd(av, b0, c40); c41 = Avx512F.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(w5[p]); c50 = Avx512F.FusedMultiplyAdd(av, b0, c50); c51 = Avx512F.FusedMultiplyAdd(av, b1, c51);
            b0 = Avx512F.LoadVector512(bp + 32);
            b1 = Avx512F.LoadVector512(bp + 48);
            av = Vector512.Create(w0[p + 1]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(w1[p + 1]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(w2[p + 1]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(w3[p + 1]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(w4[p + 1]); c40 = Avx512F.FusedMultiplyAdd(av, b0, c40); c41 = Avx512F.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(w5[p + 1]); c50 = Avx512F.FusedMultiplyAdd(av, b0, c50); c51 = Avx512F.FusedMultiplyAdd(av, b1, c51);
            Sse.Prefetch1(pf);
            pf += 8; bp += 64;
        }
        if (p < kc)
        {
            var b0 = Avx512F.LoadVector512(bp);
            var b1 = Avx512F.LoadVector512(bp + 16);
            var av = Vector512.Create(w0[p]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(w1[p]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(w2[p]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(w3[p]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(w4[p]); c40 = Avx512F.FusedMultiplyAdd(av, b0, c40); c41 = Avx512F.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(w5[p]); c50 = Avx512F.FusedMultiplyAdd(av, b0, c50); c51 = Avx512F.FusedMultiplyAdd(av, b1, c51);
        }
        if (bias != null && !assign && (edgeFrom < wrows || lateI < mr))
        {
            c00.Store(spill); c01.Store(spill + 16); c10.Store(spill + 32); c11.Store(spill + 48);
            c20.Store(spill + 64); c21.Store(spill + 80); c30.Store(spill + 96); c31.Store(spill + 112);
            c40.Store(spill + 128); c41.Store(spill + 144); c50.Store(spill + 160); c51.Store(spill + 176);
            LateBias(spill, wrows, ct, ldc, bias, edgeFrom, lateI);
            return;
        }
        Out512(ct, c00, c01, bias, 0, wrows, assign);
        Out512(ct + ldc, c10, c11, bias, 1, wrows, assign);
        Out512(ct + 2L * ldc, c20, c21, bias, 2, wrows, assign);
        Out512(ct + 3L * ldc, c30, c31, bias, 3, wrows, assign);
        Out512(ct + 4L * ldc, c40, c41, bias, 4, wrows, assign);
        Out512(ct + 5L * ldc, c50, c51, bias, 5, wrows, assign);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4Avx512(float* w, int ldw, int wrows, float* xp, int kc, float* ct, int ldc, int mr, bool assign, float* bias, int edgeFrom, int lateI, byte* pf, float* spill)
    {
        float* w0 = w, w1 = wrows > 1 ? w + ldw : w, w2 = wrows > 2 ? w + 2L * ldw : w, w3 = wrows > 3 ? w + 3L * ldw : w;
        if (pf == null) pf = (byte*)xp;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default;
        nint p = 0, kc2 = kc & ~1;
        float* bp = xp;
        for (; p < kc2; p += 2)
        {
            var b0 = Avx512F.LoadVector512(bp);
            var b1 = Avx512F.LoadVector512(bp + 16);
            var av = Vector512.Create(w0[p]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(w1[p]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(w2[p]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(w3[p]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            b0 = Avx512F.LoadVector512(bp + 32);
            b1 = Avx512F.LoadVector512(bp + 48);
            av = Vector512.Create(w0[p + 1]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(w1[p + 1]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(w2[p + 1]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(w3[p + 1]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            Sse.Prefetch1(pf);
            pf += 8; bp += 64;
        }
        if (p < kc)
        {
            var b0 = Avx512F.LoadVector512(bp);
            var b1 = Avx512F.LoadVector512(bp + 16);
            var av = Vector512.Create(w0[p]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(w1[p]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(w2[p]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(w3[p]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
        }
        if (bias != null && !assign && (edgeFrom < wrows || lateI < mr))
        {
            c00.Store(spill); c01.Store(spill + 16); c10.Store(spill + 32); c11.Store(spill + 48);
            c20.Store(spill + 64); c21.Store(spill + 80); c30.Store(spill + 96); c31.Store(spill + 112);
            LateBias(spill, wrows, ct, ldc, bias, edgeFrom, lateI);
            return;
        }
        Out512(ct, c00, c01, bias, 0, wrows, assign);
        Out512(ct + ldc, c10, c11, bias, 1, wrows, assign);
        Out512(ct + 2L * ldc, c20, c21, bias, 2, wrows, assign);
        Out512(ct + 3L * ldc, c30, c31, bias, 3, wrows, assign);
    }

    // Row r of a tile into ct: its bias added (live rows only), then stored or added.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Out512(float* c, Vector512<float> v0, Vector512<float> v1, float* bias, int r, int wrows, bool assign)
    {
        if (bias != null && r < wrows) { var b = Vector512.Create(bias[r]); v0 += b; v1 += b; }
        Put512(c, v0, v1, assign);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put512(float* c, Vector512<float> v0, Vector512<float> v1, bool assign)
    {
        if (assign) { v0.Store(c); v1.Store(c + 16); }
        else { (Vector512.Load(c) + v0).Store(c); (Vector512.Load(c + 16) + v1).Store(c + 16); }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* c, Vector256<float> v0, Vector256<float> v1, bool assign)
    {
        if (assign) { v0.Store(c); v1.Store(c + 8); }
        else { (Vector256.Load(c) + v0).Store(c); (Vector256.Load(c + 8) + v1).Store(c + 8); }
    }

    // Last K block of an accumulating tile with cells Gemm gives the bias after y: spill[r·16 + i] = tile[r, i]; cells of
    // W rows from edgeFrom or input rows from lateI get (ct + t) + b (Gemm's edge tiles), the others ct + (t + b).
    private static void LateBias(float* spill, int wrows, float* ct, int ldc, float* bias, int edgeFrom, int lateI)
    {
        for (int r = 0; r < wrows; r++)
        {
            float* cr = ct + (long)r * ldc;
            float b = bias[r];
            for (int i = 0; i < XR; i++)
            {
                float t = spill[r * XR + i];
                cr[i] = r < edgeFrom && i < lateI ? cr[i] + (t + b) : (cr[i] + t) + b;
            }
        }
    }

    // y[i·ldy + r] = ct[r·ldc + i] for r < cols, i < rows: 8×8 AVX transposes, the edges one float at a time.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposeOut(float* ct, int ldc, int cols, int rows, float* y, int ldy)
    {
        int r8 = cols & ~7, i8 = rows & ~7;
        for (int i = 0; i < i8; i += 8)
        {
            for (int r = 0; r < r8; r += 8)
            {
                float* s = ct + (long)r * ldc + i;
                var a0 = Avx.LoadVector256(s); var a1 = Avx.LoadVector256(s + ldc);
                var a2 = Avx.LoadVector256(s + 2L * ldc); var a3 = Avx.LoadVector256(s + 3L * ldc);
                var a4 = Avx.LoadVector256(s + 4L * ldc); var a5 = Avx.LoadVector256(s + 5L * ldc);
                var a6 = Avx.LoadVector256(s + 6L * ldc); var a7 = Avx.LoadVector256(s + 7L * ldc);
                var t0 = Avx.UnpackLow(a0, a1); var t1 = Avx.UnpackHigh(a0, a1);
                var t2 = Avx.UnpackLow(a2, a3); var t3 = Avx.UnpackHigh(a2, a3);
                var t4 = Avx.UnpackLow(a4, a5); var t5 = Avx.UnpackHigh(a4, a5);
                var t6 = Avx.UnpackLow(a6, a7); var t7 = Avx.UnpackHigh(a6, a7);
                var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
                var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
                var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
                var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
                float* d = y + (long)i * ldy + r;
                Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20));
                Avx.Store(d + ldy, Avx.Permute2x128(u1, u5, 0x20));
                Avx.Store(d + 2L * ldy, Avx.Permute2x128(u2, u6, 0x20));
                Avx.Store(d + 3L * ldy, Avx.Permute2x128(u3, u7, 0x20));
                Avx.Store(d + 4L * ldy, Avx.Permute2x128(u0, u4, 0x31));
                Avx.Store(d + 5L * ldy, Avx.Permute2x128(u1, u5, 0x31));
                Avx.Store(d + 6L * ldy, Avx.Permute2x128(u2, u6, 0x31));
                Avx.Store(d + 7L * ldy, Avx.Permute2x128(u3, u7, 0x31));
            }
            for (int q = i; q < i + 8; q++)
                for (int r = r8; r < cols; r++) y[(long)q * ldy + r] = ct[(long)r * ldc + q];
        }
        for (int q = i8; q < rows; q++)
            for (int r = 0; r < cols; r++) y[(long)q * ldy + r] = ct[(long)r * ldc + q];
    }
}
