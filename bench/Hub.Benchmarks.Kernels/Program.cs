// GEMM (and attention) kernel throughput in GFLOP/s on 1 and N threads, next to the machine's FMA peak measured by an
// FMA-only loop on the same pool threads. Every round times the FMA loop right before the kernel. Two views:
//  - wall: GFLOP/s by the clock, and its ratio to the FMA loop's wall GFLOP/s of the same round;
//  - cpu: GFLOP per CPU-second the process used (pool spin-waits included), and its ratio to the FMA loop's GFLOP per
//    CPU-second — the kernel's efficiency per core, which stays meaningful when neighbours steal cycles on a shared
//    machine (a quiet machine gives wall ≈ cpu × threads).
//   dotnet run -c Release --project bench/Hub.Benchmarks.Kernels [-- --threads 2 --rounds 7 --dtype f32 --quick]
using Hub.Benchmarks;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Hub;
using Hub.Runtime;
using Hub.Runtime.Kernels;
using Hub.Runtime.Threading;

var opts = new Dictionary<string, string>(StringComparer.Ordinal);
var flags = new HashSet<string>(StringComparer.Ordinal);
for (int i = 0; i < args.Length; i++)
{
    var a = args[i].TrimStart('-');
    if (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal)) opts[a] = args[++i];
    else flags.Add(a);
}
int maxThreads = opts.TryGetValue("threads", out var t) ? int.Parse(t, CultureInfo.InvariantCulture) : 2;
int rounds = opts.TryGetValue("rounds", out var r) ? int.Parse(r, CultureInfo.InvariantCulture) : 7;
var dtypes = (opts.TryGetValue("dtype", out var d) ? d : "f32").Split(',').Select(s => s.ToLowerInvariant() switch
{
    "f32" => DType.F32, "f16" => DType.F16, "bf16" => DType.BF16, _ => throw new ArgumentException($"--dtype {s}: f32, f16 or bf16"),
}).ToArray();
bool quick = flags.Contains("quick");
if (flags.Contains("ab-rows"))
{
    foreach (var (b, tt, h, kv, hd, causal) in new[] { (8, 128, 12, 12, 32, false), (1, 512, 32, 4, 64, true) })
        foreach (int th in new[] { 1, maxThreads })
        {
            var r32 = new List<double>(); var r64 = new List<double>();
            for (int i = 0; i < rounds; i++)
            {
                AttentionKernels.RowsPerBlock = 32; r32.Add(Bench.Attention(b, tt, h, kv, hd, causal, th, 3).Ms);
                AttentionKernels.RowsPerBlock = 64; r64.Add(Bench.Attention(b, tt, h, kv, hd, causal, th, 3).Ms);
            }
            Console.WriteLine($"B{b} T{tt} h{h}/{kv} hd{hd} {th}T  ms  32 rows {r32.Order().ElementAt(r32.Count / 2),7:F2}  64 rows {r64.Order().ElementAt(r64.Count / 2),7:F2}");
        }
    return 0;
}
if (flags.Contains("ab-kc"))
{
    // A/B of running k ≤ 384 as one K block instead of 256 + 128.
    foreach (var (m, n, k) in new[] { (4096, 1152, 384), (4096, 1536, 384), (128, 384, 384), (128, 1536, 384) })
        foreach (int th in new[] { 1, maxThreads })
        {
            var off = new List<double>(); var on = new List<double>();
            for (int i = 0; i < rounds; i++)
            {
                Hub.Runtime.Kernels.Gemm.SingleBlockK = false; off.Add(Bench.Gemm(m, n, k, DType.F32, th, 3).CpuGFlops);
                Hub.Runtime.Kernels.Gemm.SingleBlockK = true; on.Add(Bench.Gemm(m, n, k, DType.F32, th, 3).CpuGFlops);
            }
            Console.WriteLine($"{m}x{n}x{k} {th}T  GFLOP/cpu-s  256+128 {off.Order().ElementAt(off.Count / 2),6:F1}  one block {on.Order().ElementAt(on.Count / 2),6:F1}");
        }
    return 0;
}
if (flags.Contains("ab-prefetch"))
{
    // A/B of the GEMM's software prefetch of the next W panel: alternate rounds with it off and on, per-CPU-second efficiency medians.
    foreach (var (m, n, k) in new[] { (128, 2048, 2048), (128, 5632, 2048), (128, 768, 768) })
        foreach (int th in new[] { 1, maxThreads })
        {
            var off = new List<double>(); var on = new List<double>();
            for (int i = 0; i < rounds; i++)
            {
                Hub.Runtime.Kernels.Gemm.Prefetch = false; off.Add(Bench.Gemm(m, n, k, DType.F32, th, 3).CpuGFlops);
                Hub.Runtime.Kernels.Gemm.Prefetch = true; on.Add(Bench.Gemm(m, n, k, DType.F32, th, 3).CpuGFlops);
            }
            Console.WriteLine($"{m}x{n}x{k} {th}T  GFLOP/cpu-s  prefetch off {off.Order().ElementAt(off.Count / 2),6:F1}  on {on.Order().ElementAt(on.Count / 2),6:F1}");
        }
    return 0;
}
if (flags.Contains("ab-packw"))
{
    // A/B of per-call W packing against a W packed once (the small-model path): the cost of packing per call.
    foreach (var (m, n, k) in new[] { (128, 384, 384), (128, 384, 1536), (128, 2048, 2048), (128, 5632, 2048), (128, 2048, 5632), (4096, 384, 1536) })
        foreach (int th in new[] { 1, maxThreads })
        {
            var off = new List<double>(); var on = new List<double>();
            for (int i = 0; i < rounds; i++)
            {
                off.Add(Bench.Gemm(m, n, k, DType.F32, th, 3).CpuPeakRatio);
                on.Add(Bench.Gemm(m, n, k, DType.F32, th, 3, prepack: true).CpuPeakRatio);
            }
            Console.WriteLine($"{m}x{n}x{k} {th}T  %peak/cpu-s  per-call packing {100 * BenchStats.Median(off),5:F1}  prepacked {100 * BenchStats.Median(on),5:F1}");
        }
    return 0;
}
if (flags.Contains("ab-packa"))
{
    // A/B of packing the A block into register-tile micro-panels (on) against reading A rows in place (off).
    foreach (var (m, n, k) in new[] { (128, 384, 384), (128, 1536, 384), (128, 384, 1536), (128, 768, 768), (128, 2048, 2048), (128, 5632, 2048), (128, 2048, 5632), (4096, 384, 384), (4096, 384, 1536) })
        foreach (int th in new[] { 1, maxThreads })
        {
            var off = new List<double>(); var on = new List<double>(); var onp = new List<double>();
            for (int i = 0; i < rounds; i++)
            {
                Hub.Runtime.Kernels.Gemm.PackA = false; off.Add(Bench.Gemm(m, n, k, DType.F32, th, 3).CpuPeakRatio);
                Hub.Runtime.Kernels.Gemm.PackA = true; on.Add(Bench.Gemm(m, n, k, DType.F32, th, 3).CpuPeakRatio);
                onp.Add(Bench.Gemm(m, n, k, DType.F32, th, 3, prepack: true).CpuPeakRatio);
            }
            Console.WriteLine($"{m}x{n}x{k} {th}T  %peak/cpu-s  A in place {100 * BenchStats.Median(off),5:F1}  A micro-panels {100 * BenchStats.Median(on),5:F1}  (W prepacked {100 * BenchStats.Median(onp),5:F1})");
        }
    return 0;
}
if (opts.TryGetValue("ab-deepkc", out var kcs))
{
    // A/B of the K block used when k > 384.
    var kcList = kcs.Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray();
    foreach (var (m, n, k) in new[] { (128, 768, 2048), (128, 2048, 2048), (128, 5632, 2048), (128, 2048, 5632), (4096, 384, 1536) })
        foreach (int th in new[] { 1, maxThreads })
        {
            var res = kcList.Select(_ => new List<double>()).ToArray();
            for (int i = 0; i < rounds; i++)
                for (int j = 0; j < kcList.Length; j++)
                {
                    Hub.Runtime.Kernels.Gemm.DeepKC = kcList[j];
                    res[j].Add(Bench.Gemm(m, n, k, DType.F32, th, 3).CpuPeakRatio);
                }
            Console.WriteLine($"{m}x{n}x{k} {th}T  %peak/cpu-s  " + string.Join("  ", kcList.Select((v, j) => $"KC {v}: {100 * BenchStats.Median(res[j]),5:F1}")));
        }
    return 0;
}
if (opts.TryGetValue("ab", out var abName))
{
    // Best-of-N A/B (robust on a shared machine): variants alternate call by call; best wall GFLOP/s per variant
    // against the best FMA-loop GFLOP/s on the same pool.
    (string Name, Action Set)[] variants = abName switch
    {
        "packa" => [("A in place", () => Hub.Runtime.Kernels.Gemm.PackA = false), ("A micro-panels", () => Hub.Runtime.Kernels.Gemm.PackA = true)],
        "prefetch" => [("prefetch off", () => Hub.Runtime.Kernels.Gemm.Prefetch = false), ("prefetch on", () => Hub.Runtime.Kernels.Gemm.Prefetch = true)],
        "kc" => [("KC 256", () => { Hub.Runtime.Kernels.Gemm.DeepKC = 256; Hub.Runtime.Kernels.Gemm.BalancedKC = false; }),
                 ("KC 320", () => { Hub.Runtime.Kernels.Gemm.DeepKC = 320; Hub.Runtime.Kernels.Gemm.BalancedKC = false; }),
                 ("KC ≤256 balanced", () => { Hub.Runtime.Kernels.Gemm.DeepKC = 256; Hub.Runtime.Kernels.Gemm.BalancedKC = true; }),
                 ("KC ≤320 balanced", () => { Hub.Runtime.Kernels.Gemm.DeepKC = 320; Hub.Runtime.Kernels.Gemm.BalancedKC = true; }),
                 ("KC ≤384 balanced", () => { Hub.Runtime.Kernels.Gemm.DeepKC = 384; Hub.Runtime.Kernels.Gemm.BalancedKC = true; }),
                 ("KC ≤320 balanced (default)", () => { Hub.Runtime.Kernels.Gemm.DeepKC = Hub.Runtime.Kernels.Gemm.KC; Hub.Runtime.Kernels.Gemm.BalancedKC = true; })],
        "session5" => [("session 4 blocking", () => SetAll(false)), ("session 5 blocking", () => SetAll(true))],
        "units" => [("4 units/worker", () => Hub.Runtime.Kernels.Gemm.UnitsPerWorker = 4), ("3 units/worker", () => Hub.Runtime.Kernels.Gemm.UnitsPerWorker = 3), ("2 units/worker", () => Hub.Runtime.Kernels.Gemm.UnitsPerWorker = 2), ("1 unit/worker", () => Hub.Runtime.Kernels.Gemm.UnitsPerWorker = 1), ("4 units/worker (default)", () => Hub.Runtime.Kernels.Gemm.UnitsPerWorker = 4)],
        "packamin" => [("pack A from 64 columns", () => Hub.Runtime.Kernels.Gemm.PackAMinColumns = 64), ("pack A from 128 columns", () => Hub.Runtime.Kernels.Gemm.PackAMinColumns = 128), ("pack A from 256 columns", () => Hub.Runtime.Kernels.Gemm.PackAMinColumns = 256)],
        "chunk" => [("one pass per K block", () => Hub.Runtime.Kernels.Gemm.ChunkColumns = false), ("NC column chunks", () => Hub.Runtime.Kernels.Gemm.ChunkColumns = true)],
        "split" => [("PlanUnits units", () => Hub.Runtime.Kernels.Gemm.StealSplit = false), ("shares + stealing", () => Hub.Runtime.Kernels.Gemm.StealSplit = true)],
        "session6" => [("PlanUnits units", () => Hub.Runtime.Kernels.Gemm.StealSplit = false),
                       ("shares, prefetch stops at chunk end", () => { Hub.Runtime.Kernels.Gemm.StealSplit = true; Hub.Runtime.Kernels.Gemm.PrefetchPastChunk = false; }),
                       ("shares + stealing (default)", () => { Hub.Runtime.Kernels.Gemm.StealSplit = true; Hub.Runtime.Kernels.Gemm.PrefetchPastChunk = true; })],
        "minchunk" => [("deep-k chunks from 16 columns", () => Hub.Runtime.Kernels.Gemm.DeepKMinChunk = 16),
                       ("from 32", () => Hub.Runtime.Kernels.Gemm.DeepKMinChunk = 32),
                       ("from 64 (default)", () => Hub.Runtime.Kernels.Gemm.DeepKMinChunk = 64),
                       ("from 128", () => Hub.Runtime.Kernels.Gemm.DeepKMinChunk = 128),
                       ("static halves", () => Hub.Runtime.Kernels.Gemm.DeepKMinChunk = 1 << 20)],
        "none" => [("default", () => { })],
        "packw" => [("W packed per call", () => Bench.AbPrepacked = false), ("W prepacked", () => Bench.AbPrepacked = true), ("W packed per call (default)", () => Bench.AbPrepacked = false)],
        "session7" => [("session 6 (W prefetch bursts per tile)", () => Hub.Runtime.Kernels.Gemm.PerCallWPrefetch = 1),
                       ("no W prefetch", () => Hub.Runtime.Kernels.Gemm.PerCallWPrefetch = 0),
                       ("W prefetch in the k loop (default)", () => Hub.Runtime.Kernels.Gemm.PerCallWPrefetch = 2)],
        // session 8: W packed per call (Gemm's panels), W read in place (GemmWRows, at every M), W packed once
        "wrows" => [("W packed per call", () => { Bench.AbPrepacked = false; GemmWRows.MaxRows = 0; }),
                    ("W packed once", () => { Bench.AbPrepacked = true; GemmWRows.MaxRows = 0; }),
                    ("W in place", () => { Bench.AbPrepacked = false; GemmWRows.MaxRows = int.MaxValue; })],
        // session 9: GemmWRows' AVX-512 path with 6-row W groups (session 8's tiles in zmm) against 8-row groups
        "group8" => [("W in place, 6-row groups", () => { Bench.AbPrepacked = false; GemmWRows.MaxRows = int.MaxValue; GemmWRows.Group8 = false; }),
                     ("W in place, 8-row groups", () => { Bench.AbPrepacked = false; GemmWRows.MaxRows = int.MaxValue; GemmWRows.Group8 = true; })],
        "prefetchc" => [("C prefetch off", () => Hub.Runtime.Kernels.Gemm.PrefetchC = false), ("C prefetch on", () => Hub.Runtime.Kernels.Gemm.PrefetchC = true)],
        _ => throw new ArgumentException($"--ab {abName}: an A/B name of README.md (e.g. session7, packw, packa, prefetch, kc)"),
    };
    var abShapes = opts.TryGetValue("shapes", out var shapeList)
        ? shapeList.Split(',').Select(v => v.Split('x').Select(q => int.Parse(q, CultureInfo.InvariantCulture)).ToArray()).Select(q => (q[0], q[1], q[2])).ToArray()
        : quick
        ? new[] { (128, 384, 1536), (128, 2048, 2048), (128, 5632, 2048), (128, 2048, 5632) }
        : new[] { (128, 384, 384), (128, 1536, 384), (128, 384, 1536), (128, 768, 768), (128, 2048, 768), (128, 768, 2048), (128, 2048, 2048), (128, 5632, 2048), (128, 2048, 5632), (4096, 1152, 384), (4096, 384, 384), (4096, 1536, 384), (4096, 384, 1536) };
    foreach (var (m, n, k) in abShapes)
        foreach (int th in threadCounts0(maxThreads))
        {
            var best = Bench.GemmAb(m, n, k, dtypes[0], th, rounds, variants.Select(v => v.Set).ToArray(), out double fmaPeak, out double[] busy, out double[] cpuRatio);
            // busy: share of the best sample's threads × wall spent inside work items (the rest is pool wake-up,
            // claiming and waiting at the end of each call)
            Console.WriteLine($"{dtypes[0].ToString().ToLowerInvariant()} {m}x{n}x{k} {th}T  best % of FMA peak ({fmaPeak:F0} GFLOP/s)  " + string.Join("  ", variants.Select((v, j) => $"{v.Name}: {100 * best[j] / fmaPeak,5:F1} (busy {100 * busy[j],3:F0} %, cpu {100 * cpuRatio[j],5:F1})")));
        }
    variants[^1].Set();
    return 0;
}
if (opts.TryGetValue("spin", out var spinShape))
{
    // One thread, one variant, a fixed number of GEMM calls (for `perf stat -e cycles:u`: flops per user cycle is immune
    // to neighbours taking the core): --spin MxNxK --variant percall,inplace,prepacked [--reps R]
    var q = spinShape.Split('x').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray();
    string variant = opts.TryGetValue("variant", out var vv) ? vv : "inplace";
    int spinReps = opts.TryGetValue("reps", out var rr) ? int.Parse(rr, CultureInfo.InvariantCulture) : 50;
    Bench.Spin(q[0], q[1], q[2], variant, spinReps);
    return 0;
}
if (flags.Contains("probe"))
{
    Bench.Probe(rounds);
    return 0;
}
static void SetAll(bool on)
{
    Hub.Runtime.Kernels.Gemm.PackA = on; Hub.Runtime.Kernels.Gemm.ChunkColumns = on;
    Hub.Runtime.Kernels.Gemm.BalancedKC = on; Hub.Runtime.Kernels.Gemm.PrefetchC = on;
    Hub.Runtime.Kernels.Gemm.DeepKC = on ? Hub.Runtime.Kernels.Gemm.KC : 256;
}
static int[] threadCounts0(int max) => max > 1 ? new[] { 1, max } : new[] { 1 };
bool noAttention = flags.Contains("no-attention");
var threadCounts = maxThreads > 1 ? new[] { 1, maxThreads } : new[] { 1 };

