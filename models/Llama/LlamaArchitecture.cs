// LLaMA (Touvron et al. 2023) as transformers' modeling_llama.py computes LlamaForCausalLM: pre-RMSNorm blocks,
// rotary positions with rotate_half (HF layout; original layouts are permuted once at conversion, see
// LlamaWeightLayout), grouped-query attention, SwiGLU MLP, optional q/k/v/o and MLP biases, tied or untied LM head.
// Aquila (BAAI; model_type "aquila", AquilaForCausalLM / AquilaModel) is the same network and loads here.
// Not supported: pretraining_tp > 1 as a numerics switch (its split matmuls equal the plain ones, so it is ignored),
// LlamaForSequenceClassification and other heads, rope types beyond default/linear/dynamic/llama3.
using System.Text.Json.Nodes;
using Hub.IR;
using Hub.Weights;

namespace Hub.Models.Llama;

/// <summary>The LLaMA family (LLaMA 1/2/3, Aquila, llama2.c models) as a causal LM graph.</summary>
public sealed class LlamaArchitecture : IModelArchitecture
{
    private static readonly string[] _modelTypes = ["llama", "aquila"];
    private static readonly string[] _causalArchitectures = ["LlamaForCausalLM", "AquilaForCausalLM", "AquilaModel"];

    /// <inheritdoc/>
    public string Name => "llama";

    /// <inheritdoc/>
    public bool Matches(JsonObject config)
    {
        if (config["model_type"] is JsonValue mt && mt.TryGetValue<string>(out var type)) return _modelTypes.Contains(type);
        return Architectures(config).Any(a => _causalArchitectures.Contains(a));
    }

    /// <inheritdoc/>
    public ModelTask TaskOf(JsonObject config) => ModelTask.CausalLM;

    /// <inheritdoc/>
    public ModelExport Build(ModelSource source, ExportSettings settings)
    {
        var reader = new ConfigReader(source.Config, source.ConfigPath);
        var archs = Architectures(source.Config).ToArray();
        if (archs.Length > 0 && !archs.Any(a => _causalArchitectures.Contains(a)))
            throw new UnsupportedModelException(
                $"{source.ConfigPath}: architectures [{string.Join(", ", archs)}] is not supported for the LLaMA family; supported: {string.Join(", ", _causalArchitectures)}");
        var cfg = LlamaConfig.Read(reader);
        var root = new WeightBinder(source.Weights);
        // LlamaForCausalLM nests the body under "model."; a bare LlamaModel checkpoint does not.
        var body = root.Has("model.embed_tokens.weight") ? root.Scope("model") : root;
        int d = cfg.HiddenSize, f = cfg.IntermediateSize, hd = cfg.HeadDim;
        int heads = cfg.NumAttentionHeads, kvHeads = cfg.KvHeads, qDim = cfg.QDim, kvDim = cfg.KvDim;

        var b = new GraphBuilder(cfg.ModelType);
        var ids = b.Input("input_ids", DType.I32, "batch", "seq");
        var pos = b.Input("position_ids", DType.I32, "batch", "seq");
        var mask = b.Input("attention_mask", DType.F32, "batch", "total");
        var keep = b.Input("logits_to_keep", DType.I32, 1);

        var embed = b.Weight("model.embed_tokens.weight", body.Get("embed_tokens.weight", cfg.VocabSize, d), WeightKind.Embedding);
        var x = b.Op(Ops.Embedding, "model.embed_tokens", [ids, embed]);                               // [B, T, D]

        for (int i = 0; i < cfg.NumHiddenLayers; i++)
        {
            var l = body.Scope($"layers.{i}");
            string p = $"model.layers.{i}";

            // Attention block.
            var h = Norm(b, l, p, "input_layernorm", x, d, cfg.RmsNormEps);                                  // [B, T, D]
            var q = Projection(l, "self_attn.q_proj", qDim, d, cfg.AttentionBias, heads, hd, source.Layout);
            var k = Projection(l, "self_attn.k_proj", kvDim, d, cfg.AttentionBias, kvHeads, hd, source.Layout);
            var v = Projection(l, "self_attn.v_proj", kvDim, d, cfg.AttentionBias);
            var qkvW = b.Weight($"{p}.self_attn.qkv_proj.weight", LazyTensor.ConcatRows(l.Full("self_attn.{q,k,v}_proj.weight"), q.W, k.W, v.W), WeightKind.Matrix);
            string? qkvB = cfg.AttentionBias
                ? b.Weight($"{p}.self_attn.qkv_proj.bias", LazyTensor.ConcatRows(l.Full("self_attn.{q,k,v}_proj.bias"), q.B!, k.B!, v.B!), WeightKind.Vector)
                : null;
            var qkv = b.Op(Ops.Linear, $"{p}.self_attn.qkv_proj", [h, qkvW, qkvB]);                       // [B, T, qDim + 2·kvDim]
            var parts = b.OpMulti(Ops.Split, $"{p}.self_attn.split", [qkv], 3, new { sizes = new[] { qDim, kvDim, kvDim } });
            var qr = b.Op(Ops.Rope, $"{p}.self_attn.rope_q", [parts[0], pos], cfg.RopeAttributes(heads));        // [B, T, qDim]
            var kr = b.Op(Ops.Rope, $"{p}.self_attn.rope_k", [parts[1], pos], cfg.RopeAttributes(kvHeads));      // [B, T, kvDim]
            var stateK = b.State($"past.{i}.key", DType.F32, "batch", kvHeads, "ctx", hd);
            var stateV = b.State($"past.{i}.value", DType.F32, "batch", kvHeads, "ctx", hd);
            var att = b.Op(Ops.Attention, $"{p}.self_attn.attention", [qr, kr, parts[2], mask], new
            {
                heads, kv_heads = kvHeads, head_dim = hd, scale = 1.0 / Math.Sqrt(hd), causal = true,
                state_k = stateK, state_v = stateV,
            });                                                                                             // [B, T, qDim]
            var o = Linear(b, l, p, "self_attn.o_proj", att, d, qDim, cfg.AttentionBias);                   // [B, T, D]
            x = b.Op(Ops.Add, $"{p}.residual_attn", [x, o]);

            // MLP block: down(silu(gate(h)) · up(h)), gate and up fused into one [2F, D] Linear, gate first.
            h = Norm(b, l, p, "post_attention_layernorm", x, d, cfg.RmsNormEps);
            var gate = Projection(l, "mlp.gate_proj", f, d, cfg.MlpBias);
            var up = Projection(l, "mlp.up_proj", f, d, cfg.MlpBias);
            var guW = b.Weight($"{p}.mlp.gate_up_proj.weight", LazyTensor.ConcatRows(l.Full("mlp.{gate,up}_proj.weight"), gate.W, up.W), WeightKind.Matrix);
            string? guB = cfg.MlpBias
                ? b.Weight($"{p}.mlp.gate_up_proj.bias", LazyTensor.ConcatRows(l.Full("mlp.{gate,up}_proj.bias"), gate.B!, up.B!), WeightKind.Vector)
                : null;
            var gu = b.Op(Ops.Linear, $"{p}.mlp.gate_up_proj", [h, guW, guB]);                             // [B, T, 2F]
            var act = b.Op(Ops.SwiGlu, $"{p}.mlp.act", [gu]);                                              // [B, T, F]
            var down = Linear(b, l, p, "mlp.down_proj", act, d, f, cfg.MlpBias);                            // [B, T, D]
            x = b.Op(Ops.Add, $"{p}.residual_mlp", [x, down]);
        }

        var normed = Norm(b, body, "model", "norm", x, d, cfg.RmsNormEps);
        var last = b.Op(Ops.KeepLast, "keep_last", [normed, keep]);                                        // [B, kept, D]
        // Tied: the head reads the embedding matrix itself (a lm_head.weight in the checkpoint is then ignored).
        string head = cfg.TieWordEmbeddings
            ? embed
            : b.Weight("lm_head.weight", root.Get("lm_head.weight", cfg.VocabSize, d), WeightKind.Matrix);
        var logits = b.Op(Ops.Linear, "logits", [last, head]);                                             // [B, kept, V]
        b.Output(logits, DType.F32, "batch", "kept", cfg.VocabSize);

        CausalLMMetadata.Fill(b.Metadata, reader, cfg.VocabSize, cfg.MaxPositionEmbeddings, "linear");
        b.Metadata["source_layout"] = source.Layout == WeightLayout.InterleavedRope ? "interleaved_rope" : "hugging_face";
        return b.Build();
    }

