using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Hub.IR;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// F16 decode GEMV streaming from DRAM (HUB_BENCH=1 only; prints, asserts nothing about time): HUB_BENCH_LAYERS (default
/// 4) layers of the 1b model's weights (gate_up 11264, qkv 2560, o 2048 rows × 2048; down 2048 × 5632) plus the
/// 32000 × 2048 head, run as LinearExec does (units of ~1/32 of the rows claimed dynamically) on HUB_BENCH_THREADS
/// threads (default 2), the AVX2 and the 512-bit kernel alternating with a plain read of the same bytes, medians of
/// HUB_BENCH_ROUNDS rounds (default 7) and of per-round speed ratios; variants bf16 / bf16avx2 run the same bytes as
/// BF16 weights through Gemm.GemvRows (512-bit Bf16Rows / AVX2 Dot4Half). HUB_BENCH_MODEL=small uses the small model's
/// shapes (768 wide, 2048 MLP) instead.
/// </summary>
public unsafe class HalfGemvStreamBench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void F16_decode_gemv_streaming()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the benchmark");
        Skip.IfNot(HalfGemv.IsSupported, "needs AVX2+FMA");
        int threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2);
        int layers = BenchFeed.EnvInt("HUB_BENCH_LAYERS", 4);
        bool small = Environment.GetEnvironmentVariable("HUB_BENCH_MODEL") == "small";
        var mats = new List<(int Rows, int K)>();
        for (int i = 0; i < layers; i++)
            mats.AddRange(small ? [(2304, 768), (768, 768), (4096, 768), (768, 2048)] : [(2560, 2048), (2048, 2048), (11264, 2048), (2048, 5632)]);
        mats.Add(small ? (32000, 768) : (32000, 2048));
        long total = mats.Sum(m => (long)m.Rows * m.K);
        int kMax = mats.Max(m => m.K);
        ushort* w = (ushort*)NativeMemory.AlignedAlloc((nuint)(total * 2), 4096);
        float* x = (float*)NativeMemory.AlignedAlloc((nuint)kMax * 4, 64);
        float* xp = (float*)NativeMemory.AlignedAlloc((nuint)kMax * 4, 64);
        float* y = (float*)NativeMemory.AlignedAlloc(32000 * 4, 64);
        bool wide0 = HalfGemv.Wide;
        try
        {
            for (long i = 0; i < total; i++) w[i] = BitConverter.HalfToUInt16Bits((Half)((i % 97) * 0.001f));
            for (int i = 0; i < kMax; i++) x[i] = 1f / (i + 1);
            var names = Environment.GetEnvironmentVariable("HUB_BENCH_VARIANTS")?.Split(',') ?? ["avx2", "wide", "read"];
            var times = names.Select(_ => new List<double>()).ToArray();
            var scratch = Enumerable.Range(0, threads).Select(_ => new float[Gemm.ScratchFloats(kMax)]).ToArray();
            var byShape = names.Select(_ => new Dictionary<(int, int), List<double>>()).ToArray();
            double sink = 0;
            int roundsN = BenchFeed.EnvInt("HUB_BENCH_ROUNDS", 7);
            for (int round = 0; round < roundsN; round++)
                for (int c = 0; c < names.Length; c++)
                {
                    string name = names[c];
                    bool read = name == "read";
                    // bf16 / bf16avx2: the same bytes as BF16 weights through Gemm.GemvRows (Bf16Rows / Dot4Half).
                    bool bf16 = name.StartsWith("bf16", StringComparison.Ordinal);
                    if (!read) HalfGemv.Wide = (name == "wide" || name == "bf16") && wide0;
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    for (int rep = 0; rep < 2; rep++)
                    {
                        long off = 0;
                        int prepared = -1; double scale = 1;
                        var shapeTime = new Dictionary<(int, int), double>();
                        foreach (var (rows, k) in mats)
                        {
                            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                            ushort* wm = w + off;
                            if (!read && !bf16 && prepared != k) { scale = HalfGemv.PrepareX(x, k, xp); prepared = k; }
                            int units = Math.Min(threads * 16, (rows + 31) / 32);
                            int unitCols = ((rows + units - 1) / units + 3) & ~3;
                            units = (rows + unitCols - 1) / unitCols;
                            int next = 0;
                            double[] sums = new double[threads];
                            double sc = scale; int kk = k;
                            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, wk =>
                            {
                                int u;
                                while ((u = Interlocked.Increment(ref next) - 1) < units)
                                {
                                    int c0 = u * unitCols, c1 = Math.Min(rows, c0 + unitCols);
                                    if (read)
                                    {
                                        var acc = Vector256<ushort>.Zero;
                                        ushort* s = wm + (long)c0 * kk, e = wm + (long)c1 * kk;
                                        for (; s < e; s += 32) acc += Vector256.Load(s) ^ Vector256.Load(s + 16);
                                        sums[wk] += Vector256.Sum(acc);
                                    }
                                    else if (bf16)
                                        fixed (float* sp = scratch[wk]) Gemm.GemvRows(x, 1, kk, (byte*)wm, DType.BF16, rows, null, y, c0, c1, sp);
                                    else HalfGemv.Rows(xp, sc, x, kk, wm, null, y, c0, c1);
                                }
                            });
                            sink += sums.Sum() + y[0];
                            off += (long)rows * k;
                            shapeTime[(rows, k)] = shapeTime.GetValueOrDefault((rows, k)) + System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
                        }
                        foreach (var (key, v) in shapeTime)
                        {
                            if (!byShape[c].TryGetValue(key, out var list)) byShape[c][key] = list = new List<double>();
                            list.Add(v);
                        }
                    }
                    times[c].Add(sw.Elapsed.TotalSeconds / 2);
                }
            for (int c = 0; c < names.Length; c++)
            {
                double med = times[c].Order().ElementAt(times[c].Count / 2), best = times[c].Min();
                // per-round time ratio against the first variant run in the same round: steadier than absolute times under load
                double ratio = times[c].Zip(times[0], (a, b) => b / a).Order().ElementAt(times[c].Count / 2);
                output.WriteLine($"{names[c],-10} {threads} thr: median {med * 1e3,7:F2} ms/token ({total * 2 / med / 1e9,5:F2} GB/s), best {best * 1e3,7:F2} ms ({total * 2 / best / 1e9,5:F2} GB/s), speed vs {names[0]} {ratio:F3}");
            }
            foreach (var key in byShape[0].Keys)
            {
                long bytes = mats.Where(m => m == key).Sum(m => (long)m.Rows * m.K * 2);
                output.WriteLine($"  [{key.Item1} x {key.Item2}] " + string.Join("  ", names.Select((nm, c) =>
                {
                    var l = byShape[c][key]; double med = l.Order().ElementAt(l.Count / 2);
                    return $"{nm} {bytes / med / 1e9:F1}";
                })) + " GB/s");
            }
            output.WriteLine($"(sink {sink:E1}, {total * 2 / 1048576.0:F0} MiB per token)");
        }
        finally
        {
            HalfGemv.Wide = wide0;
            NativeMemory.AlignedFree(w);
            NativeMemory.AlignedFree(x);
            NativeMemory.AlignedFree(xp);
            NativeMemory.AlignedFree(y);
        }
    }

    /// <summary>
    /// In-process decode A/B of the 512-bit GEMV kernels (F16 HalfGemv, F32 GemvF32.Rows1W) on an exported IR folder
    /// (HUB_BENCH=1 and HUB_BENCH_IR): segments of 16 decode steps alternate the AVX2 and the 512-bit kernels (the order flips every round, as the cache
    /// grows) for HUB_BENCH_ROUNDS rounds (default 8); prints median tok/s of each and the median per-round ratio.
    /// </summary>
    [SkippableFact]
    public void Decode_ab_of_wide_gemv_on_an_ir_folder()
    {
        var dir = Environment.GetEnvironmentVariable("HUB_BENCH_IR");
        Skip.If(Environment.GetEnvironmentVariable("HUB_BENCH") != "1" || dir is null, "set HUB_BENCH=1 and HUB_BENCH_IR=<ir folder>");
        Skip.IfNot(HalfGemv.Wide, "needs AVX-512");
        int threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2);
        int rounds = BenchFeed.EnvInt("HUB_BENCH_ROUNDS", 8);
        using var ir = IrModel.Load(dir!);
        using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 8192 });
        using var req = cm.CreateInferRequest();
        var names = ir.Graph.Inputs.Select(i => i.Name).ToHashSet();
        int[] id = { 1 }, pos = { 0 };
        var ones = Enumerable.Repeat(1f, 8 + rounds * 2 * 16 + 1).ToArray();
        void Step() => BenchFeed.DecodeStep(req, names, id, pos, ref ones);
        bool wide0 = HalfGemv.Wide;
        var f32Default = GemvF32.Default;
        try
        {
            for (int s = 0; s < 8; s++) { Set(s % 2 == 1); Step(); }
            var tps = new[] { new List<double>(), new List<double>() };
            var ratios = new List<double>();
            for (int r = 0; r < rounds; r++)
            {
                var seg = new double[2];
                foreach (int on in r % 2 == 0 ? new[] { 0, 1 } : new[] { 1, 0 })
                {
                    Set(on == 1);
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    for (int s = 0; s < 16; s++) Step();
                    seg[on] = 16 / sw.Elapsed.TotalSeconds;
                    tps[on].Add(seg[on]);
                }
                ratios.Add(seg[1] / seg[0]);
            }
            double Med(List<double> l) => l.Order().ElementAt(l.Count / 2);
            output.WriteLine($"AVX2 kernels {Med(tps[0]):F2} tok/s, 512-bit kernels {Med(tps[1]):F2} tok/s, median ratio {Med(ratios):F3} ({rounds} rounds of 2 × 16 steps, {threads} threads)");
        }
        finally { HalfGemv.Wide = wide0; GemvF32.Default = f32Default; }

        // F16: the 512-bit HalfGemv loop against the AVX2 one; F32: Rows1W against Rows4.
        void Set(bool on)
        {
            HalfGemv.Wide = on && wide0;
            GemvF32.Default = on ? GemvF32.Variant.Rows1W : GemvF32.Variant.Rows4;
        }
    }
}