Console.WriteLine($"cpu      {CpuInfo.Describe()}");
Console.WriteLine($"rounds   {rounds} (median reported)");
var peak = new Dictionary<int, double>();
foreach (int th in threadCounts) peak[th] = Bench.FmaPeak(th, rounds);
Console.WriteLine($"FMA peak {string.Join("   ", threadCounts.Select(th => $"{th} thread{(th > 1 ? "s" : "")}: {peak[th]:F1} GFLOP/s"))} (standalone; each row's % uses its own interleaved peak)");
Console.WriteLine();

var shapes = new List<(int M, int N, int K)>();
foreach (var (n, k) in new[] { (384, 384), (1536, 384), (384, 1536), (768, 768), (2048, 768), (768, 2048), (2048, 2048), (5632, 2048), (2048, 5632) })
    shapes.Add((128, n, k));
if (!quick) foreach (var (n, k) in new[] { (1152, 384), (384, 384), (1536, 384), (384, 1536) }) shapes.Add((4096, n, k));

Console.Write($"{"dtype",-6}{"M",6}{"N",6}{"K",6}");
foreach (int th in threadCounts) Console.Write($"{$"{th}T GFLOP/s",12}{"%peak",7}{"GF/cpu-s",10}{"%peak",7}");
Console.WriteLine();
foreach (var dt in dtypes)
    foreach (var (m, n, k) in shapes)
    {
        Console.Write($"{dt.ToString().ToLowerInvariant(),-6}{m,6}{n,6}{k,6}");
        foreach (int th in threadCounts)
        {
            var (g, ratio, cg, cratio) = Bench.Gemm(m, n, k, dt, th, rounds);
            Console.Write($"{g,12:F1}{100 * ratio,6:F0}%{cg,10:F1}{100 * cratio,6:F0}%");
        }
        Console.WriteLine();
    }

