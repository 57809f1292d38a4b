using System.Runtime.InteropServices;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// The blocked GEMM across its block boundaries (MC rows, KC depth, panel width, unit columns) and the work split
/// the runtime hands to the pool, against a float64 loop, for every weight dtype.
/// </summary>
[Trait("Category", "Kernel")]
public unsafe class GemmBlockingTests
{
    public static IEnumerable<object[]> Shapes()
    {
        foreach (var dt in new[] { DType.F32, DType.F16, DType.BF16 })
            foreach (var (m, n, k) in new[] { (150, 37, 300), (7, 300, 520), (145, 33, 257), (128, 70, 17), (1, 1, 600), (289, 1, 9), (128, 290, 777), (20, 513, 1000) })
                foreach (int workers in new[] { 1, 2, 3 })
                    yield return new object[] { dt, m, n, k, workers };
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Planned_units_cover_the_output_once_and_match_float64(DType dt, int m, int n, int k, int workers)
    {
        var rng = new Random(m * 7 + n * 13 + k);
        var x = new float[m * k]; var wf = new float[n * k]; var bias = new float[n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < wf.Length; i++) wf[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < n; i++) bias[i] = (float)rng.NextDouble();
        var wbytes = new byte[n * k * dt.SizeOf()];
        DTypeConvert.FromFloat32(wf, dt, wbytes);
        var wq = new float[n * k];
        DTypeConvert.ToFloat32(wbytes, dt, wq);
        var y = Enumerable.Repeat(float.NaN, m * n).ToArray(); // every element must be written
        int units = Gemm.PlanUnits(m, n, workers, out int rows, out int cols);
        Assert.True(units >= 1);
        var scratch = (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.ScratchFloats(k) * 4), 64);
        try
        {
            fixed (float* xp = x, bp = bias, yp = y)
            fixed (byte* wp = wbytes)
                for (int u = units - 1; u >= 0; u--) Gemm.RunUnit(u, xp, m, k, wp, dt, n, bp, yp, rows, cols, scratch);
        }
        finally { NativeMemory.AlignedFree(scratch); }
        double tol = 2e-5 * Math.Max(1, Math.Sqrt(k) / 4);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = bias[j];
                for (int p = 0; p < k; p++) s += (double)x[i * k + p] * wq[j * k + p];
                double got = y[i * n + j];
                if (!(Math.Abs(s - got) <= tol * Math.Max(1, Math.Abs(s))))
                    Assert.Fail($"{dt} m={m} n={n} k={k} workers={workers}: y[{i},{j}] expected {s:R}, got {got:R}");
            }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Prepacked_weights_give_the_same_bits_as_per_call_packing(DType dt, int m, int n, int k, int workers)
    {
        var rng = new Random(m * 5 + n * 11 + k);
        var x = new float[m * k]; var wf = new float[n * k]; var bias = new float[n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < wf.Length; i++) wf[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < n; i++) bias[i] = (float)rng.NextDouble();
        var wbytes = new byte[n * k * dt.SizeOf()];
        DTypeConvert.FromFloat32(wf, dt, wbytes);
        var expected = new float[m * n];
        var y = Enumerable.Repeat(float.NaN, m * n).ToArray();
        int units = Gemm.PlanUnits(m, n, workers, out int rows, out int cols);
        var scratch = (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.ScratchFloats(k) * 4), 64);
        var packed = (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.PackedFloats(n, k) * 4), 64);
        try
        {
            fixed (float* xp = x, bp = bias, yp = y, ep = expected)
            fixed (byte* wp = wbytes)
            {
                Gemm.PackWeights(wp, dt, n, k, packed, scratch);
                for (int u = 0; u < units; u++) Gemm.RunUnit(u, xp, m, k, wp, dt, n, bp, ep, rows, cols, scratch);
                for (int u = units - 1; u >= 0; u--) Gemm.RunUnitPacked(u, xp, m, k, packed, n, bp, yp, rows, cols, scratch);
            }
        }
        finally { NativeMemory.AlignedFree(scratch); NativeMemory.AlignedFree(packed); }
        for (int i = 0; i < y.Length; i++)
            if (BitConverter.SingleToInt32Bits(y[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                Assert.Fail($"{dt} m={m} n={n} k={k} workers={workers}: y[{i / n},{i % n}] packed {y[i]:R}, per-call {expected[i]:R}");
    }

    [Fact]
    public void Packed_block_refuses_a_column_start_inside_a_panel()
    {
        var ex = Assert.Throws<ArgumentException>(() => Gemm.GemmBlockPacked(null, 0, 1, 4, null, 40, null, null, 3, 8, null));
        Assert.Contains("panel width", ex.Message);
    }

    [Fact]
    public void A_prompt_of_128_rows_is_split_into_enough_units_for_two_workers()
    {
        foreach (var (n, k) in new[] { (384, 384), (1536, 384), (2048, 5632) })
        {
            int units = Gemm.PlanUnits(128, n, 2, out int rows, out int cols);
            Assert.True(units >= 4, $"n={n}: {units} units");
            Assert.Equal(0, cols % Gemm.PanelWidth);
            Assert.True(rows >= 128);
        }
    }
}
