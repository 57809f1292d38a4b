// `hub bench <model> --contexts 64,1024`: decode cost as the KV cache grows. For each context c the cache is filled to
// c positions, then single-token decode steps are timed (median ms/token), once plain and once with the runtime's
// opt-in per-op profiling to split off the Attention ops. A stateful cache should make the growth from the smallest
// to the largest context no more than the attention work predicts (the cache bytes each step reads grow with c; the
// weights read do not), and copy no cache bytes per step — both are printed side by side.
// Models: any causal LM with "linear" positions (GPT-2, LLaMA, ChatGLM2/3); `synthetic:chatglm2` generates a
// deterministic ChatGLM2-shaped random checkpoint (SyntheticChatGlm2) so contexts past the tiny fixtures' 256 mean
// something.
using Hub.Benchmarks;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Hub.IR;
using Hub.Runtime;

namespace Hub.Cli.Commands;

/// <summary>The <c>--contexts</c> mode of <c>hub bench</c>.</summary>
public static class BenchContexts
{
    /// <summary>Decode steps timed per context, pass and round.</summary>
    public const int Steps = 24;

    private const int PrefillChunk = 256;

    /// <summary>Per-context figures.</summary>
    public sealed record ContextFigures(int Context, double MsPerToken, double MinMsPerToken, double AttentionMsPerToken, double ProfiledMsPerToken,
        long CacheBytesReadPerToken, double AttentionFlopsPerToken, double StateBytesCopiedPerStep, long StateBytesAppendedPerStep, long GcBytesPerStep)
    {
        /// <summary>Share of the profiled step time spent in Attention ops.</summary>
        public double AttentionShare => ProfiledMsPerToken > 0 ? AttentionMsPerToken / ProfiledMsPerToken : 0;
    }