if (!noAttention)
{
    Console.WriteLine();
    Console.WriteLine("attention prefill (causal, q·k and p·v counted as 2·T·S·hd each per head; causal halves S on average)");
    Console.Write($"{"B",4}{"T",6}{"heads",7}{"kv",4}{"hd",5}");
    foreach (int th in threadCounts) Console.Write($"{$"{th}T GFLOP/s",14}{$"{th}T ms",10}");
    Console.WriteLine();
    foreach (var (b, tt, h, kv, hd, causal) in new[] { (1, 128, 12, 12, 32, false), (32, 128, 12, 12, 32, false), (1, 128, 12, 12, 64, true), (1, 512, 32, 4, 64, true) })
    {
        Console.Write($"{b,4}{tt,6}{h,7}{kv,4}{hd,5}");
        foreach (int th in threadCounts)
        {
            var (g, ms) = Bench.Attention(b, tt, h, kv, hd, causal, th, rounds);
            Console.Write($"{g,14:F1}{ms,10:F2}");
        }
        Console.WriteLine(causal ? "  causal" : "  bidirectional");
    }
}
return 0;

internal static unsafe class Bench
{
    private sealed class FmaJob(long iters) : ParallelWork
    {
        public float Sink;
        public override void Execute(int index, int worker) => Sink += FmaLoop(iters);
    }

