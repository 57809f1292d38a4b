using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Hub.Runtime.Kernels;
using Xunit.Abstractions;

namespace Hub.Runtime.Tests;

/// <summary>
/// Decode attention kernels alone (HUB_BENCH=1 only; prints, asserts nothing about time): one query row against a
/// small-model-shaped KV cache (HUB_BENCH_LAYERS layers × HUB_BENCH_HEADS kv heads × HUB_BENCH_CTX positions ×
/// HUB_BENCH_HEADDIM, default 12 × 12 × 192 × 64, HUB_BENCH_GROUP query heads per kv head, default 1), one thread's CPU
/// time, two kernels (HUB_BENCH_KERNELS, default PerKey,Default) alternating call by call, each call either on a cache
/// just evicted by streaming 64 MiB (as in decode, where the weights pass through L3 between two layers' reads) or on a
/// hot one. Medians of the per-pass times. HUB_BENCH_CAP (positions per kv head's region, default the context) spaces
/// the heads as a model's MaxContext does. Kernel names: the f32 RowKernel values; Read and ReadHalf (the read-probe
/// pattern over the f32 or the f16 rows a kernel reads: the roof); on an f16 copy of the same cache, Half
/// (AttendRowHalf), Half4 (its per-head kernel without the 16-key scores), Half256 (without the 512-bit micro-kernels of
/// either of its kernels), HalfRegs (its per-head
/// kernel, widening in registers, at every group size), HalfLanes (its heads-in-lanes kernel at every group size) and HalfWiden
/// (the head's whole K/V widened into an f32 buffer, then the Default f32 kernel: the session-9 decode path for groups
/// of 4 and more); a name ending in @huge runs that f16 kernel on a copy of the cache on transparent huge pages (the
/// small model's shape at 256 positions, HUB_BENCH_CAP=8192: no difference against 4 KiB pages). HUB_BENCH_EVICT_MB
/// sets the eviction stream (default 64). 1b's shape: HUB_BENCH_LAYERS=22 HUB_BENCH_HEADS=4 HUB_BENCH_GROUP=8 HUB_BENCH_CTX=2048.
/// </summary>
[Collection(nameof(AttentionStaticsCollection))]
public unsafe class DecodeAttentionBench(ITestOutputHelper output)
{

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec { public long Sec, Nsec; }

    [DllImport("libc")]
    private static extern int clock_gettime(int clock, out Timespec ts);

    // This thread's CPU time (CLOCK_THREAD_CPUTIME_ID): on a shared machine, time the thread was not running is left out.
    private static double ThreadCpuMs() { clock_gettime(3, out var ts); return ts.Sec * 1e3 + ts.Nsec / 1e6; }