    /// <summary>Parses "64,1024" into sorted distinct positive contexts.</summary>
    public static int[] ParseContexts(string text)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var list = new List<int>();
        foreach (var p in parts)
        {
            if (!int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out var c) || c < 1)
                throw new ArgumentException($"--contexts must be comma-separated positive integers, got '{text}'");
            list.Add(c);
        }
        if (list.Count == 0) throw new ArgumentException("--contexts needs at least one context, e.g. --contexts 64,1024");
        return list.Distinct().Order().ToArray();
    }

    /// <summary>Runs the bench and prints the table (or one JSON object); returns the exit code.</summary>
    public static int Run(string model, string contextsText, ModelOptions options, bool json, int rounds = 1)
    {
        var contexts = ParseContexts(contextsText);
        string source = model;
        if (string.Equals(model, SyntheticChatGlm2.Name, StringComparison.Ordinal))
        {
            source = SyntheticChatGlm2.Ensure(Path.Combine(Path.GetTempPath(), "hub-bench-synthetic-chatglm2"));
            if (!json) Console.Error.WriteLine($"synthetic model: {source} ({SyntheticChatGlm2.Describe()})");
        }
        // Export (cached) through the public entry point, then compile the IR with a cache as long as the contexts need:
        // the bench may go past max_position_embeddings for RoPE models (it reports, it does not generate text).
        string irDir;
        using (var lm = CausalLM.FromPretrained(source, export: true, new ModelOptions
        {
            Subfolder = options.Subfolder, Revision = options.Revision, SourceFormat = options.SourceFormat,
            Threads = options.Threads, MaxContext = 16, MaxBatch = 1,
        }))
            irDir = lm.Directory;

        using var ir = IrModel.Load(irDir);
        var g = ir.Graph;
        if ((string?)g.Metadata["positions"] != "linear" || g.States.Count == 0)
            throw new UnsupportedModelException($"{model}: --contexts needs a stateful causal LM with linear positions (GPT-2, LLaMA, ChatGLM2/3); " +
                $"this graph's positions are '{(string?)g.Metadata["positions"] ?? "(none)"}' (ChatGLM-6B v1's 2D positions are not driven by the bench)");
        int capacity = Math.Max(options.MaxContext, contexts[^1] + Steps + 1);
        int modelMax = (int?)g.Metadata["max_position_embeddings"] ?? int.MaxValue;
        if (capacity > modelMax && !json)
            Console.Error.WriteLine($"note: contexts up to {capacity} exceed max_position_embeddings {modelMax}; fine for RoPE models, an error for learned position tables");
        using var compiled = CompiledModel.Compile(ir, new RuntimeOptions { Threads = options.Threads, MaxContext = capacity, MaxBatch = 1, KvCachePrecision = options.KvCachePrecision });
        var requests = contexts.Select(_ => compiled.CreateInferRequest()).ToArray();
        try
        {
            var figures = Measure(requests, g, contexts, capacity, Math.Max(1, rounds), compiled.KvCachePrecision == KvCachePrecision.F16 ? 2 : 4);
            Print(model, irDir, options, figures, json, Steps * Math.Max(1, rounds), compiled.KvCachePrecision);
        }
        finally
        {
            foreach (var r in requests) r.Dispose();
        }
        return 0;
    }

    // One request per context, each filled once; the timed steps alternate between the contexts (so machine noise hits
    // all of them alike) and each step is truncated away again, so every step of context c runs at exactly c.
    private static ContextFigures[] Measure(InferRequest[] reqs, Graph g, int[] contexts, int capacity, int rounds, int elementBytes)
    {
        int n = contexts.Length, steps = Steps * rounds;
        var drivers = reqs.Select(r => new Driver(r, g, capacity)).ToArray();
        for (int c = 0; c < n; c++) drivers[c].Fill(contexts[c]);
        // JIT tiering and first-touch page faults out of the way before anything is timed.
        for (int i = 0; i < 8; i++)
            for (int c = 0; c < n; c++) { drivers[c].Step(); reqs[c].TruncateState(contexts[c]); }

        var times = new double[n][];
        var copied0 = new long[n]; var appended0 = new long[n]; var gc = new long[n];
        for (int c = 0; c < n; c++) { times[c] = new double[steps]; copied0[c] = reqs[c].StateBytesCopied; appended0[c] = reqs[c].StateBytesAppended; }
        for (int i = 0; i < steps; i++)
            for (int c = 0; c < n; c++)
            {
                long g0 = GC.GetAllocatedBytesForCurrentThread();
                long t0 = Stopwatch.GetTimestamp();
                drivers[c].Step();
                times[c][i] = (Stopwatch.GetTimestamp() - t0) * 1000.0 / Stopwatch.Frequency;
                reqs[c].TruncateState(contexts[c]);
                gc[c] += GC.GetAllocatedBytesForCurrentThread() - g0;
            }

        // The same again with per-op profiling on, for the attention share.
        var profiled = new double[n][];
        for (int c = 0; c < n; c++) { profiled[c] = new double[steps]; reqs[c].ProfileOps = true; reqs[c].ResetOpTimes(); }
        for (int i = 0; i < steps; i++)
            for (int c = 0; c < n; c++)
            {
                long t0 = Stopwatch.GetTimestamp();
                drivers[c].Step();
                profiled[c][i] = (Stopwatch.GetTimestamp() - t0) * 1000.0 / Stopwatch.Frequency;
                reqs[c].TruncateState(contexts[c]);
            }

        var result = new ContextFigures[n];
        for (int c = 0; c < n; c++)
        {
            var ops = reqs[c].GetOpTimes();
            reqs[c].ProfileOps = false;
            double total = ops.Values.Sum(t => t.TotalMilliseconds);
            double attn = ops.TryGetValue(Ops.Attention, out var a) ? a.TotalMilliseconds : 0;
            double share = total > 0 ? attn / total : 0;
            double profiledMs = BenchStats.Median(profiled[c]);
            // What the attention reads and computes for one new token at this context.
            long ctx = contexts[c] + 1, cacheBytes = 0;
            foreach (var s in g.States) cacheBytes += s.Shape[1].Value * ctx * s.Shape[3].Value * elementBytes;
            double flops = 0;
            foreach (var node in g.Nodes.Where(x => x.Op == Ops.Attention))
                flops += 4.0 * node.GetInt("heads") * node.GetInt("head_dim") * ctx;   // q·kᵀ and p·v, a multiply-add each
            result[c] = new ContextFigures(contexts[c], BenchStats.Median(times[c]), times[c].Min(), share * profiledMs, profiledMs, cacheBytes, flops,
                (reqs[c].StateBytesCopied - copied0[c]) / (double)steps, (reqs[c].StateBytesAppended - appended0[c]) / (2L * steps),
                gc[c] / steps);
        }
        return result;
    }

    private static void Print(string model, string irDir, ModelOptions options, ContextFigures[] f, bool json, int steps, KvCachePrecision kv)
    {
        var first = f[0];
        var last = f[^1];
        double growth = last.MsPerToken - first.MsPerToken;
        double bytesRatio = first.CacheBytesReadPerToken > 0 ? last.CacheBytesReadPerToken / (double)first.CacheBytesReadPerToken : 1;
        // Attention-only model: only the attention work scales with the context, linearly in the cache bytes it reads.
        double predicted = first.AttentionMsPerToken * (bytesRatio - 1);
        double attnGrowth = last.AttentionMsPerToken - first.AttentionMsPerToken;
        bool within = growth <= predicted;
        // The fastest step of each context is the least disturbed by other processes on a shared machine.
        double minGrowth = last.MinMsPerToken - first.MinMsPerToken;
        bool minWithin = minGrowth <= predicted;
        if (json)
        {
            var rows = new JsonArray();
            foreach (var x in f)
                rows.Add(new JsonObject
                {
                    ["context"] = x.Context,
                    ["ms_per_token"] = Math.Round(x.MsPerToken, 3),
                    ["min_ms_per_token"] = Math.Round(x.MinMsPerToken, 3),
                    ["attention_ms_per_token"] = Math.Round(x.AttentionMsPerToken, 3),
                    ["attention_share"] = Math.Round(x.AttentionShare, 4),
                    ["cache_bytes_read_per_token"] = x.CacheBytesReadPerToken,
                    ["attention_flops_per_token"] = x.AttentionFlopsPerToken,
                    ["state_bytes_copied_per_step"] = x.StateBytesCopiedPerStep,
                    ["state_bytes_appended_per_step"] = x.StateBytesAppendedPerStep,
                    ["gc_bytes_per_step"] = x.GcBytesPerStep,
                });
            var o = new JsonObject
            {
                ["model"] = model,
                ["ir"] = irDir,
                ["runtime"] = CpuInfo.Describe(),
                ["threads"] = options.Threads > 0 ? options.Threads : Environment.ProcessorCount,
                ["steps_per_context"] = steps,
                ["kv_cache"] = kv.ToString(),
                ["contexts"] = rows,
                ["measured_growth_ms"] = Math.Round(growth, 3),
                ["measured_min_growth_ms"] = Math.Round(minGrowth, 3),
                ["min_growth_within_attention_prediction"] = minWithin,
                ["measured_attention_growth_ms"] = Math.Round(attnGrowth, 3),
                ["predicted_attention_only_growth_ms"] = Math.Round(predicted, 3),
                ["cache_bytes_ratio"] = Math.Round(bytesRatio, 3),
                ["growth_within_attention_prediction"] = within,
            };
            Console.WriteLine(o.ToJsonString());
            return;
        }
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"model {model}  ({CpuInfo.Describe()}, threads {(options.Threads > 0 ? options.Threads : Environment.ProcessorCount)}, kv cache {kv}, {steps} decode steps per context interleaved across contexts, medians)");
        sb.AppendLine("context  ms/token  min ms  attention ms  attention %  other ms  cache MiB read/token  attention MFLOP/token  state bytes copied/step  appended/step  GC bytes/step");
        foreach (var x in f)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"{x.Context,7}  {x.MsPerToken,8:F2}  {x.MinMsPerToken,6:F2}  {x.AttentionMsPerToken,12:F3}  {100 * x.AttentionShare,10:F1}%  {x.ProfiledMsPerToken - x.AttentionMsPerToken,8:F2}  {x.CacheBytesReadPerToken / 1048576.0,20:F2}  {x.AttentionFlopsPerToken / 1e6,21:F1}  {x.StateBytesCopiedPerStep,23:F0}  {x.StateBytesAppendedPerStep,13}  {x.GcBytesPerStep,13}");
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"growth {first.Context} → {last.Context}: median {growth:+0.00;-0.00} ms/token ({last.MsPerToken / first.MsPerToken:F2}×), fastest step {minGrowth:+0.00;-0.00} ms; attention ops measured {attnGrowth:+0.00;-0.00} ms");
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"predicted attention-only growth: attention at {first.Context} ({first.AttentionMsPerToken:F3} ms) × (cache bytes ratio {bytesRatio:F1} − 1) = {predicted:+0.00;-0.00} ms/token → median growth {(within ? "within" : "ABOVE")} it, fastest-step growth {(minWithin ? "within" : "ABOVE")} it");
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"non-attention time per token (profiled): {first.ProfiledMsPerToken - first.AttentionMsPerToken:F2} ms at {first.Context}, {last.ProfiledMsPerToken - last.AttentionMsPerToken:F2} ms at {last.Context}");
        Console.Write(sb.ToString());
    }

    // Feeds a linear-position causal LM graph: random ids, positions = index, mask of ones, one logits row.
    private sealed class Driver
    {
        private readonly InferRequest _req;
        private readonly bool _hasPos, _hasMask, _hasKeep;
        private readonly int _vocab;
        private readonly int[] _ids, _pos;
        private readonly float[] _mask;
        private readonly int[] _shape = new int[2], _maskShape = new int[2], _keepShape = [1], _keep = [1];
        private readonly Random _rng = new(1234);

        public Driver(InferRequest req, Graph g, int capacity)
        {
            _req = req;
            _hasPos = g.Inputs.Any(i => i.Name == "position_ids");
            _hasMask = g.Inputs.Any(i => i.Name == "attention_mask");
            _hasKeep = g.Inputs.Any(i => i.Name == "logits_to_keep");
            _vocab = (int?)g.Metadata["vocab_size"] ?? 2;
            _ids = new int[PrefillChunk];
            _pos = new int[PrefillChunk];
            _mask = Enumerable.Repeat(1f, capacity).ToArray();
        }

        /// <summary>Empties the cache and prefills <paramref name="context"/> random tokens in chunks.</summary>
        public void Fill(int context)
        {
            _req.ResetState();
            while (_req.PastLength < context) Run(Math.Min(PrefillChunk, context - _req.PastLength));
        }

        /// <summary>One decode step (one new token).</summary>
        public void Step() => Run(1);

        private void Run(int t)
        {
            int past = _req.PastLength;
            for (int i = 0; i < t; i++) { _ids[i] = _rng.Next(_vocab); _pos[i] = past + i; }
            _shape[0] = 1; _shape[1] = t;
            _req.SetInput("input_ids", _ids.AsSpan(0, t), _shape);
            if (_hasPos) _req.SetInput("position_ids", _pos.AsSpan(0, t), _shape);
            if (_hasMask)
            {
                _maskShape[0] = 1; _maskShape[1] = past + t;
                _req.SetInput("attention_mask", _mask.AsSpan(0, past + t), _maskShape);
            }
            if (_hasKeep) _req.SetInput("logits_to_keep", _keep, _keepShape);
            _req.Infer();
        }
    }
}