    private static IEnumerable<string> Architectures(JsonObject config) =>
        config["architectures"] is JsonArray a
            ? a.Select(n => n is JsonValue v && v.TryGetValue<string>(out var s) ? s : null).OfType<string>()
            : [];

    /// <summary>A projection's weight [rows, cols] and optional bias, in HF layout (q/k permuted when the source is interleaved).</summary>
    private static (LazyTensor W, LazyTensor? B) Projection(WeightBinder l, string name, int rows, int cols, bool bias,
        int heads = 0, int headDim = 0, WeightLayout layout = WeightLayout.HuggingFace)
    {
        var w = l.Get($"{name}.weight", rows, cols);
        var bv = bias ? l.Get($"{name}.bias", rows) : null;
        if (heads > 0)
        {
            w = LlamaWeightLayout.ToHuggingFace(w, heads, headDim, layout);
            if (bv is not null) bv = LlamaWeightLayout.ToHuggingFace(bv, heads, headDim, layout);
        }
        return (w, bv);
    }

    private static string Linear(GraphBuilder b, WeightBinder l, string p, string name, string x, int rows, int cols, bool bias)
    {
        var (w, bv) = Projection(l, name, rows, cols, bias);
        var wn = b.Weight($"{p}.{name}.weight", w, WeightKind.Matrix);
        var bn = bv is null ? null : b.Weight($"{p}.{name}.bias", bv, WeightKind.Vector);
        return b.Op(Ops.Linear, $"{p}.{name}", [x, wn, bn]);
    }

    private static string Norm(GraphBuilder b, WeightBinder scope, string p, string name, string x, int d, double eps)
    {
        var g = b.Weight($"{p}.{name}.weight", scope.Get($"{name}.weight", d), WeightKind.Vector);
        return b.Op(Ops.RMSNorm, $"{p}.{name}", [x, g], new { eps });
    }
}
