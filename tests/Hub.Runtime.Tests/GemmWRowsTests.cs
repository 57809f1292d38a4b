using System.Runtime.InteropServices;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// The W-in-place f32 GEMM (<see cref="GemmWRows"/>, W rows broadcast, xᵀ packed, the yᵀ tile transposed on the store)
/// against a float64 loop and <see cref="Gemm.LinearReference"/>, over odd M/N/K, several K blocks, bias or none,
/// column ranges split at odd boundaries, and through Gemm's dispatch (which the ISA sweep runs on every path).
/// </summary>
[Trait("Category", "Kernel")]
[Collection(nameof(GemmStaticsCollection))]
public unsafe class GemmWRowsTests
{
    private static readonly int[] Ks = [1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 320, 321, 385, 1000];
    private static readonly int[] Ns = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 67, 390];

    public static IEnumerable<object[]> Shapes()
    {
        // every M in 1..40 (5, 16, 17, 33 included) against a rotating N and K, so each N and K meets several M
        for (int m = 1; m <= 40; m++)
            for (int v = 0; v < 3; v++)
            {
                int n = Ns[(m * 3 + v * 5) % Ns.Length], k = Ks[(m * 5 + v * 3) % Ks.Length];
                if ((long)m * n * k > 4_000_000) k = Ks[v];
                yield return new object[] { m, n, k, (m + v) % 2 == 0 };
            }
        foreach (var (m, n, k) in new[] { (16, 390, 1000), (33, 390, 385), (17, 67, 321), (5, 390, 320), (16, 13, 1000), (40, 67, 1000), (144, 67, 385), (150, 13, 321), (128, 70, 17) })
        {
            yield return new object[] { m, n, k, true };
            yield return new object[] { m, n, k, false };
        }
    }

    // x [m, k] and w [n, k] in (-1, 1), bias in [0, 1).
    private static (float[] X, float[] W, float[] Bias) Operands(int m, int n, int k, int seed)
    {
        var rng = new Random(seed);
        var x = new float[m * k]; var w = new float[n * k]; var b = new float[n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < w.Length; i++) w[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < n; i++) b[i] = (float)rng.NextDouble();
        return (x, w, b);
    }

    // Each y[i, j] in [n0, n1) against Σ x·w (+ b) in float64 and the float32 reference; cells outside stay NaN.
    private static void Check(float[] x, float[] w, float[]? bias, float[] y, float[] yRef, int m, int n, int k, int n0, int n1, string what)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float got = y[i * n + j];
                if (j < n0 || j >= n1) { Assert.True(float.IsNaN(got), $"{what}: y[{i},{j}] outside [{n0},{n1}) was written"); continue; }
                double s = bias != null ? bias[j] : 0, mag = Math.Abs(s);
                for (int p = 0; p < k; p++) { double t = (double)x[i * k + p] * w[j * k + p]; s += t; mag += Math.Abs(t); }
                double tol = 4e-7 * (k + 4) * mag + 1e-6;
                Assert.True(Math.Abs(got - s) <= tol, $"{what}: y[{i},{j}] = {got}, float64 {s} (tolerance {tol:E2}), m={m} n={n} k={k}");
                Assert.True(Math.Abs(got - yRef[i * n + j]) <= 2 * tol, $"{what}: y[{i},{j}] = {got}, LinearReference {yRef[i * n + j]}");
            }
    }

    private static float[] Reference(float[] x, float[] w, float[]? bias, int m, int n, int k)
    {
        var y = new float[m * n];
        fixed (float* xp = x, wp = w, bp = bias, yp = y)
            Gemm.LinearReference(xp, m, k, (byte*)wp, DType.F32, n, bias != null ? bp : null, yp);
        return y;
    }

    private static float* Scratch(int k) => (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.ScratchFloats(k) * 4L), 64);

    [SkippableTheory]
    [MemberData(nameof(Shapes))]
    public void W_in_place_matches_float64_and_the_reference(int m, int n, int k, bool withBias)
    {
        Skip.IfNot(GemmWRows.IsSupported, "needs AVX2 + FMA");
        var (x, w, b) = Operands(m, n, k, m * 1000 + n * 10 + k);
        var bias = withBias ? b : null;
        var y = new float[m * n];
        Array.Fill(y, float.NaN);
        float* scratch = Scratch(k);
        try
        {
            fixed (float* xp = x, wp = w, bp = bias, yp = y)
                GemmWRows.Rows(xp, 0, m, k, wp, n, bias != null ? bp : null, yp, 0, n, scratch);
        }
        finally { NativeMemory.AlignedFree(scratch); }
        Check(x, w, bias, y, Reference(x, w, bias, m, n, k), m, n, k, 0, n, "Rows");
    }

    [SkippableTheory]
    [InlineData(17, 67, 321, 13, 40)]
    [InlineData(33, 390, 1000, 101, 389)]
    [InlineData(128, 390, 385, 7, 203)]
    [InlineData(5, 13, 9, 1, 12)]
    [InlineData(40, 67, 31, 66, 67)]
    public void Two_column_ranges_with_odd_boundaries_cover_the_output_once(int m, int n, int k, int cut, int end)
    {
        Skip.IfNot(GemmWRows.IsSupported, "needs AVX2 + FMA");
        var (x, w, bias) = Operands(m, n, k, 7 + cut);
        var y = new float[m * n];
        Array.Fill(y, float.NaN);
        float* s0 = Scratch(k), s1 = Scratch(k);
        try
        {
            fixed (float* xp = x, wp = w, bp = bias, yp = y)
            {
                // two workers (own scratch): [0, cut) with the next-chunk prefetch past its end, [cut, end) packing x
                // once for two chunks of the same row block, then nothing outside [0, end)
                int r0 = -1, r1 = -1;
                GemmWRows.Block(xp, 0, m, k, wp, n, bp, yp, 0, cut, s0, ref r0, pastEnd: true);
                int mid = (cut + end) / 2;
                GemmWRows.Block(xp, 0, m, k, wp, n, bp, yp, cut, mid, s1, ref r1, pastEnd: true);
                if (mid > cut) Assert.Equal(0, r1);
                GemmWRows.Block(xp, 0, m, k, wp, n, bp, yp, mid, end, s1, ref r1);
            }
        }
        finally { NativeMemory.AlignedFree(s0); NativeMemory.AlignedFree(s1); }
        Check(x, w, bias, y, Reference(x, w, bias, m, n, k), m, n, k, 0, end, "split");
    }

    [Theory]
    [InlineData(5, 13, 385, 2)]
    [InlineData(16, 67, 321, 2)]
    [InlineData(33, 390, 1000, 3)]
    [InlineData(150, 67, 320, 2)]
    [InlineData(3, 9, 31, 1)]
    [InlineData(20, 200, 321, 2)]
    [InlineData(128, 97, 385, 1)]
    public void Gemm_dispatch_matches_float64_on_every_instruction_set(int m, int n, int k, int workers)
    {
        // Gemm.GemmBlock (one thread) and RunChunk over a GemmSplit (as LinearExec): W in place where this machine runs
        // GemmWRows and the column ranges are wide (≥ Gemm.PackAMinColumns), Gemm's packed or portable path elsewhere
        // (narrow ranges, the ISA sweep), the same results either way.
        var (x, w, bias) = Operands(m, n, k, 99 + m);
        var yRef = Reference(x, w, bias, m, n, k);
        var y = new float[m * n];
        var scratch = Enumerable.Range(0, workers).Select(_ => (nint)Scratch(k)).ToArray();
        try
        {
            fixed (float* xp = x, wp = w, bp = bias, yp = y)
            {
                Array.Fill(y, float.NaN);
                Gemm.GemmBlock(xp, 0, m, k, (byte*)wp, DType.F32, n, bp, yp, 0, n, (float*)scratch[0]);
                Check(x, w, bias, y, yRef, m, n, k, 0, n, "GemmBlock");
                Array.Fill(y, float.NaN);
                var split = new Gemm.GemmSplit();
                split.Reset(m, n, k, workers);
                for (int s = 0; s < split.Shares; s++)
                {
                    int cursor = 0, packedRow = -1;
                    while (split.Claim(s, ref cursor, out int m0, out int m1, out int n0, out int n1))
                        Gemm.RunChunk(xp, m0, m1, k, (byte*)wp, DType.F32, null, n, bp, yp, n0, n1, (float*)scratch[s], split.PackA, ref packedRow, m);
                }
                Check(x, w, bias, y, yRef, m, n, k, 0, n, "RunChunk");
            }
        }
        finally { foreach (var s in scratch) NativeMemory.AlignedFree((void*)s); }
    }

    [SkippableTheory]
    [InlineData(20, 64, 520, true)]
    [InlineData(23, 40, 1000, true)]
    [InlineData(20, 200, 520, false)]
    [InlineData(128, 290, 777, false)]
    [InlineData(33, 97, 385, false)]
    [InlineData(161, 45, 321, false)]
    [InlineData(300, 131, 64, true)]
    public void Results_have_the_bits_of_the_prepacked_gemm(int m, int n, int k, bool narrow)
    {
        // Gemm's K blocks and bias order are followed (narrow: the order of its A-in-place tiles), so a model's outputs do
        // not depend on whether its weights were packed once.
        Skip.IfNot(GemmWRows.IsSupported, "needs AVX2 + FMA");
        var (x, w, bias) = Operands(m, n, k, 5 + n);
        var y = new float[m * n]; var expected = new float[m * n];
        float* scratch = Scratch(k);
        float* packed = (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.PackedFloats(n, k) * 4), 64);
        try
        {
            fixed (float* xp = x, wp = w, bp = bias, yp = y, ep = expected)
            {
                Gemm.PackWeights((byte*)wp, DType.F32, n, k, packed, scratch);
                Gemm.GemmBlockPacked(xp, 0, m, k, packed, n, bp, ep, 0, n, scratch);
                GemmWRows.Rows(xp, 0, m, k, wp, n, bp, yp, 0, n, scratch, gemmReadsAInPlace: narrow);
            }
        }
        finally { NativeMemory.AlignedFree(scratch); NativeMemory.AlignedFree(packed); }
        for (int i = 0; i < y.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(y[i]) == BitConverter.SingleToInt32Bits(expected[i]),
                $"y[{i / n},{i % n}] = {y[i]:R}, prepacked Gemm {expected[i]:R}");
    }

    [Fact]
    public void Scratch_of_gemm_covers_a_full_row_block()
    {
        foreach (int k in new[] { 1, 9, 384, 385, 1000, 5632 })
            Assert.True(GemmWRows.ScratchFloats(Gemm.MC, k) + 16 <= Gemm.ScratchFloats(k), $"k = {k}");
    }

    [SkippableFact]
    public void More_rows_than_a_block_are_rejected_with_the_range()
    {
        Skip.IfNot(GemmWRows.IsSupported, "needs AVX2 + FMA");
        float* scratch = Scratch(8);
        try
        {
            var x = new float[200 * 8]; var w = new float[8 * 8]; var y = new float[200 * 8];
            int packedRow = -1;
            var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            {
                fixed (float* xp = x, wp = w, yp = y)
                    GemmWRows.Block(xp, 0, 200, 8, wp, 8, null, yp, 0, 8, scratch, ref packedRow);
            });
            Assert.Contains("row block", e.Message);
        }
        finally { NativeMemory.AlignedFree(scratch); }
    }
}
