using Hub.Generation;
using Hub.Benchmarks;
using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
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
                long runPeak = phase.PeakBytes() - between.ResidentBytes;
                result = result with { PeakRssBytes = Math.Max(loadPeak, runPeak), BetweenRoundsBandwidth = between.Median };
            }
            long peakRss = result.PeakRssBytes;
            double bw = MeasureReadBandwidth(threads);
            long weightBytes = BenchPeer.HubBytesPerToken(lm);
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
            BenchPeer.AddPages(o, BenchPeer.HubPages(irDir));
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

    /// <summary>Streaming read bandwidth of this machine in bytes/s (best of 5 passes over 512 MiB, split across threads; see <see cref="ReadProbe"/>).</summary>
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
/// <remarks>
/// A roof must not be beaten by the workload it judges. One sequential stream per core under-reads this kind of
/// machine: the f32 decode GEMV, which walks several rows with software prefetch, streamed 1.1–1.5× such a probe
/// (session 10). So each pass reads the buffer twice, once as one plain stream per thread and once as
/// <see cref="Streams"/> interleaved streams per thread with a T0 prefetch <see cref="PrefetchBytes"/> ahead, and
/// keeps the faster; the threads are dedicated and released together, so no thread-pool start-up skews a pass.
/// The buffer sits in 2 MiB pages where the OS offers them (Linux MADV_HUGEPAGE), as the int8/int4 weights' repacked
/// copies do since session 12: read through 4 KiB pages the probe paid TLB walks those weights no longer pay, and
/// 1b Q8_0 decode streamed 1.08–1.5× it.
/// </remarks>
public sealed unsafe class ReadProbe : IDisposable
{
    /// <summary>Interleaved streams per thread in the multi-stream pattern (what a GEMV over several rows does).</summary>
    public const int Streams = 4;

    /// <summary>Distance of the multi-stream pattern's software prefetch, bytes ahead of each stream.</summary>
    public const int PrefetchBytes = 1024;

    private const int Step = 128; // bytes one stream reads per step: four Vector256 loads, two cache lines

    private byte* _buf;
    private HugePageMemory _mem; // the buffer's allocation: 2 MiB pages where the OS offers them, like the weights' repacked copies
    private readonly int _threads;
    private readonly Thread[] _workers;
    private readonly Barrier _start;
    private readonly CountdownEvent _done;
    private readonly double[] _sums;
    private readonly long[] _times; // per thread, one cache line each: start and end timestamp of its last read
    private volatile bool _multi, _stop;

