using Hub.Generation;
using Hub.Benchmarks;
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Hub.Benchmarks.Peers;
using Hub.Converters.Formats;

namespace Hub.Cli.Commands;

/// <summary>
/// The side-by-side part of <c>hub bench</c>: <c>--peer llamacpp</c> runs llama.cpp (LLamaSharp) on the same export
/// written as GGUF, in alternating rounds with Hub (same prompt ids, same thread count), and <c>--busy-cores N</c>
/// repeats the decode rounds while N threads spin, to show how each engine's thread pool copes with a busy neighbour.
/// </summary>
internal sealed class BenchPeer
{
    /// <summary><c>--peer</c>: the peer engine (only <c>llamacpp</c>).</summary>
    public Option<string?> Peer { get; } = new("--peer") { Description = "also run a peer engine on the same weights: llamacpp" };
    /// <summary><c>--gguf-type</c>: precision of both engines.</summary>
    public Option<string> GgufType { get; } = new("--gguf-type") { Description = "precision for both engines: f32, f16, bf16, q8_0 (Hub int8), q4_0 (Hub int4)", DefaultValueFactory = _ => "f32" };
    /// <summary><c>--busy-cores</c>: spinning background threads during a second set of rounds.</summary>
    public Option<int> BusyCores { get; } = new("--busy-cores") { Description = "repeat the rounds while N threads spin (quiet vs busy figures)" };

    /// <summary>Adds the options to <c>hub bench</c>.</summary>
    public static BenchPeer AddTo(Command bench)
    {
        var b = new BenchPeer();
        bench.Options.Add(b.Peer); bench.Options.Add(b.GgufType); bench.Options.Add(b.BusyCores);
        return b;
    }

    /// <summary>True when a peer or a busy-core run was asked for.</summary>
    public bool Requested(ParseResult r) => r.GetValue(Peer) is not null || r.GetValue(BusyCores) > 0;

    /// <summary>One timed round of one engine.</summary>
    private sealed record Round(double Prefill, double Decode, int[] Tokens);

