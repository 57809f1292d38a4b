// GPT-2 (Radford et al. 2019) as transformers' modeling_gpt2.py computes it: pre-LN blocks, learned absolute
// positions, Conv1D projections stored [in, out], fused c_attn (q|k|v along the output axis), gelu_new, LM head tied
// to wte. Legacy hub checkpoints (no "transformer." prefix, attn.bias/masked_bias buffers) load too.
// Not supported: cross-attention (add_cross_attention), reorder_and_upcast_attn (a numerics switch for fp16 training).
using System.Text.Json.Nodes;
using Hub.IR;
using Hub.Weights;

namespace Hub.Models.Gpt2;

/// <summary>GPT-2 hyper-parameters with Hugging Face's <c>config.json</c> field names.</summary>
public sealed record Gpt2Config
{
    /// <summary>Vocabulary size (<c>vocab_size</c>).</summary>
    public required int VocabSize { get; init; }
    /// <summary>Width (<c>n_embd</c>).</summary>
    public required int Hidden { get; init; }
    /// <summary>Layers (<c>n_layer</c>).</summary>
    public required int Layers { get; init; }
    /// <summary>Heads (<c>n_head</c>).</summary>
    public required int Heads { get; init; }
    /// <summary>Position table size (<c>n_positions</c>, or legacy <c>n_ctx</c>).</summary>
    public required int Positions { get; init; }
    /// <summary>MLP width (<c>n_inner</c>, default 4 × n_embd).</summary>
    public required int Inner { get; init; }
    /// <summary>LayerNorm epsilon (<c>layer_norm_epsilon</c>).</summary>
    public float LayerNormEps { get; init; } = 1e-5f;
    /// <summary><c>activation_function</c> (gelu_new, gelu, relu, ...).</summary>
    public string Activation { get; init; } = "gelu_new";
    /// <summary><c>scale_attn_weights</c>: divide scores by √head_dim.</summary>
    public bool ScaleAttnWeights { get; init; } = true;
    /// <summary><c>scale_attn_by_inverse_layer_idx</c>: also divide scores by layer index + 1.</summary>
    public bool ScaleByInverseLayerIdx { get; init; }
    /// <summary><c>tie_word_embeddings</c>.</summary>
    public bool TieWordEmbeddings { get; init; } = true;
    /// <summary>Head width.</summary>
    public int HeadDim => Hidden / Heads;

    /// <summary>Reads the config, checking required fields and consistency.</summary>
    public static Gpt2Config Read(ConfigReader c)
    {
        int hidden = c.Positive("n_embd");
        int heads = c.Positive("n_head");
        if (hidden % heads != 0) throw c.Error("n_head", $"n_embd {hidden} is not divisible by n_head {heads}");
        if (c.Has("add_cross_attention") && c.Bool("add_cross_attention", false))
            throw c.Error("add_cross_attention", "GPT-2 with cross-attention (encoder-decoder use) is not supported");
        return new Gpt2Config
        {
            VocabSize = c.Positive("vocab_size"),
            Hidden = hidden,
            Layers = c.Positive("n_layer"),
            Heads = heads,
            Positions = c.IntOrNull("n_positions") ?? c.IntOrNull("n_ctx") ?? throw c.Error("n_positions", "required field is missing (nor is legacy n_ctx present)"),
            Inner = c.IntOrNull("n_inner") ?? 4 * hidden,
            LayerNormEps = c.Float("layer_norm_epsilon", 1e-5f),
            Activation = c.String("activation_function") ?? "gelu_new",
            ScaleAttnWeights = c.Bool("scale_attn_weights", true),
            ScaleByInverseLayerIdx = c.Bool("scale_attn_by_inverse_layer_idx", false),
            TieWordEmbeddings = c.Bool("tie_word_embeddings", true),
        };
    }
}

/// <summary>GPT-2 causal LM (<c>GPT2LMHeadModel</c>).</summary>
public sealed class Gpt2Architecture : IModelArchitecture
{
    /// <inheritdoc/>
    public string Name => "gpt2";

    /// <inheritdoc/>
    public bool Matches(JsonObject config) => (string?)config["model_type"] == "gpt2";

    /// <inheritdoc/>
    public ModelTask TaskOf(JsonObject config) => ModelTask.CausalLM;

