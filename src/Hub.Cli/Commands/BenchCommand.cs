using Hub.Generation;
using Hub.Benchmarks;
using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;

namespace Hub.Cli.Commands;

/// <summary>
/// <c>hub bench</c>: prefill and decode speed of a causal LM on this machine, next to the machine's measured read
/// bandwidth (decode is memory-bound, so bandwidth is its roof).
/// </summary>
public static class BenchCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var m = new CliRunner.ModelArgs();
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "prompt length", DefaultValueFactory = _ => 128 };
        var newTokens = new Option<int>("--new-tokens") { Description = "decode steps", DefaultValueFactory = _ => 128 };
        var rounds = new Option<int>("--rounds") { Description = "repetitions (medians are reported)", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "print one JSON object" };
        var contexts = new Option<string?>("--contexts") { Description = "decode cost per context instead, e.g. 64,1024 (ms/token, attention share, cache bytes copied; model 'synthetic:chatglm2' generates a ChatGLM2-shaped one)" };
        var cmd = new Command("bench", "Measure prefill/decode tokens/s, time to first token, memory and bandwidth use.");
        m.AddTo(cmd);
        foreach (var o in new Option[] { promptTokens, newTokens, rounds, json, contexts }) cmd.Options.Add(o);
        var peer = BenchPeer.AddTo(cmd);
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            if (r.GetValue(contexts) is string cs) return BenchContexts.Run(r.GetValue(m.Model)!, cs, m.Options(r, quiet: true), r.GetValue(json), r.GetValue(rounds));
            var options = m.Options(r, quiet: true);
            int p = r.GetValue(promptTokens), n = r.GetValue(newTokens), rr = Math.Max(1, r.GetValue(rounds));
            if (p < 1 || n < 1) throw new ArgumentException("--prompt-tokens and --new-tokens must be ≥ 1");
            if (peer.Requested(r)) return peer.Run(r, m, p, n, rr, r.GetValue(json));
            var benchOptions = new ModelOptions
            {
                Subfolder = options.Subfolder, Revision = options.Revision, SourceFormat = options.SourceFormat,
                Threads = options.Threads, MaxContext = Math.Max(options.MaxContext, p + n), MaxBatch = 1,
                WeightFormat = options.WeightFormat, GroupSize = options.GroupSize, Symmetric = options.Symmetric,
                IgnoredScope = options.IgnoredScope, AllLayers = options.AllLayers,
            };
            // An export in this process is timed apart and kept out of the memory figure: the phase starts after it.
            var (irDir, exportSeconds) = BenchLoad.EnsureExported(r.GetValue(m.Model)!, benchOptions);
            var phase = RssPhase.Begin();
            var sw = Stopwatch.StartNew();
            using var lm = BenchLoad.Load(irDir, benchOptions);
            double loadSeconds = sw.Elapsed.TotalSeconds;
            var result = Run(lm, p, n, rr);
            long peakRss = phase.PeakBytes(); // before the bandwidth probe's buffer
            double bw = MeasureReadBandwidth(options.Threads > 0 ? options.Threads : Environment.ProcessorCount);
            long weightBytes = lm.Graph.Weights.Where(w => w.Shape.Rank == 2).Sum(w => w.Length);
            double decodeBytesPerSec = weightBytes * result.DecodeTokPerSec;
            var o = new JsonObject
            {
                ["model"] = r.GetValue(m.Model),
                ["runtime"] = Hub.Runtime.CpuInfo.Describe(),
                ["threads"] = options.Threads > 0 ? options.Threads : Environment.ProcessorCount,
                ["export_seconds"] = exportSeconds is { } es ? Math.Round(es, 3) : null,
                ["load_seconds"] = Math.Round(loadSeconds, 3),
                ["prompt_tokens"] = p,
                ["new_tokens"] = n,
                ["prefill_tok_s"] = Math.Round(result.PrefillTokPerSec, 2),
                ["decode_tok_s"] = Math.Round(result.DecodeTokPerSec, 2),
                ["ttft_ms"] = Math.Round(result.TtftMs, 2),
                ["peak_rss_mib"] = RssPhase.Mib(peakRss),
                ["peak_rss_scope"] = "load + prefill + decode; " + phase.Scope,
                ["gc_bytes_per_token"] = result.GcBytesPerToken,
                ["weight_bytes_per_token"] = weightBytes,
                ["read_bandwidth_gb_s"] = Math.Round(bw / 1e9, 2),
                ["decode_bandwidth_fraction"] = Math.Round(decodeBytesPerSec / bw, 3),
            };
            if (exportSeconds is null) o.Remove("export_seconds"); // printed only when an export happened
            if (r.GetValue(json)) Console.WriteLine(o.ToJsonString());
            else foreach (var (k, v) in o) Console.WriteLine($"{k,-26} {v}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>Figures of one benchmark run (medians over rounds).</summary>
    public sealed record Figures(double PrefillTokPerSec, double DecodeTokPerSec, double TtftMs, long GcBytesPerToken);

    /// <summary>Runs <paramref name="rounds"/> rounds of a <paramref name="promptTokens"/>-token prefill and <paramref name="newTokens"/> greedy decode steps.</summary>
    public static Figures Run(CausalLM lm, int promptTokens, int newTokens, int rounds)
    {
        var rng = new Random(1234);
        var prompt = Enumerable.Range(0, promptTokens).Select(_ => rng.Next(lm.VocabSize)).ToArray();
        var prefill = new List<double>(); var decode = new List<double>(); var ttft = new List<double>();
        long gc = 0;
        var token = new int[1];
        for (int round = 0; round <= rounds; round++) // round 0 warms up
        {
            lm.Reset();
            var t0 = Stopwatch.GetTimestamp();
            token[0] = LogitsProcessors.ArgMax(lm.Forward(prompt, 1, promptTokens, default));
            var t1 = Stopwatch.GetTimestamp();
            long gc0 = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < newTokens; i++) token[0] = LogitsProcessors.ArgMax(lm.Forward(token, 1, 1, default));
            var t2 = Stopwatch.GetTimestamp();
            long gcUsed = GC.GetAllocatedBytesForCurrentThread() - gc0;
            if (round == 0) continue;
            double pre = (t1 - t0) / (double)Stopwatch.Frequency, dec = (t2 - t1) / (double)Stopwatch.Frequency;
            prefill.Add(promptTokens / pre); decode.Add(newTokens / dec); ttft.Add(pre * 1000);
            gc = Math.Max(gc, gcUsed / newTokens);
        }
        return new Figures(BenchStats.Median(prefill), BenchStats.Median(decode), BenchStats.Median(ttft), gc);
    }

    /// <summary>Streaming read bandwidth of this machine in bytes/s (best of 5 passes over 512 MiB, split across threads).</summary>
    public static unsafe double MeasureReadBandwidth(int threads)
    {
        const long size = 512L << 20;
        var buf = (byte*)NativeMemory.AlignedAlloc((nuint)size, 64);
        try
        {
            for (long at = 0; at < size; at += 1 << 28) new Span<byte>(buf + at, (int)Math.Min(1L << 28, size - at)).Fill(1);
            double best = 0;
            for (int pass = 0; pass < 5; pass++)
            {
                var sw = Stopwatch.StartNew();
                var sums = new double[threads];
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
                {
                    long chunk = size / threads;
                    var p = (System.Runtime.Intrinsics.Vector256<float>*)(buf + t * chunk);
                    long count = chunk / 32;
                    var a0 = System.Runtime.Intrinsics.Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
                    for (long i = 0; i + 4 <= count; i += 4) { a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3]; }
                    sums[t] = System.Runtime.Intrinsics.Vector256.Sum(a0 + a1 + a2 + a3);
                });
                best = Math.Max(best, size / sw.Elapsed.TotalSeconds);
                GC.KeepAlive(sums);
            }
            return best;
        }
        finally { NativeMemory.AlignedFree(buf); }
    }
}