    /// <summary>Runs the comparison and prints it; returns the exit code.</summary>
    public int Run(ParseResult r, CliRunner.ModelArgs m, int promptTokens, int newTokens, int rounds, bool json)
    {
        var peerName = r.GetValue(Peer)?.ToLowerInvariant();
        if (peerName is not (null or "llamacpp" or "llama.cpp")) throw new ArgumentException($"--peer '{peerName}' is not supported; use llamacpp");
        bool withPeer = peerName is not null;
        int busy = Math.Max(0, r.GetValue(BusyCores));
        var type = GgufLlamaExporter.ParseType(r.GetValue(GgufType) ?? "f32");
        var options = m.Options(r, quiet: true);
        int threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;

        var baseOptions = new ModelOptions
        {
            Subfolder = options.Subfolder, Revision = options.Revision, SourceFormat = options.SourceFormat,
            Threads = threads, MaxContext = Math.Max(options.MaxContext, promptTokens + newTokens), MaxBatch = 1, KvCachePrecision = options.KvCachePrecision,
        };
        // Group 32 symmetric int8/int4 blocks are exactly Q8_0/Q4_0 (docs/quantization.md), and the GGUF writer stores
        // every matrix (embedding and head too) in the requested type: both engines read the same numbers.
        var hubOptions = withPeer || r.GetResult(GgufType) is { Implicit: false } ? GgufConvert.HubOptionsFor(type, baseOptions) : baseOptions;
        // Memory, per engine in its own phase (both run in this process): Hub's phase begins after any export and
        // covers loading + one warm-up round; llama.cpp's begins after the GGUF is written, with Hub loaded, and covers
        // its load + one warm-up round. Each engine's peak is reported as the process baseline before Hub loaded (the
        // .NET runtime a LLamaSharp app has too) plus the growth of its phase; then both run the timed rounds.
        var (irDir, exportSeconds) = BenchLoad.EnsureExported(r.GetValue(m.Model)!, hubOptions);
        var hubPhase = RssPhase.Begin();
        using var lm = BenchLoad.Load(irDir, hubOptions);
        var rng = new Random(1234);
        var prompt = Enumerable.Range(0, promptTokens).Select(_ => rng.Next(lm.VocabSize)).ToArray();

        HubRound(lm, prompt, newTokens); // warm-up
        long hubPeak = hubPhase.PeakBytes(), hubGrowth = hubPhase.GrowthBytes();
        var hubKinds = PeakRss.Composition();

        LlamaCppPeer? peer = null;
        string? gguf = null;
        double? ggufSeconds = null;
        long peerGrowth = 0;
        RssPhase? peerPhase = null;
        RssComposition? peerKinds = null;
        try
        {
            if (withPeer)
            {
                var sw = Stopwatch.StartNew();
                bool fresh = !GgufConvert.IsCached(lm.Directory, type);
                gguf = GgufConvert.Cached(lm.Directory, type);
                if (fresh) ggufSeconds = sw.Elapsed.TotalSeconds;
                peerPhase = RssPhase.Begin();
                peer = LlamaCppPeer.Load(gguf, threads, promptTokens + newTokens + 8, Math.Max(32, promptTokens));
                if (peer.VocabSize != lm.VocabSize) throw new HubException($"{gguf}: llama.cpp sees {peer.VocabSize} tokens, Hub {lm.VocabSize}");
                peer.Run(prompt, newTokens); // warm-up
                // Without a resettable peak: the growth of the current resident set (the figure before session 5).
                peerGrowth = peerPhase.Isolated ? peerPhase.GrowthBytes() : Math.Max(0, PeakRss.CurrentBytes() - peerPhase.BaselineBytes);
                peerKinds = PeakRss.Composition();
            }

            // Read passes between the quiet rounds see the neighbours the rounds see (ReadProbe); the buffer is filled
            // before the phase begins, stays resident through it and is subtracted from its peak.
            using var between = new ReadProbe(threads);
            var bothPhase = RssPhase.Begin();
            var quiet = Alternate(lm, peer, prompt, newTokens, rounds, between);
            // page sizes of each engine's weight mappings after its rounds (the page cache decides them: HubPages)
            var hubPages = HubPages(lm.Directory);
            var peerPages = gguf is null ? null : PeakRss.MappedPagesOf(gguf);
            long bothPeak = bothPhase.PeakBytes() - between.ResidentBytes;
            double bwRounds = between.Median;
            between.Dispose();
            (List<Round> Hub, List<Round> Peer)? busyRounds = null;
            if (busy > 0)
            {
                using var spin = new Spinner(busy);
                busyRounds = Alternate(lm, peer, prompt, newTokens, rounds, null);
            }
            double bw = BenchCommand.MeasureReadBandwidth(threads);

            long hubBytes = HubBytesPerToken(lm);
            long peerBytes = gguf is null ? 0 : GgufBytesPerToken(gguf);
            var o = new JsonObject
            {
                ["model"] = r.GetValue(m.Model),
                ["runtime"] = Hub.Runtime.CpuInfo.Describe(),
                ["threads"] = threads,
                ["prompt_tokens"] = promptTokens,
                ["new_tokens"] = newTokens,
                ["rounds"] = rounds,
                ["precision"] = type.ToString(),
                ["hub_kv_cache"] = lm.KvCachePrecision.ToString(),
                ["read_bandwidth_gb_s"] = Math.Round(bw / 1e9, 2),
                ["read_bandwidth_between_rounds_gb_s"] = Math.Round(bwRounds / 1e9, 2),
                ["busy_cores"] = busy,
                ["peak_rss_scope"] = hubPhase.Scope,
                ["hub"] = Engine(quiet.Hub, busyRounds?.Hub, promptTokens, newTokens, RssPhase.Mib(hubPeak), hubBytes, bw, bwRounds),
            };
            AddPages(o["hub"]!.AsObject(), hubPages);
            if (exportSeconds is { } es) o["export_seconds"] = Math.Round(es, 3);
            if (ggufSeconds is { } gs) o["gguf_export_seconds"] = Math.Round(gs, 3);
            if (hubPhase.Isolated)
            {
                o["process_baseline_rss_mib"] = RssPhase.Mib(hubPhase.BaselineBytes);
                o["hub"]!["peak_rss_growth_mib"] = RssPhase.Mib(hubGrowth);
                hubPhase.AddGrowthByKind(o["hub"]!.AsObject(), hubKinds);
                if (peer is not null) o["peak_rss_both_engines_mib"] = RssPhase.Mib(bothPeak);
            }
            if (peer is not null)
            {
                o["gguf"] = gguf;
                o["llamacpp_native"] = LlamaCppPeer.NativeLibraryPath;
                double peerRss = RssPhase.Mib(hubPhase.Isolated ? hubPhase.BaselineBytes + peerGrowth : peerGrowth);
                o["llamacpp"] = Engine(quiet.Peer, busyRounds?.Peer, promptTokens, newTokens, peerRss, peerBytes, bw, bwRounds);
                AddPages(o["llamacpp"]!.AsObject(), peerPages);
                o["llamacpp"]!["peak_rss_mib_note"] = hubPhase.Isolated
                    ? "process baseline before Hub loaded + resident-set growth while llama.cpp loaded and ran its warm-up round (Hub loaded, idle); the GGUF's mmap'd pages count as it touches them, as Hub's IR pages do for Hub"
                    : "resident-set growth (current, not peak) from loading llama.cpp and running one round: this OS cannot reset the peak resident set";
                if (hubPhase.Isolated) o["llamacpp"]!["peak_rss_growth_mib"] = RssPhase.Mib(peerGrowth);
                peerPhase?.AddGrowthByKind(o["llamacpp"]!.AsObject(), peerKinds);
                var h = o["hub"]!; var c = o["llamacpp"]!;
                o["ratio_hub_over_llamacpp"] = new JsonObject
                {
                    ["prefill"] = Ratio(h["prefill_tok_s"], c["prefill_tok_s"]),
                    ["decode"] = Ratio(h["decode_tok_s"], c["decode_tok_s"]),
                    ["ttft"] = Ratio(h["ttft_ms"], c["ttft_ms"]),
                    ["busy_decode"] = busy > 0 ? Ratio(h["busy_decode_tok_s"], c["busy_decode_tok_s"]) : null,
                    // Round i of each engine ran back to back, so the pair shared the host's bandwidth at that moment:
                    // the median of the per-pair ratios holds when the host moves between pairs, which can put the
                    // two engines' medians on opposite sides of a jump.
                    ["prefill_paired"] = Math.Round(BenchStats.Median(quiet.Hub.Zip(quiet.Peer, (a, b) => b.Prefill / a.Prefill)), 3),
                    ["decode_paired"] = Math.Round(BenchStats.Median(quiet.Hub.Zip(quiet.Peer, (a, b) => b.Decode / a.Decode)), 3),
                };
                var ht = quiet.Hub[^1].Tokens; var pt = quiet.Peer[^1].Tokens;
                int same = 0;
                while (same < Math.Min(ht.Length, pt.Length) && ht[same] == pt[same]) same++;
                o["greedy_tokens_identical_prefix"] = $"{same}/{ht.Length}";
            }
            if (json) Console.WriteLine(o.ToJsonString());
            else Print(o, peer is not null, busy);
            return 0;
        }
        finally { peer?.Dispose(); }
    }

