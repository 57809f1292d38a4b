// `hub bench-model small|1b -o DIR`: deterministic random-weight LLaMA checkpoints for benchmarks (never committed).
// "small": dim 768, 12 layers, 12 heads, ffn 2048, vocab 32000, untied head (134M parameters);
// "1b": TinyLlama-1.1B's shape: dim 2048, 22 layers, 32 heads, 4 kv heads, ffn 5632, vocab 32000.
// Weights are N(0, 0.02) (norm gains 1), so activations stay finite; the tokenizer is a synthesized SentencePiece
// vocabulary (GgufVocab.Synthesize) that Hub and llama.cpp both read.
using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hub.Converters;
using Hub.Converters.Formats;
using Hub.Tokenization;

namespace Hub.Cli.Commands;

/// <summary><c>hub bench-model</c>: writes a Hugging Face LLaMA folder with deterministic random weights.</summary>
public static class BenchModelCommand
{
    /// <summary>Shape of a benchmark model.</summary>
    /// <param name="Dim">hidden_size.</param>
    /// <param name="Layers">num_hidden_layers.</param>
    /// <param name="Heads">num_attention_heads.</param>
    /// <param name="KvHeads">num_key_value_heads.</param>
    /// <param name="Ffn">intermediate_size.</param>
    /// <param name="Vocab">vocab_size.</param>
    /// <param name="Shards">safetensors shards.</param>
    public sealed record Shape(int Dim, int Layers, int Heads, int KvHeads, int Ffn, int Vocab, int Shards);