    /// <inheritdoc/>
    public ModelExport Build(ModelSource source, ExportSettings settings)
    {
        var reader = new ConfigReader(source.Config, source.ConfigPath);
        var cfg = Gpt2Config.Read(reader);
        var root = new WeightBinder(source.Weights);
        // Current checkpoints prefix the body with "transformer."; legacy hub checkpoints do not.
        var w = root.Has("transformer.wte.weight") ? root.Scope("transformer") : root;
        int d = cfg.Hidden, hd = cfg.HeadDim;

        var b = new GraphBuilder("gpt2");
        var ids = b.Input("input_ids", DType.I32, "batch", "seq");
        var pos = b.Input("position_ids", DType.I32, "batch", "seq");
        var mask = b.Input("attention_mask", DType.F32, "batch", "total");
        var keep = b.Input("logits_to_keep", DType.I32, 1);

        var wte = b.Weight("transformer.wte.weight", w.Get("wte.weight", cfg.VocabSize, d), WeightKind.Embedding);
        var wpe = b.Weight("transformer.wpe.weight", w.Get("wpe.weight", cfg.Positions, d), WeightKind.Embedding);
        var x = b.Op(Ops.Add, "embed", [b.Op(Ops.Embedding, "wte", [ids, wte]), b.Op(Ops.Embedding, "wpe", [pos, wpe])]);

        for (int i = 0; i < cfg.Layers; i++)
        {
            var l = w.Scope($"h.{i}");
            string p = $"transformer.h.{i}";
            var ln1 = b.Op(Ops.LayerNorm, $"{p}.ln_1", [x, Vec(b, l, $"{p}.ln_1.weight", "ln_1.weight", d), Vec(b, l, $"{p}.ln_1.bias", "ln_1.bias", d)], new { eps = cfg.LayerNormEps });
            // Conv1D stores [in, out]; the IR's Linear wants nn.Linear's [out, in].
            var qkvW = b.Weight($"{p}.attn.c_attn.weight", l.Get("attn.c_attn.weight", d, 3 * d).Transpose2D(), WeightKind.Matrix);
            var qkv = b.Op(Ops.Linear, $"{p}.attn.c_attn", [ln1, qkvW, Vec(b, l, $"{p}.attn.c_attn.bias", "attn.c_attn.bias", 3 * d)]);
            var parts = b.OpMulti(Ops.Split, $"{p}.attn.split", [qkv], 3, new { sizes = new[] { d, d, d } });
            var k = b.State($"past.{i}.key", DType.F32, "batch", cfg.Heads, "ctx", hd);
            var v = b.State($"past.{i}.value", DType.F32, "batch", cfg.Heads, "ctx", hd);
            float scale = (cfg.ScaleAttnWeights ? 1f / MathF.Sqrt(hd) : 1f) / (cfg.ScaleByInverseLayerIdx ? i + 1 : 1);
            var att = b.Op(Ops.Attention, $"{p}.attn", [parts[0], parts[1], parts[2], mask],
                new { heads = cfg.Heads, kv_heads = cfg.Heads, head_dim = hd, scale, causal = true, state_k = k, state_v = v });
            var projW = b.Weight($"{p}.attn.c_proj.weight", l.Get("attn.c_proj.weight", d, d).Transpose2D(), WeightKind.Matrix);
            var proj = b.Op(Ops.Linear, $"{p}.attn.c_proj", [att, projW, Vec(b, l, $"{p}.attn.c_proj.bias", "attn.c_proj.bias", d)]);
            x = b.Op(Ops.Add, $"{p}.residual_1", [x, proj]);

            var ln2 = b.Op(Ops.LayerNorm, $"{p}.ln_2", [x, Vec(b, l, $"{p}.ln_2.weight", "ln_2.weight", d), Vec(b, l, $"{p}.ln_2.bias", "ln_2.bias", d)], new { eps = cfg.LayerNormEps });
            var fcW = b.Weight($"{p}.mlp.c_fc.weight", l.Get("mlp.c_fc.weight", d, cfg.Inner).Transpose2D(), WeightKind.Matrix);
            var fc = b.Op(Ops.Linear, $"{p}.mlp.c_fc", [ln2, fcW, Vec(b, l, $"{p}.mlp.c_fc.bias", "mlp.c_fc.bias", cfg.Inner)]);
            var act = Activation(b, $"{p}.mlp.act", fc, cfg.Activation, reader);
            var outW = b.Weight($"{p}.mlp.c_proj.weight", l.Get("mlp.c_proj.weight", cfg.Inner, d).Transpose2D(), WeightKind.Matrix);
            var mlp = b.Op(Ops.Linear, $"{p}.mlp.c_proj", [act, outW, Vec(b, l, $"{p}.mlp.c_proj.bias", "mlp.c_proj.bias", d)]);
            x = b.Op(Ops.Add, $"{p}.residual_2", [x, mlp]);
        }

        var lnf = b.Op(Ops.LayerNorm, "transformer.ln_f", [x, Vec(b, w, "transformer.ln_f.weight", "ln_f.weight", d), Vec(b, w, "transformer.ln_f.bias", "ln_f.bias", d)], new { eps = cfg.LayerNormEps });
        var last = b.Op(Ops.KeepLast, "keep_last", [lnf, keep]);
        // Tied head: the embedding matrix itself (a .bin's lm_head.weight shares wte's storage anyway).
        string head = wte;
        if (!cfg.TieWordEmbeddings && root.Has("lm_head.weight"))
            head = b.Weight("lm_head.weight", root.Get("lm_head.weight", cfg.VocabSize, d), WeightKind.Matrix);
        var logits = b.Op(Ops.Linear, "logits", [last, head]);
        b.Output(logits, DType.F32, "batch", "kept", cfg.VocabSize);

        CausalLMMetadata.Fill(b.Metadata, reader, cfg.VocabSize, cfg.Positions, "linear");
        return b.Build();
    }

    private static string Vec(GraphBuilder b, WeightBinder scope, string irName, string name, long size) =>
        b.Weight(irName, scope.Get(name, size), WeightKind.Vector);

    internal static string Activation(GraphBuilder b, string name, string x, string act, ConfigReader reader) => act switch
    {
        "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => b.Op(Ops.Gelu, name, [x], new { approximate = "tanh" }),
        "gelu" => b.Op(Ops.Gelu, name, [x], new { approximate = "none" }),
        "relu" => b.Op(Ops.Relu, name, [x]),
        "silu" or "swish" => b.Op(Ops.Silu, name, [x]),
        "tanh" => b.Op(Ops.Tanh, name, [x]),
        _ => throw reader.Error("activation_function", $"'{act}' is not supported (gelu_new, gelu_pytorch_tanh, gelu, relu, silu, tanh are)"),
    };
}