    private static (List<Round> Hub, List<Round> Peer) Alternate(CausalLM lm, LlamaCppPeer? peer, int[] prompt, int newTokens, int rounds, ReadProbe? between)
    {
        var hub = new List<Round>(); var cpp = new List<Round>();
        for (int i = 0; i < rounds; i++)
        {
            hub.Add(HubRound(lm, prompt, newTokens));
            between?.Sample();
            if (peer is not null) { var p = peer.Run(prompt, newTokens); cpp.Add(new Round(p.PrefillSeconds, p.DecodeSeconds, p.Tokens)); between?.Sample(); }
        }
        return (hub, cpp);
    }

    /// <summary>One Hub round, timed as the peer's: prompt → first greedy token, then <paramref name="newTokens"/> steps.</summary>
    private static Round HubRound(CausalLM lm, int[] prompt, int newTokens)
    {
        var tokens = new int[newTokens + 1];
        lm.Reset();
        var t0 = Stopwatch.GetTimestamp();
        tokens[0] = LogitsProcessors.ArgMax(lm.Forward(prompt, 1, prompt.Length, default));
        var t1 = Stopwatch.GetTimestamp();
        for (int i = 0; i < newTokens; i++) tokens[i + 1] = LogitsProcessors.ArgMax(lm.Forward(tokens.AsSpan(i, 1), 1, 1, default));
        var t2 = Stopwatch.GetTimestamp();
        return new Round((t1 - t0) / (double)Stopwatch.Frequency, (t2 - t1) / (double)Stopwatch.Frequency, tokens);
    }