    // GFLOP/s of the FMA-only loop run once per pool thread (about 20 ms).
    private static (double Wall, double Cpu) PoolPeak(WorkerPool pool, FmaJob job, long iters)
    {
        var cpu0 = Environment.CpuUsage.TotalTime;
        var sw = Stopwatch.StartNew();
        pool.Run(job, pool.Size);
        double wall = sw.Elapsed.TotalSeconds, cpu = (Environment.CpuUsage.TotalTime - cpu0).TotalSeconds;
        int lanes = Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;
        double flops = pool.Size * (double)iters * 12 * lanes * 2;
        return (flops / wall / 1e9, flops / cpu / 1e9);
    }

    public static double FmaPeak(int threads, int rounds)
    {
        const long iters = 20_000_000;
        var results = new List<double>();
        for (int round = 0; round < rounds; round++)
        {
            var ths = new Thread[threads];
            using var go = new ManualResetEventSlim(false);
            for (int i = 0; i < threads; i++) { ths[i] = new Thread(() => { go.Wait(); FmaLoop(iters / 10); FmaLoop(iters); }); ths[i].Start(); }
            var sw = Stopwatch.StartNew();
            go.Set();
            foreach (var th in ths) th.Join();
            double s = sw.Elapsed.TotalSeconds;
            int lanes = Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;
            results.Add(threads * (iters * 1.1) * 12 * lanes * 2 / s / 1e9);
        }
        return BenchStats.Median(results);
    }

