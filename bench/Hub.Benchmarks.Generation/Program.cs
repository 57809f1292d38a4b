// Per-token decode time with and without the graph's TopK post-processing (CausalLM.UseLogitsTopK), for greedy and for
// top-k sampling, on models with realistic vocabularies: gpt2-tiny (GPT-2's 50257), a random LLaMA with 32000 (built in a
// temp folder) and stories260K (512). The model bodies are tiny on purpose, so that the post-processing's share of a step
// shows; on a real 7B model the body dominates and both variants converge.
// Usage: dotnet run -c Release --project bench/Hub.Benchmarks.Generation [-- <shared dir>]

using Hub.Benchmarks;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Hub;
using Hub.Converters;
using Hub.Generation;

var shared = args.Length > 0 ? args[0] : Environment.GetEnvironmentVariable("HUB_SHARED_DIR") ?? "../shared";
var tmp = Path.Combine(Path.GetTempPath(), "hub-bench-gen-" + Guid.NewGuid().ToString("N")[..8]);
Directory.CreateDirectory(tmp);
const int K = 64, Tokens = 96, Rounds = 15;
try
{
    var models = new List<(string Name, string Dir)>
    {
        ("gpt2-tiny (vocab 50257, d 64)", Path.Combine(shared, "fixtures/gpt2-tiny")),
        ("random LLaMA (vocab 32000, d 256, 2 layers)", RandomLlama(Path.Combine(tmp, "llama32k"), 32000, 256)),
        ("stories260K (vocab 512, d 64)", Path.Combine(shared, "models/karpathy/tinyllamas/stories260K")),
    };
    var configs = new (string Name, GenerationConfig Cfg)[]
    {
        ("greedy", new GenerationConfig { MaxNewTokens = Tokens, MinNewTokens = 0, EosTokenId = [] }),
        ("top_k=50 sampling", new GenerationConfig { MaxNewTokens = Tokens, DoSample = true, TopK = 50, TopP = 0.95f, Temperature = 0.8f, Seed = 1, EosTokenId = [] }),
    };
    Console.WriteLine($"per-token decode time, median (min) of {Rounds} runs of {Tokens} tokens (prefill excluded), TopK(k={K}) on the graph vs the full row; {Environment.ProcessorCount} cores");
    Console.WriteLine($"{"model",-46} {"decoding",-18} {"full row µs",18} {"graph TopK µs",18} {"ratio",7}");
    foreach (var (name, dir) in models)
    {
        if (!Directory.Exists(dir)) { Console.WriteLine($"{name}: {dir} missing, skipped"); continue; }
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = Path.Combine(tmp, "cache") });
        var prompt = Enumerable.Range(0, 8).Select(i => (i * 37 + 11) % lm.VocabSize).ToArray();
        foreach (var (cname, cfg) in configs)
        {
            var off = new List<double>(); var on = new List<double>();
            int[]? idsOff = null, idsOn = null;
            for (int r = 0; r < Rounds + 1; r++) // interleaved; round 0 warms up both
            {
                lm.UseLogitsTopK(0);
                var (t0, a) = PerToken(lm, prompt, cfg);
                lm.UseLogitsTopK(K);
                var (t1, b) = PerToken(lm, prompt, cfg);
                if (r == 0) { idsOff = a; idsOn = b; continue; }
                off.Add(t0); on.Add(t1);
            }
            double mOff = BenchStats.Median(off), mOn = BenchStats.Median(on);
            Console.WriteLine($"{name,-46} {cname,-18} {$"{mOff:F0} ({off.Min():F0})",18} {$"{mOn:F0} ({on.Min():F0})",18} {mOn / mOff,7:F2}{(idsOff!.SequenceEqual(idsOn!) ? "" : "  IDS DIFFER")}");
        }
    }
}
finally { try { Directory.Delete(tmp, true); } catch (IOException) { } }

static (double MicrosPerToken, int[] Ids) PerToken(CausalLM lm, int[] prompt, GenerationConfig cfg)
{
    var stamps = new List<long>(Tokens);
    var r = Generator.Generate(lm, [prompt], cfg.Clone(), new GenerationHooks { OnToken = (_, _) => stamps.Add(Stopwatch.GetTimestamp()) });
    // first token comes from the prefill: time the steps between the first and the last token
    return ((stamps[^1] - stamps[0]) * 1e6 / Stopwatch.Frequency / (stamps.Count - 1), r.Sequences[0]);
}

static string RandomLlama(string dir, int vocab, int d)
{
    Directory.CreateDirectory(dir);
    var rng = new Random(5);
    float[] R(long n, float scale = 0.05f) { var a = new float[n]; for (long i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale; return a; }
    float[] Ones(long n) { var a = new float[n]; Array.Fill(a, 1f); return a; }
    int f = 2 * d, layers = 2, heads = 4;
    var t = new Dictionary<string, (float[], long[])> { ["model.embed_tokens.weight"] = (R((long)vocab * d, 1f), [vocab, d]) };
    for (int i = 0; i < layers; i++)
    {
        var p = $"model.layers.{i}.";
        t[p + "input_layernorm.weight"] = (Ones(d), [d]);
        t[p + "post_attention_layernorm.weight"] = (Ones(d), [d]);
        foreach (var n in new[] { "q_proj", "k_proj", "v_proj", "o_proj" }) t[p + "self_attn." + n + ".weight"] = (R(d * d), [d, d]);
        t[p + "mlp.gate_proj.weight"] = (R(f * d), [f, d]);
        t[p + "mlp.up_proj.weight"] = (R(f * d), [f, d]);
        t[p + "mlp.down_proj.weight"] = (R(d * f), [d, f]);
    }
    t["model.norm.weight"] = (Ones(d), [d]);
    t["lm_head.weight"] = (R((long)vocab * d), [vocab, d]);
    SafetensorsWriter.WriteF32(Path.Combine(dir, "model.safetensors"), t);
    var cfg = new JsonObject
    {
        ["model_type"] = "llama", ["architectures"] = new JsonArray("LlamaForCausalLM"), ["vocab_size"] = vocab, ["hidden_size"] = d,
        ["intermediate_size"] = f, ["num_hidden_layers"] = layers, ["num_attention_heads"] = heads, ["num_key_value_heads"] = heads,
        ["max_position_embeddings"] = 512, ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0, ["tie_word_embeddings"] = false,
        ["bos_token_id"] = 1, ["eos_token_id"] = 2, ["torch_dtype"] = "float32",
    };
    File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
    return dir;
}