    private static JsonObject Engine(List<Round> quiet, List<Round>? busy, int p, int n, double rss, long bytesPerToken, double bw, double bwRounds)
    {
        double decode = BenchStats.Median(quiet.Select(x => n / x.Decode));
        var o = new JsonObject
        {
            ["prefill_tok_s"] = Math.Round(BenchStats.Median(quiet.Select(x => p / x.Prefill)), 2),
            ["decode_tok_s"] = Math.Round(decode, 2),
            ["ttft_ms"] = Math.Round(BenchStats.Median(quiet.Select(x => x.Prefill * 1000)), 2),
            ["peak_rss_mib"] = rss,
            ["weight_mib_per_token"] = Math.Round(bytesPerToken / 1048576.0, 1),
            ["decode_bandwidth_fraction"] = Math.Round(bytesPerToken * decode / bw, 3),
            ["decode_bandwidth_fraction_between_rounds"] = Math.Round(bytesPerToken * decode / bwRounds, 3),
            ["decode_tok_s_rounds"] = new JsonArray(quiet.Select(x => (JsonNode)Math.Round(n / x.Decode, 2)).ToArray()),
        };
        if (busy is not null)
        {
            double bd = BenchStats.Median(busy.Select(x => n / x.Decode));
            o["busy_decode_tok_s"] = Math.Round(bd, 2);
            o["busy_prefill_tok_s"] = Math.Round(BenchStats.Median(busy.Select(x => p / x.Prefill)), 2);
            o["busy_over_quiet_decode"] = Math.Round(bd / decode, 3);
            o["busy_decode_tok_s_rounds"] = new JsonArray(busy.Select(x => (JsonNode)Math.Round(n / x.Decode, 2)).ToArray());
        }
        return o;
    }

    /// <summary>
    /// Hub's mapped weight files in <paramref name="irDir"/> (the IR's weights and any cache beside them, not the GGUF
    /// exports kept in the same folder for the peer).
    /// </summary>
    internal static MappedPages? HubPages(string irDir) =>
        PeakRss.MappedPagesOf(Path.Combine(irDir, Hub.IR.IrFormat.BinFile), Path.Combine(irDir, Hub.IR.IrFormat.CacheFolder));

    /// <summary>
    /// The resident size of an engine's weight mappings and the share of it in 2 MiB pages: a 4 KiB page cache costs a
    /// bandwidth-bound GEMV a TLB walk every 4 KiB, so this explains f32/f16 decode gaps between engines and runs.
    /// </summary>
    internal static void AddPages(JsonObject engine, MappedPages? pages)
    {
        if (pages is null) return;
        engine["mapped_weights_mib"] = RssPhase.Mib(pages.ResidentBytes);
        engine["mapped_weights_in_2mib_pages"] = Math.Round(pages.HugeFraction, 3);
    }