    // 12 independent FMA chains: enough to cover the FMA latency (4 cycles) × 2 pipes with room to spare.
    private static float FmaLoop(long iters)
    {
        if (Avx512F.IsSupported)
        {
            var x = Vector512.Create(1.0000001f); var y = Vector512.Create(0.9999999f);
            Vector512<float> a0 = x, a1 = x, a2 = x, a3 = x, a4 = x, a5 = x, a6 = x, a7 = x, a8 = x, a9 = x, a10 = x, a11 = x;
            for (long i = 0; i < iters; i++)
            {
                a0 = Avx512F.FusedMultiplyAdd(a0, x, y); a1 = Avx512F.FusedMultiplyAdd(a1, x, y); a2 = Avx512F.FusedMultiplyAdd(a2, x, y);
                a3 = Avx512F.FusedMultiplyAdd(a3, x, y); a4 = Avx512F.FusedMultiplyAdd(a4, x, y); a5 = Avx512F.FusedMultiplyAdd(a5, x, y);
                a6 = Avx512F.FusedMultiplyAdd(a6, x, y); a7 = Avx512F.FusedMultiplyAdd(a7, x, y); a8 = Avx512F.FusedMultiplyAdd(a8, x, y);
                a9 = Avx512F.FusedMultiplyAdd(a9, x, y); a10 = Avx512F.FusedMultiplyAdd(a10, x, y); a11 = Avx512F.FusedMultiplyAdd(a11, x, y);
            }
            return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
        }
        if (Fma.IsSupported)
        {
            var x = Vector256.Create(1.0000001f); var y = Vector256.Create(0.9999999f);
            Vector256<float> a0 = x, a1 = x, a2 = x, a3 = x, a4 = x, a5 = x, a6 = x, a7 = x, a8 = x, a9 = x, a10 = x, a11 = x;
            for (long i = 0; i < iters; i++)
            {
                a0 = Fma.MultiplyAdd(a0, x, y); a1 = Fma.MultiplyAdd(a1, x, y); a2 = Fma.MultiplyAdd(a2, x, y);
                a3 = Fma.MultiplyAdd(a3, x, y); a4 = Fma.MultiplyAdd(a4, x, y); a5 = Fma.MultiplyAdd(a5, x, y);
                a6 = Fma.MultiplyAdd(a6, x, y); a7 = Fma.MultiplyAdd(a7, x, y); a8 = Fma.MultiplyAdd(a8, x, y);
                a9 = Fma.MultiplyAdd(a9, x, y); a10 = Fma.MultiplyAdd(a10, x, y); a11 = Fma.MultiplyAdd(a11, x, y);
            }
            return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
        }
        var v = Vector128.Create(1.0000001f); var w = Vector128.Create(0.9999999f);
        Vector128<float> b0 = v, b1 = v, b2 = v, b3 = v, b4 = v, b5 = v, b6 = v, b7 = v, b8 = v, b9 = v, b10 = v, b11 = v;
        for (long i = 0; i < iters; i++)
        {
            b0 = b0 * v + w; b1 = b1 * v + w; b2 = b2 * v + w; b3 = b3 * v + w; b4 = b4 * v + w; b5 = b5 * v + w;
            b6 = b6 * v + w; b7 = b7 * v + w; b8 = b8 * v + w; b9 = b9 * v + w; b10 = b10 * v + w; b11 = b11 * v + w;
        }
        return Vector128.Sum(b0 + b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8 + b9 + b10 + b11);
    }

    private sealed class GemmJob(float* x, int m, int k, byte* w, DType wt, float* packed, int n, float* bias, float* y, float*[] scratch, int rows, int cols,
        Hub.Runtime.Kernels.Gemm.GemmSplit? split = null, int threads = 1) : ParallelWork
    {
        // One GEMM call on the pool (the split's claim words are consumed by a call, so it is reset before each, as
        // LinearExec does).
        public void Run(WorkerPool pool, int units)
        {
            if (split != null) { split.Reset(m, n, k, threads, wInPlace: packed == null && wt == DType.F32); units = split.Shares; }
            pool.Run(this, units);
        }

        public override void Execute(int index, int worker)
        {
            if (split != null)
            {
                // as LinearExec: the worker's share, then stolen chunks, A packed once per row block
                int cursor = 0, packedRow = -1;
                while (split.Claim(index, ref cursor, out int m0, out int m1, out int n0, out int n1))
                    Hub.Runtime.Kernels.Gemm.RunChunk(x, m0, m1, k, packed != null ? null : w, wt, packed, n, bias, y, n0, n1, scratch[worker], split.PackA, ref packedRow, m);
                return;
            }
            if (packed != null) Hub.Runtime.Kernels.Gemm.RunUnitPacked(index, x, m, k, packed, n, bias, y, rows, cols, scratch[worker]);
            else Hub.Runtime.Kernels.Gemm.RunUnit(index, x, m, k, w, wt, n, bias, y, rows, cols, scratch[worker]);
        }
    }