/// <summary>
/// A deterministic random ChatGLM2-6B-shaped checkpoint, scaled down (hidden 1024, 16 heads of 64, 2 query groups,
/// FFN 4096, 8 layers, seq_length 2048, vocab 4096), written as HF safetensors + config.json: long contexts for the
/// bench without downloading 12 GB. Its text is meaningless; its cost structure is ChatGLM2's.
/// </summary>
public static class SyntheticChatGlm2
{
    /// <summary>The model argument that selects it.</summary>
    public const string Name = "synthetic:chatglm2";

    private const int Hidden = 1024, Heads = 16, HeadDim = 64, Groups = 2, Ffn = 4096, Layers = 8, Vocab = 4096, SeqLength = 2048;

    /// <summary>One line for the report.</summary>
    public static string Describe() =>
        $"ChatGLM2-shaped random: hidden {Hidden}, {Heads} heads × {HeadDim}, {Groups} query groups, ffn {Ffn}, {Layers} layers, vocab {Vocab}, seq_length {SeqLength}, float32";

    /// <summary>Writes the checkpoint into <paramref name="dir"/> unless it is already there; returns the folder.</summary>
    public static string Ensure(string dir)
    {
        if (File.Exists(Path.Combine(dir, "config.json")) && File.Exists(Path.Combine(dir, "model.safetensors"))) return dir;
        var parent = Path.GetDirectoryName(Path.GetFullPath(dir))!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, $".{Path.GetFileName(dir)}.tmp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(tmp);
        try
        {
            Write(tmp);
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
            Directory.Move(tmp, dir);
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        }
        return dir;
    }

