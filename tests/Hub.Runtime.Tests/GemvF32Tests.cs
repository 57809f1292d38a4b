using Hub.IR;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// The F32 decode GEMV variants (<see cref="GemvF32"/>) and <see cref="Gemm.GemvRows"/>' dispatch to them against a
/// float64 loop on odd row counts, depths with every tail, sub-ranges and bias on/off. Kernel category, so
/// <see cref="IsaSweepTests"/> re-runs it with AVX2 off (GemvRows must then fall back to Dot4 and still agree).
/// </summary>
[Trait("Category", "Kernel")]
public unsafe class GemvF32Tests
{
    private static readonly GemvF32.Variant[] Variants =
        [GemvF32.Variant.Rows4T0, GemvF32.Variant.Rows4T1, GemvF32.Variant.Rows4Nta, GemvF32.Variant.Rows4, GemvF32.Variant.Rows8T0, GemvF32.Variant.Rows1W,
         GemvF32.Variant.Rows4W];

    private static float[] Random(int count, int seed)
    {
        var r = new Random(seed);
        var a = new float[count];
        for (int i = 0; i < count; i++) a[i] = (float)(r.NextDouble() * 2 - 1);
        return a;
    }

    private static void Check(float[] x, float[] w, float[]? bias, float[] y, int m, int k, int n, int n0, int n1, string what)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                if (j < n0 || j >= n1) { Assert.True(float.IsNaN(y[(long)i * n + j]), $"{what}: y[{i},{j}] outside [{n0},{n1}) was written"); continue; }
                double s = bias?[j] ?? 0, mag = Math.Abs(s);
                for (int p = 0; p < k; p++) { double t = (double)x[(long)i * k + p] * w[(long)j * k + p]; s += t; mag += Math.Abs(t); }
                double got = y[(long)i * n + j];
                Assert.True(Math.Abs(got - s) <= 1e-5 * mag + 1e-6, $"{what}: y[{i},{j}] = {got}, expected {s} (m={m} k={k} n={n})");
            }
    }

    public static IEnumerable<object[]> Shapes()
    {
        int[] ns = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 67];
        int[] ks = [16, 17, 23, 24, 31, 32, 33, 47, 48, 63, 64, 67, 79, 127, 128, 129, 191, 256, 263, 264, 271];
        foreach (int n in ns)
            foreach (int k in ks)
                yield return [n, k];
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Every_variant_matches_float64_loop_on_odd_shapes(int n, int k)
    {
        if (!GemvF32.IsSupported) return;   // the ISA sweep's no-AVX2 children: GemvRows' fallback is covered below
        var x = Random(k, n * 1000 + k);
        var w = Random(n * k, n * 7 + k * 3);
        var bias = Random(n, n + k);
        var y = new float[n];
        fixed (float* xp = x, wp = w, bp = bias, yp = y)
            foreach (var v in Variants)
                foreach (bool withBias in new[] { false, true })
                    foreach (var (n0, n1) in new[] { (0, n), (n / 3, n - n / 4) })
                    {
                        Array.Fill(y, float.NaN);
                        GemvF32.Rows(xp, k, wp, withBias ? bp : null, yp, n0, n1, v);
                        Check(x, w, withBias ? bias : null, y, 1, k, n, n0, n1, $"{v} bias={withBias} [{n0},{n1})");
                    }
    }

    [Fact]
    public void GemvRows_matches_float64_loop_for_one_to_four_rows_on_every_depth()
    {
        // k 1..67 and 256+tails through the dispatch (GemvF32 where AVX2+FMA and k >= 16 with one row, Dot4 otherwise)
        var ks = Enumerable.Range(1, 67).Concat([256, 257, 263, 264, 271]);
        foreach (int k in ks)
            foreach (int n in new[] { 1, 3, 5, 8, 9, 67 })
                for (int m = 1; m <= 4; m++)
                {
                    var x = Random(m * k, k * 31 + n * 5 + m);
                    var w = Random(n * k, k + n);
                    var bias = Random(n, k * n);
                    var y = new float[m * n];
                    var scratch = new float[Gemm.ScratchFloats(k)];
                    fixed (float* xp = x, wp = w, bp = bias, yp = y, sp = scratch)
                        foreach (bool withBias in new[] { false, true })
                        {
                            Array.Fill(y, float.NaN);
                            Gemm.GemvRows(xp, m, k, (byte*)wp, DType.F32, n, withBias ? bp : null, yp, 0, n, sp);
                            Check(x, w, withBias ? bias : null, y, m, k, n, 0, n, $"GemvRows bias={withBias}");
                        }
                }
    }

    // Depths 16..130 and the bench models' depths with tails; row ranges whose length splits unevenly in 2 and 4.
    private static readonly int[] StreamDepths = [.. Enumerable.Range(16, 115), 768, 769, 783, 2048, 2063, 2111];

    [Fact]
    public void Multi_stream_rows_are_bit_identical_to_Rows1W_and_match_float64_loop()
    {
        // Rows4W and RowsStreams only change the order in which rows are visited (each row's sums run as in Rows1W), so
        // their outputs must equal Rows1W's bit for bit; without AVX-512 Rows4W and Rows1W both run Rows4 (the ISA sweep).
        if (!GemvF32.IsSupported) return;
        const int n = 23;
        foreach (int k in StreamDepths)
        {
            var x = Random(k, k);
            var w = Random(n * k, k * 3 + 1);
            var bias = Random(n, k + 7);
            var want = new float[n];
            var got = new float[n];
            fixed (float* xp = x, wp = w, bp = bias, yw = want, yg = got)
                foreach (bool withBias in new[] { false, true })
                    foreach (var (n0, n1) in new[] { (0, n), (0, 1), (3, 5), (2, 9), (5, 20), (1, 22), (7, 7) })
                    {
                        Array.Fill(want, float.NaN);
                        GemvF32.Rows(xp, k, wp, withBias ? bp : null, yw, n0, n1, GemvF32.Variant.Rows1W);
                        if (k <= 130 || k == 2063) Check(x, w, withBias ? bias : null, want, 1, k, n, n0, n1, $"Rows1W k={k} [{n0},{n1})");
                        foreach (var v in new[] { GemvF32.Variant.Rows4W })
                        {
                            Array.Fill(got, float.NaN);
                            GemvF32.Rows(xp, k, wp, withBias ? bp : null, yg, n0, n1, v);
                            AssertBitIdentical(want, got, $"{v} k={k} bias={withBias} [{n0},{n1})");
                        }
                        if (!System.Runtime.Intrinsics.X86.Avx512F.IsSupported) continue;
                        foreach (int streams in new[] { 1, 2, 4 })
                            foreach (int pf in new[] { 0, 1024, 8192 })
                            {
                                Array.Fill(got, float.NaN);
                                GemvF32.RowsStreams(xp, k, wp, withBias ? bp : null, yg, n0, n1, streams, pf);
                                AssertBitIdentical(want, got, $"RowsStreams({streams}, {pf}) k={k} bias={withBias} [{n0},{n1})");
                            }
                    }
        }
    }

    [Fact]
    public void Multi_stream_rows_on_two_threads_equal_one_thread_Rows1W()
    {
        // As LinearExec runs them: units of a few rows claimed by two workers; each unit's streams are its own rows.
        if (!GemvF32.IsSupported) return;
        foreach (var (n, k) in new[] { (4096, 768), (771, 2063), (37, 130) })
        {
            var x = Random(k, n);
            var w = Random(n * k, n + k);
            var want = new float[n];
            fixed (float* xp = x, wp = w, yw = want) GemvF32.Rows(xp, k, wp, null, yw, 0, n, GemvF32.Variant.Rows1W);
            foreach (var v in new[] { GemvF32.Variant.Rows4W })
            {
                var got = new float[n];
                int unit = ((n + 31) / 32 + 3) & ~3, units = (n + unit - 1) / unit, next = 0;
                nint xa, wa, ya;
                fixed (float* xp = x, wp = w, yg = got)
                {
                    (xa, wa, ya) = ((nint)xp, (nint)wp, (nint)yg);
                    Parallel.For(0, 2, new ParallelOptions { MaxDegreeOfParallelism = 2 }, _ =>
                    {
                        int u;
                        while ((u = Interlocked.Increment(ref next) - 1) < units)
                            GemvF32.Rows((float*)xa, k, (float*)wa, null, (float*)ya, u * unit, Math.Min(n, (u + 1) * unit), v);
                    });
                }
                AssertBitIdentical(want, got, $"{v} n={n} k={k} on 2 threads");
            }
        }
    }

    private static void AssertBitIdentical(float[] want, float[] got, string what)
    {
        for (int j = 0; j < want.Length; j++)
            Assert.True(BitConverter.SingleToInt32Bits(want[j]) == BitConverter.SingleToInt32Bits(got[j]), $"{what}: y[{j}] = {got[j]:R}, Rows1W gave {want[j]:R}");
    }

    [Fact]
    public void Rows_rejects_short_depth_and_bad_range()
    {
        if (!GemvF32.IsSupported)
        {
            Assert.Throws<PlatformNotSupportedException>(() => GemvF32.Rows(null, 16, null, null, null, 0, 0, GemvF32.Variant.Rows4T0));
            return;
        }
        var f = new float[64];
        fixed (float* p = f)
        {
            float* q = p;
            Assert.Throws<ArgumentOutOfRangeException>(() => GemvF32.Rows(q, 15, q, null, q, 0, 1, GemvF32.Variant.Rows4T0));
            Assert.Throws<ArgumentOutOfRangeException>(() => GemvF32.Rows(q, 16, q, null, q, 2, 1, GemvF32.Variant.Rows4T0));
            Assert.Throws<ArgumentOutOfRangeException>(() => GemvF32.Rows(q, 16, q, null, q, 0, 1, GemvF32.Variant.Dot4));
            if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported)
            {
                Assert.Throws<ArgumentOutOfRangeException>(() => GemvF32.RowsStreams(q, 16, q, null, q, 0, 1, 3, 0));
                Assert.Throws<ArgumentOutOfRangeException>(() => GemvF32.RowsStreams(q, 16, q, null, q, 0, 1, 2, -64));
                Assert.Throws<ArgumentOutOfRangeException>(() => GemvF32.RowsStreams(q, 15, q, null, q, 0, 1, 2, 0));
            }
            else Assert.Throws<PlatformNotSupportedException>(() => GemvF32.RowsStreams(q, 16, q, null, q, 0, 1, 2, 0));
        }
    }
}

