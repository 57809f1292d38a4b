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
                Threads = options.Threads, MaxContext = Math.Max(options.MaxContext, p + n), MaxBatch = 1, KvCachePrecision = options.KvCachePrecision,
                WeightFormat = options.WeightFormat, GroupSize = options.GroupSize, Symmetric = options.Symmetric,
                IgnoredScope = options.IgnoredScope, AllLayers = options.AllLayers,
            };
            // An export in this process is timed apart and kept out of the memory figure: the phase starts after it.
            var (irDir, exportSeconds) = BenchLoad.EnsureExported(r.GetValue(m.Model)!, benchOptions);
            int threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;
            var phase = RssPhase.Begin();
            var sw = Stopwatch.StartNew();
            using var lm = BenchLoad.Load(irDir, benchOptions);
            double loadSeconds = sw.Elapsed.TotalSeconds;
            long loadPeak = phase.PeakBytes();
            Figures result;
            using (var between = new ReadProbe(threads))
            {
                result = Run(lm, p, n, rr, between);
                // The probe's buffer is anonymous, filled once and resident for the whole run: not Hub's memory.
                long runPeak = phase.PeakBytes() - between.Bytes;
                result = result with { PeakRssBytes = Math.Max(loadPeak, runPeak), BetweenRoundsBandwidth = between.Median };
            }
            long peakRss = result.PeakRssBytes;
            double bw = MeasureReadBandwidth(threads);
            long weightBytes = lm.Graph.Weights.Where(w => w.Shape.Rank == 2).Sum(w => w.Length);
            double decodeBytesPerSec = weightBytes * result.DecodeTokPerSec;
            var o = new JsonObject
            {
                ["model"] = r.GetValue(m.Model),
                ["runtime"] = Hub.Runtime.CpuInfo.Describe(),
                ["threads"] = options.Threads > 0 ? options.Threads : Environment.ProcessorCount,
                ["kv_cache"] = lm.KvCachePrecision.ToString(),
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
                ["read_bandwidth_between_rounds_gb_s"] = Math.Round(result.BetweenRoundsBandwidth / 1e9, 2),
                ["decode_bandwidth_fraction_between_rounds"] = Math.Round(decodeBytesPerSec / result.BetweenRoundsBandwidth, 3),
            };
            if (exportSeconds is null) o.Remove("export_seconds"); // printed only when an export happened
            if (r.GetValue(json)) Console.WriteLine(o.ToJsonString());
            else foreach (var (k, v) in o) Console.WriteLine($"{k,-26} {v}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>Figures of one benchmark run (medians over rounds); the last two are filled in by the command.</summary>
    public sealed record Figures(double PrefillTokPerSec, double DecodeTokPerSec, double TtftMs, long GcBytesPerToken,
        long PeakRssBytes = 0, double BetweenRoundsBandwidth = 0);

    /// <summary>
    /// Runs <paramref name="rounds"/> rounds of a <paramref name="promptTokens"/>-token prefill and <paramref name="newTokens"/>
    /// greedy decode steps; <paramref name="between"/>, when given, takes one read pass after each timed round.
    /// </summary>
    public static Figures Run(CausalLM lm, int promptTokens, int newTokens, int rounds, ReadProbe? between = null)
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
            between?.Sample();
            double pre = (t1 - t0) / (double)Stopwatch.Frequency, dec = (t2 - t1) / (double)Stopwatch.Frequency;
            prefill.Add(promptTokens / pre); decode.Add(newTokens / dec); ttft.Add(pre * 1000);
            gc = Math.Max(gc, gcUsed / newTokens);
        }
        return new Figures(BenchStats.Median(prefill), BenchStats.Median(decode), BenchStats.Median(ttft), gc);
    }

    /// <summary>Streaming read bandwidth of this machine in bytes/s (best of 5 passes over 512 MiB, split across threads).</summary>
    public static double MeasureReadBandwidth(int threads)
    {
        using var probe = new ReadProbe(threads, 512L << 20);
        double best = 0;
        for (int pass = 0; pass < 5; pass++) best = Math.Max(best, probe.Pass());
        return best;
    }
}

/// <summary>
/// A streaming-read probe over one filled buffer. Besides the best-of-5 figure before or after the rounds, passes
/// taken between timed rounds see the same neighbours as the rounds do: their median is the like-for-like roof for a
/// median decode rate (a busy neighbour lowers both), where the best pass is the machine's quiet capability.
/// </summary>
public sealed unsafe class ReadProbe : IDisposable
{
    private byte* _buf;
    private readonly int _threads;

    /// <summary>Allocates and fills <paramref name="bytes"/> (anonymous memory, resident until disposed).</summary>
    public ReadProbe(int threads, long bytes = 256L << 20)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "at least one thread");
        _threads = threads;
        Bytes = bytes / (threads * 128L) * (threads * 128L); // whole 4-vector steps per thread
        _buf = (byte*)NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        for (long at = 0; at < Bytes; at += 1 << 28) new Span<byte>(_buf + at, (int)Math.Min(1L << 28, Bytes - at)).Fill(1);
    }

    /// <summary>Resident bytes the probe holds (for subtracting from a peak that spans its life).</summary>
    public long Bytes { get; }

    /// <summary>Passes recorded by <see cref="Pass"/>, bytes/s.</summary>
    public List<double> Passes { get; } = new();

    /// <summary>One pass over the buffer split across the threads; returns bytes/s and records it.</summary>
    public double Pass()
    {
        ObjectDisposedException.ThrowIf(_buf == null, this);
        var buf = _buf;
        long chunk = Bytes / _threads;
        var sums = new double[_threads];
        var sw = Stopwatch.StartNew();
        Parallel.For(0, _threads, new ParallelOptions { MaxDegreeOfParallelism = _threads }, t =>
        {
            var p = (System.Runtime.Intrinsics.Vector256<float>*)(buf + t * chunk);
            long count = chunk / 32;
            var a0 = System.Runtime.Intrinsics.Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
            for (long i = 0; i + 4 <= count; i += 4) { a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3]; }
            sums[t] = System.Runtime.Intrinsics.Vector256.Sum(a0 + a1 + a2 + a3);
        });
        double rate = Bytes / sw.Elapsed.TotalSeconds;
        GC.KeepAlive(sums);
        Passes.Add(rate);
        return rate;
    }

    /// <summary>
    /// One between-rounds sample: waits <paramref name="settleMs"/> first (an engine's workers, llama.cpp's above all,
    /// spin for a while after a round and would share the cores with the probe), then the best of
    /// <paramref name="passes"/> passes (a lone pass also pays the thread pool's start-up); recorded in <see cref="Samples"/>.
    /// </summary>
    public double Sample(int settleMs = 200, int passes = 3)
    {
        Thread.Sleep(settleMs);
        double best = 0;
        for (int i = 0; i < passes; i++) best = Math.Max(best, Pass());
        Samples.Add(best);
        return best;
    }

    /// <summary>Samples recorded by <see cref="Sample"/>, bytes/s.</summary>
    public List<double> Samples { get; } = new();

    /// <summary>Median of the recorded samples, else of the passes (0 when none).</summary>
    public double Median => Samples.Count > 0 ? BenchStats.Median(Samples) : Passes.Count == 0 ? 0 : BenchStats.Median(Passes);

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_buf != null) { NativeMemory.AlignedFree(_buf); _buf = null; }
    }
}