    [SkippableFact]
    public void Decode_attention_row_kernels()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the benchmark");
        int layers = BenchFeed.EnvInt("HUB_BENCH_LAYERS", 12), heads = BenchFeed.EnvInt("HUB_BENCH_HEADS", 12), ctx = BenchFeed.EnvInt("HUB_BENCH_CTX", 192), g = BenchFeed.EnvInt("HUB_BENCH_GROUP", 1), hd = BenchFeed.EnvInt("HUB_BENCH_HEADDIM", 64);
        // HUB_BENCH_CAP: positions each kv head's region holds (a model's MaxContext; default ctx), so that heads start
        // cap·hd apart on their own 4 KiB pages as in a decode step's cache; only the first ctx positions are touched
        int cap = Math.Max(ctx, BenchFeed.EnvInt("HUB_BENCH_CAP", ctx));
        long perLayer = (long)heads * cap * hd;
        nuint cacheBytes = (nuint)(2 * layers * perLayer * 4), evictBytes = (nuint)BenchFeed.EnvInt("HUB_BENCH_EVICT_MB", 64) << 20;
        long readBytes = 2L * layers * heads * ctx * hd * 4;
        float* kv = (float*)NativeMemory.AlignedAlloc(cacheBytes, 64);
        byte* evict = (byte*)NativeMemory.AlignedAlloc(evictBytes, 64);
        ushort* kvh = null, kvhHuge = null;
        byte* hugeRaw = null;
        nuint hugeMapped = 0;
        float* widen = (float*)NativeMemory.AlignedAlloc((nuint)(2L * ctx * hd * 4), 64);
        var q = new float[heads * g * hd]; var o = new float[heads * g * hd];
        var scratch = new float[AttentionKernels.ScratchFloats(g, hd)];
        try
        {
            var rng = new Random(3);
            for (long r = 0; r < 2L * layers * heads; r++)
                for (long i = r * cap * hd; i < (r * cap + ctx) * hd; i++) kv[i] = (float)(rng.NextDouble() * 2 - 1);
            for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 2 - 1);
            NativeMemory.Fill(evict, evictBytes, 1);
            var kernels = (Environment.GetEnvironmentVariable("HUB_BENCH_KERNELS") ?? "PerKey,Default").Split(',');
            kvh = (ushort*)NativeMemory.AlignedAlloc(cacheBytes / 2, 64);
            for (long r = 0; r < 2L * layers * heads; r++)
                for (long i = r * cap * hd; i < (r * cap + ctx) * hd; i++) kvh[i] = BitConverter.HalfToUInt16Bits((Half)kv[i]);
            if (kernels.Any(kn => kn.EndsWith("@huge", StringComparison.Ordinal)))
            {
                // "<kernel>@huge": the same f16 cache in a copy on transparent huge pages (an anonymous mapping, 2 MiB
                // aligned, MADV_HUGEPAGE), against the runtime's 4 KiB-paged states
                nuint hugeLen = (cacheBytes / 2 + (2u << 20) - 1) & ~(nuint)((2u << 20) - 1);
                hugeMapped = hugeLen + (2u << 20);
                hugeRaw = Mmap(null, hugeMapped, 3, 0x22, -1, 0);   // PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
                if (hugeRaw == (byte*)-1) throw new OutOfMemoryException("mmap of the huge-page copy failed");
                kvhHuge = (ushort*)(((nint)hugeRaw + (2 << 20) - 1) & ~(nint)((2 << 20) - 1));
                _ = Madvise(kvhHuge, hugeLen, 14);   // MADV_HUGEPAGE
                Buffer.MemoryCopy(kvh, kvhHuge, cacheBytes / 2, cacheBytes / 2);
                output.WriteLine(File.ReadAllLines("/proc/self/smaps_rollup").FirstOrDefault(l => l.StartsWith("AnonHugePages", StringComparison.Ordinal)) ?? "");
            }
            if (int.TryParse(Environment.GetEnvironmentVariable("HUB_BENCH_PREFETCH_KEYS"), out var pk)) AttentionKernels.PrefetchKeys = pk;
            AttentionKernels.PrefetchVWithK = Environment.GetEnvironmentVariable("HUB_BENCH_PREFETCH_V") == "1";
            // "<kernel>@huge": an f16 kernel on the copy of the cache on transparent huge pages
            var cfg = kernels.Select(kn => (Name: kn.Split('@')[0], Huge: kn.EndsWith("@huge", StringComparison.Ordinal))).ToArray();
            var times = new List<double>[2, 2] { { new(), new() }, { new(), new() } };
            long sink = 0;
            fixed (float* qp = q, op = o, sp = scratch)
                for (int rep = 0; rep < 41; rep++)
                    for (int cold = 0; cold < 2; cold++)
                        for (int v = 0; v < 2; v++)
                        {
                            int kv2 = (v + rep) & 1;
                            if (cold == 1) for (long i = 0; i < (long)evictBytes; i += 64) sink += evict[i];
                            double t0 = ThreadCpuMs();
                            for (int l = 0; l < layers; l++)
                                for (int h = 0; h < heads; h++)
                                {
                                    float* k = kv + (2L * l) * perLayer + (long)h * cap * hd, vv = kv + (2L * l + 1) * perLayer + (long)h * cap * hd;
                                    long ko = (2L * l) * perLayer + (long)h * cap * hd, vo = (2L * l + 1) * perLayer + (long)h * cap * hd;
                                    if (cfg[kv2].Name is "Half" or "Half4" or "HalfRegs" or "Half256" or "HalfLanes")
                                    {
                                        string kn = cfg[kv2].Name;
                                        AttentionKernels.UseHalfRowKeys16 = kn != "Half4";
                                        AttentionKernels.UseHalfGroup512 = kn != "Half256";
                                        AttentionKernels.UseHalfRow512 = kn != "Half256";
                                        AttentionKernels.HalfGroupMinGroup = kn switch { "Half" or "Half256" => 3, "HalfLanes" => 1, _ => int.MaxValue };
                                        ushort* kvc = cfg[kv2].Huge ? kvhHuge : kvh;
                                        AttentionKernels.AttendRowHalf(qp + h * g * hd, g, hd, kvc + ko, kvc + vo, hd, ctx, null, 0.125f, op + h * g * hd, sp);
                                    }
                                    else if (cfg[kv2].Name is "Read" or "ReadHalf")
                                        sink += ReadRows(cfg[kv2].Name == "Read" ? (byte*)k : (byte*)((cfg[kv2].Huge ? kvhHuge : kvh) + ko), cfg[kv2].Name == "Read" ? (byte*)vv : (byte*)((cfg[kv2].Huge ? kvhHuge : kvh) + vo), (long)ctx * hd * (cfg[kv2].Name == "Read" ? 4 : 2));
                                    else if (cfg[kv2].Name == "HalfWiden")
                                    {
                                        AttentionKernels.WidenHalf(kvh + ko, widen, (long)ctx * hd);
                                        AttentionKernels.WidenHalf(kvh + vo, widen + (long)ctx * hd, (long)ctx * hd);
                                        AttentionKernels.AttendRow(qp + h * g * hd, g, hd, widen, widen + (long)ctx * hd, hd, ctx, null, 0.125f, op + h * g * hd, sp);
                                    }
                                    else AttentionKernels.AttendRowWith(qp + h * g * hd, g, hd, k, vv, hd, ctx, null, 0.125f, op + h * g * hd, sp, Enum.Parse<AttentionKernels.RowKernel>(cfg[kv2].Name));
                                }
                            if (rep > 0) times[cold, kv2].Add(ThreadCpuMs() - t0);
                        }
            double Med(List<double> l) => l.Order().ElementAt(l.Count / 2);
            double mb = readBytes / 1e6;
            output.WriteLine($"{layers} layers x {heads} kv heads x group {g} x {ctx} positions x {hd}: {mb:F1} MB of f32 K/V per pass (half of it in f16) (sink {sink & 1})");
            for (int cold = 0; cold < 2; cold++)
                for (int v = 0; v < 2; v++)
                {
                    // bytes the kernel reads: the f16 copy's for the f16 kernels (HalfWiden also writes the f32 widening)
                    double read = kernels[v].StartsWith("Half", StringComparison.Ordinal) || kernels[v] == "ReadHalf" ? mb / 2 : mb;
                    output.WriteLine($"  {(cold == 1 ? "cold" : "hot "),-5} {kernels[v],-12} {Med(times[cold, v]):F3} ms  {read / Med(times[cold, v]):F1} GB/s of K/V read");
                }
        }
        finally
        {
            NativeMemory.AlignedFree(kv);
            NativeMemory.AlignedFree(evict);
            NativeMemory.AlignedFree(widen);
            AttentionKernels.HalfGroupMinGroup = 3;
            AttentionKernels.UseHalfGroup512 = true;
            AttentionKernels.UseHalfRow512 = true;
            AttentionKernels.UseHalfRowKeys16 = true;
            if (kvh != null) NativeMemory.AlignedFree(kvh);
            if (hugeRaw != null && hugeRaw != (byte*)-1) _ = Munmap(hugeRaw, hugeMapped);
        }
    }

    [DllImport("libc", EntryPoint = "mmap")]
    private static extern byte* Mmap(byte* addr, nuint length, int prot, int flags, int fd, long offset);

    [DllImport("libc", EntryPoint = "munmap")]
    private static extern int Munmap(byte* addr, nuint length);

    [DllImport("libc", EntryPoint = "madvise")]
    private static extern int Madvise(void* addr, nuint length, int advice);

    // The read-probe pattern (ReadProbe's plain stream: four 32-byte loads summed per 128 bytes) over one head's keys
    // then its values: what a pass costs that only reads the bytes a kernel must.
    private static long ReadRows(byte* k, byte* v, long bytes) => (long)(ReadStream(k, bytes) + ReadStream(v, bytes)) & 1;

    private static float ReadStream(byte* p, long bytes)
    {
        var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
        for (long at = 0; at + 128 <= bytes; at += 128)
        {
            a0 += Vector256.Load((float*)(p + at)); a1 += Vector256.Load((float*)(p + at + 32));
            a2 += Vector256.Load((float*)(p + at + 64)); a3 += Vector256.Load((float*)(p + at + 96));
        }
        return Vector256.Sum(a0 + a1 + a2 + a3);
    }

    /// <summary>
    /// WidenHalf (HUB_BENCH_CTX × 64 halves a call, default 2048: one head's prefill widening) and NarrowToHalf (64
    /// floats a call, 4096 calls: one appended row a call, as the cache append) with Vector512 steps against Vector256
    /// steps, alternating rep by rep, medians of one thread's CPU time (HUB_BENCH=1 only).
    /// </summary>
    [SkippableFact]
    public void Half_conversion_widths()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the benchmark");
        int n = BenchFeed.EnvInt("HUB_BENCH_CTX", 2048) * 64, rowLen = 64, rowCalls = 4096;
        var f = new float[n]; var h = new ushort[n];
        var rng = new Random(5);
        for (int i = 0; i < n; i++) f[i] = (float)(rng.NextDouble() * 4 - 2);
        var times = new List<double>[2, 2] { { new(), new() }, { new(), new() } };
        try
        {
            fixed (float* fp = f)
            fixed (ushort* hp = h)
            {
                AttentionKernels.NarrowToHalf(fp, hp, n);
                for (int rep = 0; rep < 61; rep++)
                    for (int w = 0; w < 2; w++)
                    {
                        int wide = (w + rep) & 1;
                        AttentionKernels.Conversions512 = wide == 1;
                        double t0 = ThreadCpuMs();
                        AttentionKernels.WidenHalf(hp, fp, n);
                        double t1 = ThreadCpuMs();
                        for (int c = 0; c < rowCalls; c++)
                        {
                            long at = (long)(c % (n / rowLen)) * rowLen;
                            AttentionKernels.NarrowToHalf(fp + at, hp + at, rowLen);
                        }
                        double t2 = ThreadCpuMs();
                        if (rep > 0) { times[0, wide].Add(t1 - t0); times[1, wide].Add(t2 - t1); }
                    }
            }
        }
        finally { AttentionKernels.Conversions512 = true; }
        double Med(List<double> l) => l.Order().ElementAt(l.Count / 2);
        output.WriteLine($"WidenHalf {n} halves: Vector256 {Med(times[0, 0]) * 1e3:F1} us, Vector512 {Med(times[0, 1]) * 1e3:F1} us, ratio 256/512 {Med(times[0, 0]) / Med(times[0, 1]):F2}");
        output.WriteLine($"NarrowToHalf {rowCalls} x {rowLen}: Vector256 {Med(times[1, 0]) * 1e3:F1} us, Vector512 {Med(times[1, 1]) * 1e3:F1} us, ratio 256/512 {Med(times[1, 0]) / Med(times[1, 1]):F2}");
    }
}