/// <summary>
/// F32 decode GEMV streaming from DRAM (HUB_BENCH=1 only; prints, asserts nothing about time): the small model's
/// per-token weight set (12 × [2304+768+4096+768 rows × 768] + lm_head 32000 × 768, 418 MiB) run as LinearExec does
/// (units of ~1/32 of the rows claimed dynamically) on HUB_BENCH_THREADS threads (default 2), variants alternating,
/// medians of 7 rounds, against a plain read of the same bytes. HUB_BENCH_VARIANTS names: a <see cref="GemvF32.Variant"/>,
/// Dot4, read (plain 64-byte steps), readpf&lt;bytes&gt; (with prefetcht0 that far ahead), read1z (512-bit loads),
/// read1/read4 (the read probe's one- and four-stream patterns over each unit), S&lt;streams&gt;P&lt;bytes&gt;
/// (<see cref="GemvF32.RowsStreams"/>: S1P8192 is Rows1W, S4P1024 Rows4W); a suffix @&lt;n&gt; runs that variant with n
/// units per worker instead of 16. HUB_BENCH_MODEL=1b, HUB_BENCH_K (row length), HUB_BENCH_ROUNDS (7).
/// </summary>
public unsafe class GemvF32Bench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void F32_decode_gemv_streaming()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the benchmark");
        Skip.IfNot(GemvF32.IsSupported, "needs AVX2+FMA");
        int threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2);
        // HUB_BENCH_MODEL=1b: 4 layers of the 1b model's K = 2048 matrices (qkv 2560, o 2048, gate_up 11264 rows) + head.
        bool big = Environment.GetEnvironmentVariable("HUB_BENCH_MODEL") == "1b";
        int k = BenchFeed.EnvInt("HUB_BENCH_K", big ? 2048 : 768);   // HUB_BENCH_K: another row length on the same row counts
        var mats = new List<int>();
        for (int l = 0; l < (big ? 4 : 12); l++) mats.AddRange(big ? [2560, 2048, 11264] : [2304, 768, 4096, 768]);
        mats.Add(32000);
        long total = mats.Sum(r => (long)r * k);
        float* w = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(total * 4), 4096);
        float* x = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)k * 4 * 8, 64);
        float* y = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(32000 * 4, 64);
        try
        {
            for (long i = 0; i < total; i++) w[i] = (i % 97) * 0.001f;
            for (int i = 0; i < k; i++) x[i] = 1f / (i + 1);
            var names = Environment.GetEnvironmentVariable("HUB_BENCH_VARIANTS")?.Split(',') ?? ["Dot4", "Rows4T0", "Rows4T1", "Rows4Nta", "Rows4", "Rows8T0", "read"];
            var times = names.Select(_ => new List<double>()).ToArray();
            var scratch = new float[Gemm.ScratchFloats(k)];
            double sink = 0;
            int rounds = BenchFeed.EnvInt("HUB_BENCH_ROUNDS", 7);
            for (int round = 0; round < rounds; round++)
                for (int c = 0; c < names.Length; c++)
                {
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    for (int rep = 0; rep < 3; rep++)
                    {
                        long off = 0;
                        foreach (int rows in mats)
                        {
                            float* wm = w + off;
                            // <variant>@<n>: n units per worker instead of LinearExec's 16
                            string name = names[c];
                            int perWorker = 16;
                            if (name.IndexOf('@') is > 0 and var uat) { perWorker = int.Parse(name.AsSpan(uat + 1)); name = name[..uat]; }
                            int units = Math.Min(threads * perWorker, (rows + 31) / 32);
                            int unitCols = ((rows + units - 1) / units + 3) & ~3;
                            units = (rows + unitCols - 1) / unitCols;
                            int next = 0;
                            double[] sums = new double[threads];
                            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, wk =>
                            {
                                int u;
                                while ((u = Interlocked.Increment(ref next) - 1) < units)
                                {
                                    int c0 = u * unitCols, c1 = Math.Min(rows, c0 + unitCols);
                                    if (name.StartsWith("readpf", StringComparison.Ordinal))
                                    {
                                        // a plain read with prefetcht0 this many bytes ahead (readpf8192: 8 KiB)
                                        int ahead = int.Parse(name.AsSpan(6)) / 4;
                                        var acc = System.Runtime.Intrinsics.Vector256<float>.Zero;
                                        float* s = wm + (long)c0 * k, e = wm + (long)c1 * k;
                                        for (; s < e; s += 16)
                                        {
                                            System.Runtime.Intrinsics.X86.Sse.Prefetch0(s + ahead);
                                            acc += System.Runtime.Intrinsics.Vector256.Load(s) + System.Runtime.Intrinsics.Vector256.Load(s + 8);
                                        }
                                        sums[wk] += System.Runtime.Intrinsics.Vector256.Sum(acc);
                                    }
                                    else if (name == "read")
                                    {
                                        var acc = System.Runtime.Intrinsics.Vector256<float>.Zero;
                                        float* s = wm + (long)c0 * k, e = wm + (long)c1 * k;
                                        for (; s < e; s += 16) acc += System.Runtime.Intrinsics.Vector256.Load(s) + System.Runtime.Intrinsics.Vector256.Load(s + 8);
                                        sums[wk] += System.Runtime.Intrinsics.Vector256.Sum(acc);
                                    }
                                    else if (name == "read1z")
                                    {
                                        // read1 with 512-bit loads (the width Rows1W loads with)
                                        var acc = System.Runtime.Intrinsics.Vector512<float>.Zero; var acc2 = acc;
                                        float* s = wm + (long)c0 * k, e = wm + (long)c1 * k;
                                        for (; s < e; s += 32) { acc += System.Runtime.Intrinsics.Vector512.Load(s); acc2 += System.Runtime.Intrinsics.Vector512.Load(s + 16); }
                                        sums[wk] += System.Runtime.Intrinsics.Vector512.Sum(acc + acc2);
                                    }
                                    else if (name is "read1" or "read4")
                                        sums[wk] += ProbeRead((byte*)(wm + (long)c0 * k), (long)(c1 - c0) * k * 4, name == "read4");
                                    else if (name.Length > 1 && name[0] == 'S' && name.IndexOf('P') is > 1 and var at)
                                        // S<streams>P<bytes>: the multi-stream one-row loop (S1P8192 is Rows1W)
                                        GemvF32.RowsStreams(x, k, wm, null, y, c0, c1, int.Parse(name.AsSpan(1, at - 1)), int.Parse(name.AsSpan(at + 1)));
                                    else if (name == "Dot4")
                                        fixed (float* sp = scratch) Gemm.GemvRows(x, 1, k, (byte*)wm, DType.F32, rows, null, y, c0, c1, sp);
                                    else GemvF32.Rows(x, k, wm, null, y, c0, c1, Enum.Parse<GemvF32.Variant>(name));
                                }
                            });
                            sink += sums.Sum();
                            off += (long)rows * k;
                        }
                    }
                    times[c].Add(sw.Elapsed.TotalSeconds / 3);
                }
            for (int c = 0; c < names.Length; c++)
            {
                double med = times[c].Order().ElementAt(times[c].Count / 2), best = times[c].Min();
                // per-round speed against the first variant of the same round: steadier than absolute times under load
                double ratio = times[c].Zip(times[0], (a, b) => b / a).Order().ElementAt(times[c].Count / 2);
                output.WriteLine($"{names[c],-10} {threads} thr: median {med * 1e3,7:F2} ms/token ({total * 4 / med / 1e9,5:F2} GB/s), best {best * 1e3,7:F2} ms ({total * 4 / best / 1e9,5:F2} GB/s), speed vs {names[0]} {ratio:F3}");
            }
            output.WriteLine($"(sink {sink:E1}, {total * 4 / 1048576.0:F0} MiB per token)");
            output.WriteLine($"(units as LinearExec: min({threads}·16, rows/32) per matrix; model {(big ? "1b" : "small")}, K = {k}, rounds {rounds})");
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(w);
            System.Runtime.InteropServices.NativeMemory.AlignedFree(x);
            System.Runtime.InteropServices.NativeMemory.AlignedFree(y);
        }
    }

    // The read probe's two patterns (Hub.Cli ReadProbe) over one unit's bytes: one plain stream of 128-byte steps, or
    // the bytes split in 4 contiguous quarters read round-robin, 128 B each per step, prefetcht0 1 KiB ahead of each;
    // a tail that does not split in whole steps is read plainly.
    private static float ProbeRead(byte* p, long bytes, bool multi)
    {
        const int Step = 128, Streams = 4, Ahead = 1024;
        var a0 = System.Runtime.Intrinsics.Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
        long done = 0;
        if (multi)
        {
            long per = bytes / (Streams * Step) * Step;
            for (long at = 0; at < per; at += Step)
                for (int s = 0; s < Streams; s++)
                {
                    byte* q = p + s * per + at;
                    if (at + Ahead < per) { System.Runtime.Intrinsics.X86.Sse.Prefetch0(q + Ahead); System.Runtime.Intrinsics.X86.Sse.Prefetch0(q + Ahead + 64); }
                    a0 += System.Runtime.Intrinsics.Vector256.Load((float*)q); a1 += System.Runtime.Intrinsics.Vector256.Load((float*)(q + 32));
                    a2 += System.Runtime.Intrinsics.Vector256.Load((float*)(q + 64)); a3 += System.Runtime.Intrinsics.Vector256.Load((float*)(q + 96));
                }
            done = per * Streams;
        }
        for (long at = done; at + Step <= bytes; at += Step)
        {
            a0 += System.Runtime.Intrinsics.Vector256.Load((float*)(p + at)); a1 += System.Runtime.Intrinsics.Vector256.Load((float*)(p + at + 32));
            a2 += System.Runtime.Intrinsics.Vector256.Load((float*)(p + at + 64)); a3 += System.Runtime.Intrinsics.Vector256.Load((float*)(p + at + 96));
        }
        return System.Runtime.Intrinsics.Vector256.Sum(a0 + a1 + a2 + a3);
    }
}