    /// <summary>Whether the <see cref="GemmAb"/> variant being run reads a W packed once instead of packing per call.</summary>
    public static bool AbPrepacked;

    // Best wall GFLOP/s of each variant over `samples` alternating calls (each variant set right before its call), and
    // the best FMA-loop GFLOP/s of the same pool measured between them.
    // cpuRatio: all samples' GFLOP per CPU-second of the variant against the FMA loop's (robust to a neighbour taking
    // the core for a while, not to one sharing its caches).
    public static double[] GemmAb(int m, int n, int k, DType wt, int threads, int samples, Action[] variants, out double peak, out double[] busy, out double[] cpuRatio)
    {
        GemmOperands(m, n, k, wt, threads, out float* x, out float* y, out float* bias, out byte* w, out float*[] scratch);
        using var pool = new WorkerPool(threads);
        double flops = 2.0 * m * n * k;
        int reps = Math.Max(1, (int)(0.3e9 * threads / flops));
        var best = new double[variants.Length];
        busy = new double[variants.Length];
        var fma = new FmaJob(1_000_000);
        peak = 0;
        // the plan follows the variant (PlanUnits may be what is compared)
        var split = new Hub.Runtime.Kernels.Gemm.GemmSplit();
        // W packed once (the small-model path) for variants that set AbPrepacked
        float* packed = Alloc(Hub.Runtime.Kernels.Gemm.PackedFloats(n, k));
        Hub.Runtime.Kernels.Gemm.PackWeights(w, wt, n, k, packed, scratch[0]);
        GemmJob Plan(out int units)
        {
            units = Hub.Runtime.Kernels.Gemm.PlanUnits(m, n, threads, out int rows, out int cols);
            float* pk = AbPrepacked ? packed : null;
            if (threads > 1 && Hub.Runtime.Kernels.Gemm.StealSplit)
            {
                return new GemmJob(x, m, k, w, wt, pk, n, bias, y, scratch, rows, cols, split, threads);
            }
            return new GemmJob(x, m, k, w, wt, pk, n, bias, y, scratch, rows, cols);
        }
        foreach (var v in variants) { v(); var j0 = Plan(out int u0); for (int i = 0; i < 3; i++) j0.Run(pool, u0); }
        var cpuSec = new double[variants.Length];
        double fmaGf = 0, fmaCpu = 0;
        for (int s = 0; s < samples; s++)
        {
            var (pw, pc) = PoolPeak(pool, fma, 1_000_000);
            peak = Math.Max(peak, pw);
            fmaGf += 1; fmaCpu += 1 / pc;
            for (int j = 0; j < variants.Length; j++)
            {
                variants[j]();
                var job = Plan(out int units);
                var busyTicks = new long[threads];
                pool.BusyTicks = busyTicks;
                var cpu0 = Environment.CpuUsage.TotalTime;
                var sw = Stopwatch.StartNew();
                for (int i = 0; i < reps; i++) job.Run(pool, units);
                double sec = sw.Elapsed.TotalSeconds;
                cpuSec[j] += (Environment.CpuUsage.TotalTime - cpu0).TotalSeconds;
                pool.BusyTicks = null;
                double g = flops * reps / sec / 1e9;
                if (g > best[j]) { best[j] = g; busy[j] = busyTicks.Sum() / (double)Stopwatch.Frequency / (threads * sec); }
            }
        }
        // (fmaGf / fmaCpu: the harmonic mean of the FMA loop's per-sample GFLOP per CPU-second, i.e. total flops / total CPU)
        double fmaRate = fmaGf / fmaCpu;
        cpuRatio = cpuSec.Select(c => flops * reps * samples / c / 1e9 / fmaRate).ToArray();
        NativeMemory.AlignedFree(packed);
        FreeGemmOperands(x, y, bias, w, scratch);
        return best;
    }

