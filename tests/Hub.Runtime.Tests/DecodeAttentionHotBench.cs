using System.Diagnostics;
using System.Runtime.InteropServices;
using Hub.Runtime.Kernels;
using Xunit.Abstractions;

namespace Hub.Runtime.Tests;

/// <summary>
/// The f16 decode attention kernel's compute cost alone (HUB_BENCH=1 only; prints, asserts nothing about time): one
/// query row of HUB_BENCH_GROUP heads (default 1) over HUB_BENCH_CTX positions (default 256) × 64 of one kv head held
/// in L1/L2, called back to back; nanoseconds per key, median of 41 passes of 2000 calls. HUB_BENCH_VSCALE scales the
/// keys and values (1e-5: mostly f16 subnormals, which cost nothing extra on Zen 5).
/// </summary>
[Collection(nameof(AttentionStaticsCollection))]
public unsafe class DecodeAttentionHotBench(ITestOutputHelper output)
{
    [SkippableFact]
    public void Decode_attention_hot_ns_per_key()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the benchmark");
        int ctx = BenchFeed.EnvInt("HUB_BENCH_CTX", 256), g = BenchFeed.EnvInt("HUB_BENCH_GROUP", 1), hd = 64, calls = 2000;
        var rng = new Random(3);
        var k = new ushort[ctx * hd]; var v = new ushort[ctx * hd];
        // HUB_BENCH_VSCALE: the keys and values × this (1e-5: most of them f16 subnormals)
        double vs = double.Parse(Environment.GetEnvironmentVariable("HUB_BENCH_VSCALE") ?? "1", System.Globalization.CultureInfo.InvariantCulture);
        for (int i = 0; i < k.Length; i++) { k[i] = BitConverter.HalfToUInt16Bits((Half)((rng.NextDouble() * 2 - 1) * vs)); v[i] = BitConverter.HalfToUInt16Bits((Half)((rng.NextDouble() * 2 - 1) * vs)); }
        var q = new float[g * hd]; var o = new float[g * hd];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 2 - 1);
        var scratch = new float[AttentionKernels.ScratchFloats(g, hd) + 64];
        var times = new List<double>();
        var sw = new Stopwatch();
        // HUB_BENCH_PREFETCH_KEYS: PrefetchHalfKeys for the run (a value past the context leaves the kernel's key
        // prefetches out: their instructions' cost in a hot cache)
        int pk = BenchFeed.EnvInt("HUB_BENCH_PREFETCH_KEYS", AttentionKernels.PrefetchHalfKeys), pk0 = AttentionKernels.PrefetchHalfKeys;
        AttentionKernels.PrefetchHalfKeys = pk;
        try
        {
            fixed (ushort* kp = k, vp = v)
            fixed (float* qp = q, op = o, sp = scratch)
                for (int rep = 0; rep < 41; rep++)
                {
                    sw.Restart();
                    for (int c = 0; c < calls; c++) AttentionKernels.AttendRowHalf(qp, g, hd, kp, vp, hd, ctx, null, 0.125f, op, sp);
                    times.Add(sw.Elapsed.TotalMilliseconds * 1e6 / calls / ctx);
                }
        }
        finally { AttentionKernels.PrefetchHalfKeys = pk0; }
        output.WriteLine($"hot f16 decode attention, group {g}, {ctx} keys x {hd}, keys prefetched {pk} ahead: {times.Order().ElementAt(times.Count / 2):F2} ns per key (min {times.Min():F2})");
    }
}