    /// <summary>The named shapes.</summary>
    public static Shape Named(string name) => name.ToLowerInvariant() switch
    {
        "small" => new Shape(768, 12, 12, 12, 2048, 32000, 1),
        "1b" => new Shape(2048, 22, 32, 4, 5632, 32000, 3),
        _ => throw new ArgumentException($"bench model '{name}' is not one of small, 1b"),
    };

    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var name = new Argument<string>("name") { Description = "small (134M) or 1b (TinyLlama-1.1B shape)" };
        var output = new Option<string>("-o", "--output") { Description = "output folder", Required = true };
        var seed = new Option<int>("--seed") { Description = "random seed", DefaultValueFactory = _ => 1234 };
        var dtype = new Option<string>("--dtype") { Description = "stored dtype: f32 or f16", DefaultValueFactory = _ => "f32" };
        var cmd = new Command("bench-model", "Write a deterministic random-weight LLaMA checkpoint (HF layout) for benchmarks.") { name, output, seed, dtype };
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            var d = (r.GetValue(dtype) ?? "f32").ToLowerInvariant() switch
            {
                "f32" => DType.F32,
                "f16" => DType.F16,
                var o => throw new ArgumentException($"--dtype '{o}' is not one of f32, f16"),
            };
            var sw = System.Diagnostics.Stopwatch.StartNew();
            long n = Write(r.GetValue(output)!, Named(r.GetValue(name)!), r.GetValue(seed), d);
            Console.WriteLine($"wrote {r.GetValue(name)} ({n / 1e6:F1} M parameters, {d}) → {Path.GetFullPath(r.GetValue(output)!)} in {sw.Elapsed.TotalSeconds:F1} s");
            return 0;
        }));
        return cmd;
    }

    /// <summary>Writes the model folder; returns the parameter count. Tensors are generated and written one at a time.</summary>
    public static long Write(string dir, Shape s, int seed, DType dtype)
    {
        // The whole folder is built beside the target and moved into place at the end: an interrupted run leaves no
        // half-written model, and a rerun never mixes old files (a stale model.safetensors next to a new index).
        dir = Path.GetFullPath(dir);
        if (Directory.Exists(dir) && Directory.EnumerateFileSystemEntries(dir).Any() && !File.Exists(Path.Combine(dir, "config.json")))
            throw new HubException($"{dir} exists and is not a model folder; choose an empty or new output folder");
        var parent = Path.GetDirectoryName(dir)!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, $".{Path.GetFileName(dir)}.tmp-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(tmp);
            long n = WriteInto(tmp, s, seed, dtype);
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            Directory.Move(tmp, dir);
            return n;
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        }
    }

    private static long WriteInto(string dir, Shape s, int seed, DType dtype)
    {
        int hd = s.Dim / s.Heads;
        var tensors = new List<(string Name, long[] Shape, bool Norm)>
        {
            ("model.embed_tokens.weight", [s.Vocab, s.Dim], false),
        };
        for (int i = 0; i < s.Layers; i++)
        {
            string p = $"model.layers.{i}";
            tensors.Add(($"{p}.input_layernorm.weight", [s.Dim], true));
            tensors.Add(($"{p}.self_attn.q_proj.weight", [s.Heads * hd, s.Dim], false));
            tensors.Add(($"{p}.self_attn.k_proj.weight", [s.KvHeads * hd, s.Dim], false));
            tensors.Add(($"{p}.self_attn.v_proj.weight", [s.KvHeads * hd, s.Dim], false));
            tensors.Add(($"{p}.self_attn.o_proj.weight", [s.Dim, s.Heads * hd], false));
            tensors.Add(($"{p}.post_attention_layernorm.weight", [s.Dim], true));
            tensors.Add(($"{p}.mlp.gate_proj.weight", [s.Ffn, s.Dim], false));
            tensors.Add(($"{p}.mlp.up_proj.weight", [s.Ffn, s.Dim], false));
            tensors.Add(($"{p}.mlp.down_proj.weight", [s.Dim, s.Ffn], false));
        }
        tensors.Add(("model.norm.weight", [s.Dim], true));
        tensors.Add(("lm_head.weight", [s.Vocab, s.Dim], false));
        long parameters = tensors.Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));

        // Shards of about equal size, tensors in order.
        long total = parameters * dtype.SizeOf(), perShard = total / s.Shards + 1;
        var shards = new List<List<(string, long[], bool)>> { new() };
        long acc = 0;
        foreach (var t in tensors)
        {
            long bytes = t.Shape.Aggregate(1L, (a, b) => a * b) * dtype.SizeOf();
            if (acc > 0 && acc + bytes > perShard && shards.Count < s.Shards) { shards.Add(new()); acc = 0; }
            shards[^1].Add(t);
            acc += bytes;
        }
        var weightMap = new JsonObject();
        for (int k = 0; k < shards.Count; k++)
        {
            var file = shards.Count == 1 ? "model.safetensors" : $"model-{k + 1:D5}-of-{shards.Count:D5}.safetensors";
            WriteSafetensors(Path.Combine(dir, file), shards[k], seed, dtype);
            foreach (var t in shards[k]) weightMap[t.Item1] = file;
        }
        if (shards.Count > 1)
            File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"),
                new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = weightMap }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["hidden_size"] = s.Dim,
            ["intermediate_size"] = s.Ffn,
            ["num_hidden_layers"] = s.Layers,
            ["num_attention_heads"] = s.Heads,
            ["num_key_value_heads"] = s.KvHeads,
            ["vocab_size"] = s.Vocab,
            ["max_position_embeddings"] = 2048,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 10000.0,
            ["hidden_act"] = "silu",
            ["tie_word_embeddings"] = false,
            ["bos_token_id"] = 1,
            ["eos_token_id"] = 2,
            ["torch_dtype"] = dtype == DType.F16 ? "float16" : "float32",
        };
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), new JsonObject
        {
            ["tokenizer_class"] = "LlamaTokenizer", ["bos_token"] = "<s>", ["eos_token"] = "</s>", ["unk_token"] = "<unk>",
            ["add_bos_token"] = true, ["add_eos_token"] = false,
        }.ToJsonString());
        File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), SentencePieceProto(GgufVocab.Synthesize(s.Vocab)));
        return parameters;
    }

    private static void WriteSafetensors(string path, List<(string Name, long[] Shape, bool Norm)> tensors, int seed, DType dtype)
    {
        var byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var buf = new float[1 << 16];
        var bytes = new byte[buf.Length * 4];
        SafetensorsWriter.WriteStreaming(path, tensors.Select(t => (t.Name, dtype, new Hub.Shape(t.Shape))),
            new Dictionary<string, string> { ["format"] = "pt" }, (name, fs) =>
            {
                var (_, shape, isNorm) = byName[name];
                long count = shape.Aggregate(1L, (a, b) => a * b);
                var rng = new Normal(HashCode(seed, name));
                for (long done = 0; done < count; done += buf.Length)
                {
                    int m = (int)Math.Min(buf.Length, count - done);
                    for (int i = 0; i < m; i++) buf[i] = isNorm ? 1f : 0.02f * rng.Next();
                    int nb = m * dtype.SizeOf();
                    DTypeConvert.FromFloat32(buf.AsSpan(0, m), dtype, bytes.AsSpan(0, nb));
                    fs.Write(bytes, 0, nb);
                }
            });
    }

    // FNV-1a of the name mixed with the seed: each tensor has its own stream, independent of write order.
    private static ulong HashCode(int seed, string name)
    {
        ulong h = 14695981039346656037UL ^ (ulong)(uint)seed;
        foreach (var c in name) { h ^= c; h *= 1099511628211UL; }
        return h;
    }

    /// <summary>Standard normal samples from xorshift64* and Box–Muller (deterministic across platforms).</summary>
    private sealed class Normal(ulong seed)
    {
        private ulong _s = seed == 0 ? 0x9E3779B97F4A7C15UL : seed;
        private float _spare;
        private bool _has;

        private double Uniform()
        {
            _s ^= _s >> 12; _s ^= _s << 25; _s ^= _s >> 27;
            return ((_s * 2685821657736338717UL) >> 11) * (1.0 / (1UL << 53));
        }

        public float Next()
        {
            if (_has) { _has = false; return _spare; }
            double u = Uniform(), v = Uniform();
            double r = Math.Sqrt(-2 * Math.Log(u + 1e-300)), a = 2 * Math.PI * v;
            _spare = (float)(r * Math.Sin(a)); _has = true;
            return (float)(r * Math.Cos(a));
        }
    }

    /// <summary>A SentencePiece ModelProto (BPE, byte fallback, identity normalizer) holding <paramref name="v"/>.</summary>
    public static byte[] SentencePieceProto(GgufVocab v) =>
        SentencePieceModelWriter.Write(v.Tokens, v.Scores, Array.ConvertAll(v.Types, t => (PieceType)t));
}