    private static void Print(JsonObject o, bool peer, int busy)
    {
        foreach (var k in new[] { "model", "runtime", "threads", "prompt_tokens", "new_tokens", "rounds", "precision", "read_bandwidth_gb_s", "read_bandwidth_between_rounds_gb_s", "gguf", "llamacpp_native", "greedy_tokens_identical_prefix",
                     "export_seconds", "gguf_export_seconds", "peak_rss_scope", "process_baseline_rss_mib", "peak_rss_both_engines_mib" })
            if (o[k] is { } v) Console.WriteLine($"{k,-32} {v}");
        Console.WriteLine();
        Console.WriteLine(peer ? $"{"",-28}{"hub",12}{"llama.cpp",12}{"hub/llama.cpp",15}" : $"{"",-28}{"hub",12}");
        var rows = new List<(string Label, string Key)>
        {
            ("prefill tok/s", "prefill_tok_s"), ("decode tok/s", "decode_tok_s"), ("time to first token ms", "ttft_ms"),
            ("peak RSS MiB", "peak_rss_mib"), ("  of which its own growth", "peak_rss_growth_mib"),
            ("    anonymous (heap, buffers)", "rss_growth_anon_mib"), ("    file-backed (weights, code)", "rss_growth_file_mib"),
            ("weights MiB read / token", "weight_mib_per_token"), ("decode / bandwidth roof", "decode_bandwidth_fraction"),
            ("  / probe between rounds", "decode_bandwidth_fraction_between_rounds"),
            ("mapped weights MiB", "mapped_weights_mib"), ("  in 2 MiB pages", "mapped_weights_in_2mib_pages"),
        };
        if (busy > 0)
        {
            rows.Add(($"decode tok/s, {busy} core(s) busy", "busy_decode_tok_s"));
            rows.Add(($"prefill tok/s, {busy} core(s) busy", "busy_prefill_tok_s"));
            rows.Add(("busy / quiet decode", "busy_over_quiet_decode"));
        }
        foreach (var (label, key) in rows)
        {
            var h = o["hub"]![key];
            if (!peer) { Console.WriteLine($"{label,-28}{h,12}"); continue; }
            var c = o["llamacpp"]![key];
            Console.WriteLine($"{label,-28}{h,12}{c,12}{Ratio(h, c),15}");
        }
        if (o["ratio_hub_over_llamacpp"] is JsonObject r)
            Console.WriteLine($"{"paired rounds (median of hub/llama.cpp per round pair)",-28}: prefill {r["prefill_paired"]}, decode {r["decode_paired"]}");
    }

    private static double? Ratio(JsonNode? a, JsonNode? b)
    {
        if (a is null || b is null) return null;
        double x = (double)a, y = (double)b;
        return y == 0 ? null : Math.Round(x / y, 3);
    }

    /// <summary>
    /// Bytes a decode step streams: every stored weight (with quantization scales) except an untied embedding table,
    /// of which a step reads one row.
    /// </summary>
    internal static long HubBytesPerToken(CausalLM lm)
    {
        var g = lm.Graph;
        var head = g.Nodes.FirstOrDefault(n => n.Name == "logits")?.Inputs.ElementAtOrDefault(1);
        var embed = g.Nodes.FirstOrDefault(n => n.Op == Hub.IR.Ops.Embedding)?.Inputs.ElementAtOrDefault(1);
        return g.Weights.Where(w => embed is null || embed == head || !(w.Name == embed || w.Name.StartsWith(embed + ".", StringComparison.Ordinal)))
            .Sum(w => w.Length);
    }

    private static long GgufBytesPerToken(string gguf)
    {
        var r = GgufReader.Open(gguf);
        bool untied = r.Tensors.Any(t => t.Name == "output.weight");
        return r.Tensors.Where(t => !(untied && t.Name == "token_embd.weight")).Sum(t => t.Bytes);
    }

    /// <summary>N background threads that burn a core each until disposed.</summary>
    private sealed class Spinner : IDisposable
    {
        private volatile bool _stop;
        private readonly Thread[] _threads;

        public Spinner(int n)
        {
            _threads = Enumerable.Range(0, n).Select(i => new Thread(Spin) { IsBackground = true, Name = $"busy-core-{i}" }).ToArray();
            foreach (var t in _threads) t.Start();
        }

        private void Spin()
        {
            double x = 1;
            while (!_stop) for (int i = 0; i < 1 << 16; i++) x = x * 1.0000001 + 1e-9;
            GC.KeepAlive(x);
        }

        public void Dispose()
        {
            _stop = true;
            foreach (var t in _threads) t.Join();
        }
    }
}