    /// <summary>Allocates and fills <paramref name="bytes"/> (anonymous memory, huge pages where offered, resident until disposed) and starts one reader thread per <paramref name="threads"/>.</summary>
    public ReadProbe(int threads, long bytes = 256L << 20)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "at least one thread");
        _threads = threads;
        long unit = (long)threads * Streams * Step;
        Bytes = Math.Max(unit, bytes / unit * unit); // whole steps for every stream of every thread
        _mem = HugePageMemory.Allocate(Bytes);
        _buf = _mem.Pointer;
        for (long at = 0; at < Bytes; at += 1 << 28) new Span<byte>(_buf + at, (int)Math.Min(1L << 28, Bytes - at)).Fill(1);
        _sums = new double[threads * 8]; // one cache line per thread
        _times = new long[threads * 8];
        _start = new Barrier(threads + 1);
        _done = new CountdownEvent(threads);
        _workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int id = t;
            _workers[t] = new Thread(() => Reader(id)) { IsBackground = true, Name = $"hub-read-probe-{t}" };
            _workers[t].Start();
        }
    }

    /// <summary>Bytes one pass reads.</summary>
    public long Bytes { get; }

    /// <summary>Resident bytes the probe holds (for subtracting from a peak that spans its life): <see cref="Bytes"/> rounded up to whole 2 MiB pages when mapped.</summary>
    public long ResidentBytes => (long)_mem.Length;

    /// <summary>Passes recorded by <see cref="Pass"/>, bytes/s.</summary>
    public List<double> Passes { get; } = new();

    /// <summary>One pass: the buffer read by both patterns, split across the threads; returns the faster pattern's bytes/s and records it.</summary>
    public double Pass()
    {
        ObjectDisposedException.ThrowIf(_buf == null, this);
        double rate = Math.Max(Read(multi: false), Read(multi: true));
        Passes.Add(rate);
        return rate;
    }

    /// <summary>One timed read of the whole buffer by all threads, bytes/s.</summary>
    /// <remarks>
    /// Timed by the readers themselves, from the first one's start to the last one's end: with as many readers as
    /// cores, the caller released with them may not run again until a reader has finished, so a clock read on the
    /// caller's side after the release can start late and time only part of the reading (a between-rounds pass once
    /// printed 558 GB/s that way). Timing around the release instead would add the readers' wake-up.
    /// </remarks>
    private double Read(bool multi)
    {
        _multi = multi;
        _done.Reset();
        _start.SignalAndWait();
        _done.Wait();
        long first = long.MaxValue, last = long.MinValue;
        for (int t = 0; t < _threads; t++)
        {
            if (_times[t * 8 + 1] < _times[t * 8]) throw new InvalidOperationException($"read probe thread {t} did not finish its pass");
            first = Math.Min(first, _times[t * 8]); last = Math.Max(last, _times[t * 8 + 1]);
        }
        return Bytes / ((last - first) / (double)Stopwatch.Frequency);
    }

    private void Reader(int t)
    {
        long chunk = Bytes / _threads;
        while (true)
        {
            _start.SignalAndWait();
            if (_stop) return;
            byte* p = _buf + t * chunk;
            try
            {
                _times[t * 8 + 1] = 0;   // a pass that does not finish must not reuse the previous end
                _times[t * 8] = Stopwatch.GetTimestamp();
                _sums[t * 8] += _multi ? ReadStreams(p, chunk) : ReadOne(p, chunk);
                _times[t * 8 + 1] = Stopwatch.GetTimestamp();
            }
            finally { _done.Signal(); }   // the CountdownEvent's signal publishes _times to Read
        }
    }

    private static float ReadOne(byte* p, long bytes)
    {
        var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
        for (long at = 0; at < bytes; at += Step)
        {
            a0 += Vector256.Load((float*)(p + at)); a1 += Vector256.Load((float*)(p + at + 32));
            a2 += Vector256.Load((float*)(p + at + 64)); a3 += Vector256.Load((float*)(p + at + 96));
        }
        return Vector256.Sum(a0 + a1 + a2 + a3);
    }

    private static float ReadStreams(byte* p, long bytes)
    {
        long per = bytes / Streams; // a multiple of Step: Bytes is whole steps per stream and thread
        var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
        for (long at = 0; at < per; at += Step)
            for (int s = 0; s < Streams; s++)
            {
                byte* q = p + s * per + at;
                if (Sse.IsSupported && at + PrefetchBytes < per) { Sse.Prefetch0(q + PrefetchBytes); Sse.Prefetch0(q + PrefetchBytes + 64); }
                a0 += Vector256.Load((float*)q); a1 += Vector256.Load((float*)(q + 32));
                a2 += Vector256.Load((float*)(q + 64)); a3 += Vector256.Load((float*)(q + 96));
            }
        return Vector256.Sum(a0 + a1 + a2 + a3);
    }

    /// <summary>
    /// One between-rounds sample: waits <paramref name="settleMs"/> first (an engine's workers, llama.cpp's above all,
    /// spin for a while after a round and would share the cores with the probe), then the best of
    /// <paramref name="passes"/> passes (one pass can lose a core to a neighbour); recorded in <see cref="Samples"/>.
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
        if (_buf == null) return;
        _stop = true;
        _start.SignalAndWait(); // releases the readers into their exit check
        foreach (var w in _workers) w.Join();
        _start.Dispose(); _done.Dispose();
        _mem.Free(); _buf = null;
    }
}