    private static void Write(string dir)
    {
        var config = new JsonObject
        {
            ["model_type"] = "chatglm",
            ["architectures"] = new JsonArray("ChatGLMModel"),
            ["add_bias_linear"] = false,
            ["add_qkv_bias"] = true,
            ["apply_residual_connection_post_layernorm"] = false,
            ["ffn_hidden_size"] = Ffn,
            ["hidden_size"] = Hidden,
            ["kv_channels"] = HeadDim,
            ["layernorm_epsilon"] = 1e-5,
            ["multi_query_attention"] = true,
            ["multi_query_group_num"] = Groups,
            ["num_attention_heads"] = Heads,
            ["num_layers"] = Layers,
            ["original_rope"] = true,
            ["padded_vocab_size"] = Vocab,
            ["post_layer_norm"] = true,
            ["rmsnorm"] = true,
            ["seq_length"] = SeqLength,
            ["tie_word_embeddings"] = false,
            ["torch_dtype"] = "float32",
            ["eos_token_id"] = 2,
            ["pad_token_id"] = 0,
        };
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());

        int qkv = Heads * HeadDim + 2 * Groups * HeadDim;
        var tensors = new List<(string Name, long[] Shape, float Scale, float Offset)>
        {
            ("transformer.embedding.word_embeddings.weight", [Vocab, Hidden], 0.5f, 0),
        };
        for (int l = 0; l < Layers; l++)
        {
            string p = $"transformer.encoder.layers.{l}.";
            tensors.Add((p + "input_layernorm.weight", [Hidden], 0.1f, 1));
            tensors.Add((p + "self_attention.query_key_value.weight", [qkv, Hidden], 0.03f, 0));
            tensors.Add((p + "self_attention.query_key_value.bias", [qkv], 0.02f, 0));
            tensors.Add((p + "self_attention.dense.weight", [Hidden, Heads * HeadDim], 0.03f, 0));
            tensors.Add((p + "post_attention_layernorm.weight", [Hidden], 0.1f, 1));
            tensors.Add((p + "mlp.dense_h_to_4h.weight", [2L * Ffn, Hidden], 0.03f, 0));
            tensors.Add((p + "mlp.dense_4h_to_h.weight", [Hidden, Ffn], 0.015f, 0));
        }
        tensors.Add(("transformer.encoder.final_layernorm.weight", [Hidden], 0.1f, 1));
        tensors.Add(("transformer.output_layer.weight", [Vocab, Hidden], 0.03f, 0));