    public static (double GFlops, double PeakRatio, double CpuGFlops, double CpuPeakRatio) Gemm(int m, int n, int k, DType wt, int threads, int rounds, bool prepack = false)
    {
        GemmOperands(m, n, k, wt, threads, out float* x, out float* y, out float* bias, out byte* w, out float*[] scratch);
        using var pool = new WorkerPool(threads);
        int units = Hub.Runtime.Kernels.Gemm.PlanUnits(m, n, threads, out int rows, out int cols);
        float* packed = null;
        if (prepack)
        {
            packed = Alloc(Hub.Runtime.Kernels.Gemm.PackedFloats(n, k));
            Hub.Runtime.Kernels.Gemm.PackWeights(w, wt, n, k, packed, scratch[0]);
        }
        // the split LinearExec uses: shares with stealing on several threads (Gemm.StealSplit), else PlanUnits' units
        var job = threads > 1 && Hub.Runtime.Kernels.Gemm.StealSplit
            ? new GemmJob(x, m, k, w, wt, packed, n, bias, y, scratch, rows, cols, new Hub.Runtime.Kernels.Gemm.GemmSplit(), threads)
            : new GemmJob(x, m, k, w, wt, packed, n, bias, y, scratch, rows, cols);
        double flops = 2.0 * m * n * k;
        int reps = Math.Max(1, (int)(0.6e9 * threads / flops));
        for (int i = 0; i < Math.Min(reps, 3); i++) job.Run(pool, units);
        var fma = new FmaJob(2_000_000);
        PoolPeak(pool, fma, 2_000_000);
        var res = new List<double>();
        var ratios = new List<double>();
        var cpuRes = new List<double>();
        var cpuRatios = new List<double>();
        for (int round = 0; round < rounds; round++)
        {
            var (pk, pkCpu) = PoolPeak(pool, fma, 2_000_000);
            var cpu0 = Environment.CpuUsage.TotalTime;
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < reps; i++) job.Run(pool, units);
            double g = flops * reps / sw.Elapsed.TotalSeconds / 1e9;
            double gc = flops * reps / (Environment.CpuUsage.TotalTime - cpu0).TotalSeconds / 1e9;
            res.Add(g);
            ratios.Add(g / pk);
            cpuRes.Add(gc);
            cpuRatios.Add(gc / pkCpu);
        }
        if (packed != null) NativeMemory.AlignedFree(packed);
        FreeGemmOperands(x, y, bias, w, scratch);
        return (BenchStats.Median(res), BenchStats.Median(ratios), BenchStats.Median(cpuRes), BenchStats.Median(cpuRatios));
    }

    public static (double GFlops, double Ms) Attention(int b, int t, int h, int kv, int hd, bool causal, int threads, int rounds)
    {
        var rng = new Random(7);
        long qn = (long)b * t * h * hd, kn = (long)b * t * kv * hd;
        float* q = Alloc(qn), k = Alloc(kn), v = Alloc(kn), o = Alloc(qn);
        for (long i = 0; i < qn; i++) q[i] = (float)rng.NextDouble() - 0.5f;
        for (long i = 0; i < kn; i++) { k[i] = (float)rng.NextDouble() - 0.5f; v[i] = (float)rng.NextDouble() - 0.5f; }
        int g = h / kv;
        var scratch = new float*[threads];
        for (int i = 0; i < threads; i++) scratch[i] = Alloc(AttentionKernels.PrefillScratchFloats(g, hd));
        using var pool = new WorkerPool(threads);
        var job = new AttentionJob(q, k, v, o, b, t, h, kv, hd, causal, scratch);
        int units = job.Units;
        double flops = 4.0 * b * h * (double)t * t * hd * (causal ? 0.5 : 1.0);
        int reps = Math.Max(1, (int)(0.05e9 * threads / flops * 10));
        pool.Run(job, units);
        var res = new List<double>();
        for (int round = 0; round < rounds; round++)
        {
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < reps; i++) pool.Run(job, units);
            res.Add(sw.Elapsed.TotalSeconds / reps);
        }
        NativeMemory.AlignedFree(q); NativeMemory.AlignedFree(k); NativeMemory.AlignedFree(v); NativeMemory.AlignedFree(o);
        foreach (var s in scratch) NativeMemory.AlignedFree(s);
        double sec = BenchStats.Median(res);
        return (flops / sec / 1e9, sec * 1e3);
    }

    private sealed class AttentionJob(float* q, float* k, float* v, float* o, int b, int t, int h, int kv, int hd, bool causal, float*[] scratch) : ParallelWork
    {
        private readonly int _per = AttentionKernels.QueriesPerBlock(h / kv);
        private readonly int _blocks = (t + AttentionKernels.QueriesPerBlock(h / kv) - 1) / AttentionKernels.QueriesPerBlock(h / kv);
        public int Units => b * kv * _blocks;
        public override void Execute(int index, int worker)
        {
            int qb = index % _blocks, rest = index / _blocks, kvh = rest % kv, bi = rest / kv;
            int g = h / kv;
            int t0 = qb * _per, t1 = Math.Min(t, t0 + _per);
            long kvOff = (long)bi * t * kv * hd + (long)kvh * hd;
            long qOff = (long)bi * t * h * hd + (long)kvh * g * hd;
            AttentionKernels.AttendBlock(q + qOff, (long)h * hd, t0, t1, g, hd, k + kvOff, v + kvOff, (long)kv * hd, t,
                null, causal, 0, 0, 1f / MathF.Sqrt(hd), o + qOff, scratch[worker]);
        }
    }

    // Hot-cache costs of the GEMM's pieces on one thread: W panel packing (ns per float) and the register tile over a
    // packed panel (GFLOP/s next to the FMA loop).
    public static void Probe(int rounds)
    {
        const int kc = 256, k = 2048;
        const int nn = 256;
        float* w = Alloc((long)nn * k), panel = Alloc(kc * 32), x = Alloc(132L * kc), y = Alloc(132L * nn), packed = Alloc((long)nn * kc);
        for (int i = 0; i < nn * k; i++) w[i] = i % 7;
        for (int i = 0; i < 132 * kc; i++) x[i] = i % 5;
        float* scratch = Alloc(Hub.Runtime.Kernels.Gemm.ScratchFloats(kc));
        Hub.Runtime.Kernels.Gemm.PackWeights((byte*)w, DType.F32, nn, kc, packed, scratch);
        for (int r = 0; r < rounds; r++)
        {
            const int reps = 200_000;
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < reps; i++) Hub.Runtime.Kernels.Gemm.PackRowsPanel(w + (i & 7) * kc, k, 16, kc, panel);
            double packNs = sw.Elapsed.TotalNanoseconds / reps / (16.0 * kc);
            sw.Restart();
            for (int i = 0; i < reps; i++) Hub.Runtime.Kernels.Gemm.PackRowsPanel(w + (i & 7) * kc, k + 24, 16, kc, panel);
            double packNs2 = sw.Elapsed.TotalNanoseconds / reps / (16.0 * kc);
            sw.Restart();
            for (int i = 0; i < reps; i++) Hub.Runtime.Kernels.Gemm.PackRowsPanel(w + (i & 7) * kc, 384, 16, kc, panel);
            double packNs3 = sw.Elapsed.TotalNanoseconds / reps / (16.0 * kc);
            Console.Write($"pack ns/float: row stride 2048 {packNs:F3}, 2072 {packNs2:F3}, 384 {packNs3:F3}   ");
            const int reps2 = 1_500;
            sw.Restart();
            for (int i = 0; i < reps2; i++) Hub.Runtime.Kernels.Gemm.GemmBlockPacked(x, 0, 132, kc, packed, nn, null, y, 0, nn, scratch);
            double gf = 2.0 * 132 * nn * kc * reps2 / sw.Elapsed.TotalSeconds / 1e9;
            sw.Restart();
            for (int i = 0; i < reps2; i++) Hub.Runtime.Kernels.Gemm.GemmBlockPacked(x, 0, 128, kc, packed, nn, null, y, 0, nn, scratch);
            double gf128 = 2.0 * 128 * nn * kc * reps2 / sw.Elapsed.TotalSeconds / 1e9;
            sw.Restart();
            FmaLoop(20_000_000);
            double pk = 20_000_000.0 * 12 * 8 * 2 / sw.Elapsed.TotalSeconds / 1e9;
            Console.WriteLine($"pack W panel {packNs:F3} ns/float   132x{nn}x{kc} block (A pack + tiles) {gf:F1} GFLOP/s, 128 rows {gf128:F1}   FMA loop {pk:F1}");
        }
    }

    public static void Spin(int m, int n, int k, string variants, int reps)
    {
        GemmOperands(m, n, k, DType.F32, 1, out float* x, out float* y, out float* bias, out byte* w, out float*[] scratch);
        float* packed = Alloc(Hub.Runtime.Kernels.Gemm.PackedFloats(n, k));
        Hub.Runtime.Kernels.Gemm.PackWeights(w, DType.F32, n, k, packed, scratch[0]);
        var names = variants.Split(',');
        var bestCpu = new double[names.Length]; var bestWall = new double[names.Length];
        double flops = 2.0 * m * n * k;
        int per = Math.Max(1, (int)(0.2e9 / flops));
        for (int round = 0; round < reps; round++)
            for (int j = 0; j < names.Length; j++)
            {
                string variant = names[j];
                GemmWRows.MaxRows = variant is "inplace" or "inplace6" ? int.MaxValue : 0;
                GemmWRows.Group8 = variant != "inplace6";
                var cpu0 = Environment.CpuUsage.UserTime;
                var sw = Stopwatch.StartNew();
                for (int i = 0; i < per; i++)
                    if (variant == "prepacked") Hub.Runtime.Kernels.Gemm.GemmBlockPacked(x, 0, m, k, packed, n, bias, y, 0, n, scratch[0]);
                    else Hub.Runtime.Kernels.Gemm.GemmBlock(x, 0, m, k, w, DType.F32, n, bias, y, 0, n, scratch[0]);
                double wall = sw.Elapsed.TotalSeconds, cpu = (Environment.CpuUsage.UserTime - cpu0).TotalSeconds;
                bestWall[j] = Math.Max(bestWall[j], flops * per / wall / 1e9);
                if (cpu > 0) bestCpu[j] = Math.Max(bestCpu[j], flops * per / cpu / 1e9);
            }
        var fsw = Stopwatch.StartNew();
        var fc0 = Environment.CpuUsage.UserTime;
        double fpk = 0;
        int lanes = Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;
        for (int r = 0; r < 5; r++) { fsw.Restart(); FmaLoop(10_000_000); fpk = Math.Max(fpk, 10_000_000.0 * 12 * lanes * 2 / fsw.Elapsed.TotalSeconds / 1e9); }
        Console.WriteLine($"{m}x{n}x{k} 1T best of {reps} (FMA loop {fpk:F1}): " + string.Join("  ", names.Select((v, j) => $"{v} {100 * bestWall[j] / fpk:F1} % wall, {bestCpu[j]:F1} GF/cpu-s")));
    }

    // Seeded random x [m, k] and W [n, k] (stored as wt), bias 0.1, y, and one GEMM scratch per pool thread.
    private static void GemmOperands(int m, int n, int k, DType wt, int threads, out float* x, out float* y, out float* bias, out byte* w, out float*[] scratch)
    {
        var rng = new Random(42);
        x = Alloc((long)m * k); y = Alloc((long)m * n); bias = Alloc(n);
        w = (byte*)NativeMemory.AlignedAlloc((nuint)((long)n * k * wt.SizeOf()), 64);
        for (long i = 0; i < (long)m * k; i++) x[i] = (float)rng.NextDouble() - 0.5f;
        for (int i = 0; i < n; i++) bias[i] = 0.1f;
        var wf = new float[(long)n * k];
        for (long i = 0; i < wf.Length; i++) wf[i] = (float)rng.NextDouble() - 0.5f;
        DTypeConvert.FromFloat32(wf, wt, new Span<byte>(w, n * k * wt.SizeOf()));
        scratch = new float*[threads];
        for (int i = 0; i < threads; i++) scratch[i] = Alloc(Hub.Runtime.Kernels.Gemm.ScratchFloats(k));
    }

    private static void FreeGemmOperands(float* x, float* y, float* bias, byte* w, float*[] scratch)
    {
        NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(y); NativeMemory.AlignedFree(bias); NativeMemory.AlignedFree(w);
        foreach (var sp in scratch) NativeMemory.AlignedFree(sp);
    }

    private static float* Alloc(long n) => (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(n, 1) * 4), 64);
}
