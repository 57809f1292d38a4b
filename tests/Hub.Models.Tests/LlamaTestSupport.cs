using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Hub.Weights;

namespace Hub.Models.Tests;

/// <summary>An in-memory float32 checkpoint for wiring tests (tiny odd-sized configs).</summary>
internal sealed unsafe class LlamaMemorySource : ITensorSource
{
    private readonly Dictionary<string, (float[] Data, Shape Shape)> _tensors = new(StringComparer.Ordinal);
    private readonly List<nint> _blocks = new();

    public string Location => "memory";
    public IReadOnlyCollection<string> Names => _tensors.Keys;

    public void Add(string name, float[] data, params long[] shape) => _tensors[name] = (data, new Shape(shape));

    public float[] Data(string name) => _tensors[name].Data;

    public bool TryGetInfo(string name, out TensorInfo info)
    {
        if (_tensors.TryGetValue(name, out var t)) { info = new TensorInfo(name, DType.F32, t.Shape, "memory"); return true; }
        info = null!;
        return false;
    }

    public TensorView Open(string name)
    {
        var (data, shape) = _tensors[name];
        var bytes = (nuint)(data.Length * sizeof(float));
        var p = NativeMemory.Alloc(Math.Max(bytes, 1));
        data.AsSpan().CopyTo(new Span<float>(p, data.Length));
        _blocks.Add((nint)p);
        return new TensorView(DType.F32, shape, (nint)p, (long)bytes);
    }

    public void Dispose()
    {
        foreach (var p in _blocks) NativeMemory.Free((void*)p);
        _blocks.Clear();
    }

    /// <summary>A random LLaMA checkpoint in HF names for <paramref name="cfg"/> (hidden 32, vocab 99, intermediate 37 style).</summary>
    public static LlamaMemorySource RandomLlama(JsonObject cfg, int seed)
    {
        var rng = new Random(seed);
        float[] R(long n, float scale = 0.2f) { var a = new float[n]; for (long i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale; return a; }
        float[] Norm(long n) { var a = new float[n]; for (long i = 0; i < n; i++) a[i] = 1f + (float)(rng.NextDouble() - 0.5) * 0.4f; return a; }
        int d = (int)cfg["hidden_size"]!, f = (int)cfg["intermediate_size"]!, v = (int)cfg["vocab_size"]!, heads = (int)cfg["num_attention_heads"]!;
        int kv = (int?)cfg["num_key_value_heads"] ?? heads, hd = (int?)cfg["head_dim"] ?? d / heads;
        bool attBias = (bool?)cfg["attention_bias"] ?? false, mlpBias = (bool?)cfg["mlp_bias"] ?? false;
        var s = new LlamaMemorySource();
        s.Add("model.embed_tokens.weight", R(v * d, 1f), v, d);
        for (int i = 0; i < (int)cfg["num_hidden_layers"]!; i++)
        {
            var p = $"model.layers.{i}.";
            s.Add(p + "input_layernorm.weight", Norm(d), d);
            s.Add(p + "post_attention_layernorm.weight", Norm(d), d);
            foreach (var (n, rows, cols) in new[] { ("self_attn.q_proj", heads * hd, d), ("self_attn.k_proj", kv * hd, d), ("self_attn.v_proj", kv * hd, d), ("self_attn.o_proj", d, heads * hd) })
            {
                s.Add(p + n + ".weight", R(rows * cols), rows, cols);
                if (attBias) s.Add(p + n + ".bias", R(rows), rows);
            }
            foreach (var (n, rows, cols) in new[] { ("mlp.gate_proj", f, d), ("mlp.up_proj", f, d), ("mlp.down_proj", d, f) })
            {
                s.Add(p + n + ".weight", R(rows * cols), rows, cols);
                if (mlpBias) s.Add(p + n + ".bias", R(rows), rows);
            }
        }
        s.Add("model.norm.weight", Norm(d), d);
        if (!((bool?)cfg["tie_word_embeddings"] ?? false)) s.Add("lm_head.weight", R(v * d), v, d);
        return s;
    }

    /// <summary>The tiny odd-sized LLaMA config used by the wiring tests.</summary>
    public static JsonObject TinyConfig(bool tied = false, bool biases = false) => new()
    {
        ["model_type"] = "llama", ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["vocab_size"] = 99, ["hidden_size"] = 32, ["intermediate_size"] = 37, ["num_hidden_layers"] = 2,
        ["num_attention_heads"] = 4, ["num_key_value_heads"] = 2, ["max_position_embeddings"] = 64,
        ["rms_norm_eps"] = 1e-5, ["tie_word_embeddings"] = tied, ["attention_bias"] = biases, ["mlp_bias"] = biases,
        ["bos_token_id"] = 1, ["eos_token_id"] = new JsonArray(2, 3),
    };
}