        // safetensors: u64 header length, JSON header (offsets relative to the data), raw little-endian data.
        var header = new JsonObject();
        long offset = 0;
        foreach (var t in tensors)
        {
            long bytes = t.Shape.Aggregate(4L, (a, b) => a * b);
            header[t.Name] = new JsonObject
            {
                ["dtype"] = "F32",
                ["shape"] = new JsonArray(t.Shape.Select(x => (JsonNode)x).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }
        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (headerBytes.Length + 7) & ~7;
        using var fs = new FileStream(Path.Combine(dir, "model.safetensors"), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> len = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
        fs.Write(len);
        fs.Write(headerBytes);
        for (int i = headerBytes.Length; i < padded; i++) fs.WriteByte((byte)' ');
        ulong state = 0x9E3779B97F4A7C15UL;
        var buf = new float[1 << 16];
        foreach (var t in tensors)
        {
            long n = t.Shape.Aggregate(1L, (a, b) => a * b);
            for (long done = 0; done < n;)
            {
                int m = (int)Math.Min(buf.Length, n - done);
                for (int i = 0; i < m; i++)
                {
                    // xorshift64*: uniform in [-1, 1).
                    state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
                    float u = (float)((state * 0x2545F4914F6CDD1DUL) >> 40) / (1 << 24) * 2 - 1;
                    buf[i] = t.Offset + t.Scale * u;
                }
                fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(buf.AsSpan(0, m)));
                done += m;
            }
        }
    }
}
